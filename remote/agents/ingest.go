package agents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/learn"
	"github.com/palisade-sec/palisade/shared/agentproto"
	"github.com/palisade-sec/palisade/shared/store"
)

// FlowRecord is one aggregated conversation (flows/<hash>).
type FlowRecord struct {
	Key string `json:"key"`
	// Client and Server name the ends: a workload ID, or an address.
	Client         string     `json:"client"`
	Server         string     `json:"server"`
	ClientWorkload bool       `json:"clientWorkload,omitempty"`
	ServerWorkload bool       `json:"serverWorkload,omitempty"`
	ClientAddr     netip.Addr `json:"clientAddr"`
	ServerAddr     netip.Addr `json:"serverAddr"`
	Proto          uint8      `json:"proto"`
	Port           uint16     `json:"port"`
	App            string     `json:"app,omitempty"`
	// Mode is the mode the flow was last seen under.
	Mode       string    `json:"mode"`
	Flows      uint64    `json:"flows"`
	Violations uint64    `json:"violations,omitempty"`
	Dropped    uint64    `json:"dropped,omitempty"`
	Node       string    `json:"node"`
	FirstSeen  time.Time `json:"firstSeen"`
	LastSeen   time.Time `json:"lastSeen"`
	// ClientGroups and ServerGroups are filled in listings from the policy
	// in force.
	ClientGroups []string `json:"clientGroups,omitempty"`
	ServerGroups []string `json:"serverGroups,omitempty"`
}

// EventRecord is one security event (events/<time>-<node>-<n>).
type EventRecord struct {
	ID     string `json:"id"`
	Node   string `json:"node"`
	Client string `json:"client,omitempty"`
	Server string `json:"server,omitempty"`
	// RuleName names the rule a file event fell under (Event.Rule).
	RuleName string `json:"ruleName,omitempty"`
	agentproto.Event
}

func flowKey(client, server string, proto uint8, port uint16) string {
	h := sha256.Sum256([]byte(client + "|" + server + "|" + strconv.Itoa(int(proto)) + "|" + strconv.Itoa(int(port))))
	return PrefixFlows + hex.EncodeToString(h[:8])
}

// ingestFlows merges reported flows into the stored records, keeping at
// most MaxFlows (the least recently seen go).
func (m *Module) ingestFlows(ctx context.Context, node string, flows []agentproto.Flow) error {
	recs := map[string]*FlowRecord{}
	for _, f := range flows {
		cn, cw := m.endpointName(f.Client)
		sn, sw := m.endpointName(f.Server)
		k := flowKey(cn, sn, f.Proto, f.Port)
		r := recs[k]
		if r == nil {
			r = &FlowRecord{Key: k}
			if kv, ok, _ := m.st.Get(k); ok {
				_ = json.Unmarshal(kv.Value, r)
			}
			recs[k] = r
		}
		if r.FirstSeen.IsZero() || f.FirstSeen.Before(r.FirstSeen) {
			r.FirstSeen = f.FirstSeen
		}
		if f.LastSeen.After(r.LastSeen) {
			r.LastSeen = f.LastSeen
		}
		r.Client, r.Server, r.ClientWorkload, r.ServerWorkload = cn, sn, cw, sw
		r.ClientAddr, r.ServerAddr, r.Proto, r.Port, r.Node = f.Client, f.Server, f.Proto, f.Port, node
		if f.App != "" {
			r.App = f.App
		}
		r.Mode = f.Mode
		r.Flows += f.Flows
		r.Violations += f.Violations
		r.Dropped += f.Dropped
	}
	if len(recs) == 0 {
		return nil
	}
	// Keep the MaxFlows most recently seen conversations.
	type aged struct {
		key  string
		last time.Time
	}
	all := make([]aged, 0, len(recs))
	for k, r := range recs {
		all = append(all, aged{k, r.LastSeen})
	}
	existing, _ := m.st.List(PrefixFlows)
	for _, kv := range existing {
		if _, mine := recs[kv.Key]; mine {
			continue
		}
		var r FlowRecord
		_ = json.Unmarshal(kv.Value, &r)
		all = append(all, aged{kv.Key, r.LastSeen})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if c := a.last.Compare(b.last); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	var txn store.Txn
	over := max(0, len(all)-m.cfg.MaxFlows)
	for i, e := range all {
		r, fresh := recs[e.key]
		switch {
		case i < over && !fresh:
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: e.key})
		case i < over && fresh:
			if _, stored, _ := m.st.Get(e.key); stored {
				txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: e.key})
			}
		default:
			if fresh {
				b, err := json.Marshal(r)
				if err != nil {
					return err
				}
				txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: e.key, Value: b})
			}
		}
	}
	if len(txn.Ops) == 0 {
		return nil
	}
	if _, err := m.st.Txn(ctx, txn); err != nil {
		return fmt.Errorf("store flows: %w", err)
	}
	return nil
}

// eventSeq numbers the events a replica stores, to keep keys unique.
type eventSeq struct{ n atomic.Uint64 }

// ingestEvents stores events and keeps at most MaxEvents.
func (m *Module) ingestEvents(ctx context.Context, node string, evs []agentproto.Event) error {
	if len(evs) == 0 {
		return nil
	}
	puts := map[string][]byte{}
	var keys []string
	for _, e := range evs {
		n := m.events.n.Add(1)
		id := fmt.Sprintf("%020d-%s-%d", e.Time.UnixNano(), node, n)
		r := EventRecord{ID: id, Node: node, Event: e}
		if e.Client.IsValid() {
			r.Client, _ = m.endpointName(e.Client)
		}
		if e.Server.IsValid() {
			r.Server, _ = m.endpointName(e.Server)
		}
		r.RuleName = m.ruleName(e.Rule)
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		puts[PrefixEvents+id] = b
		keys = append(keys, PrefixEvents+id)
	}
	existing, _ := m.st.List(PrefixEvents)
	for _, kv := range existing {
		keys = append(keys, kv.Key)
	}
	// Keys sort by time: keep the newest MaxEvents.
	slices.Sort(keys)
	var txn store.Txn
	over := max(0, len(keys)-m.cfg.MaxEvents)
	for i, k := range keys {
		b, fresh := puts[k]
		switch {
		case i < over && !fresh:
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: k})
		case i >= over && fresh:
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: k, Value: b})
		}
	}
	if len(txn.Ops) == 0 {
		return nil
	}
	if _, err := m.st.Txn(ctx, txn); err != nil {
		return fmt.Errorf("store events: %w", err)
	}
	return nil
}

// learnLoop runs learning on the leader only.
func (m *Module) learnLoop(ctx context.Context) error {
	ch, unsub := m.st.SubscribeLeadership()
	defer unsub()
	leader := m.st.IsLeader()
	for {
		if leader {
			lctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				m.learnAsLeader(lctx)
			}()
			for leader && ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case leader = <-ch:
				}
			}
			cancel()
			<-done
		}
		select {
		case <-ctx.Done():
			return nil
		case leader = <-ch:
		}
	}
}

// learnAsLeader learns from every stored Discover flow, then from each
// change to the flows.
func (m *Module) learnAsLeader(ctx context.Context) {
	for ctx.Err() == nil {
		kvs, rev := m.st.List(PrefixFlows)
		var recs []FlowRecord
		for _, kv := range kvs {
			var r FlowRecord
			if json.Unmarshal(kv.Value, &r) == nil {
				recs = append(recs, r)
			}
		}
		m.learnFrom(ctx, recs)
		w, err := m.st.Watch(PrefixFlows, rev)
		if err != nil {
			continue
		}
		for ctx.Err() == nil {
			_, evs, err := w.NextRevision(ctx)
			if err != nil {
				break
			}
			pending := map[string]FlowRecord{}
			add := func(evs []store.Event) {
				for _, e := range evs {
					var r FlowRecord
					if e.Type == store.EventPut && json.Unmarshal(e.Value, &r) == nil {
						pending[e.Key] = r
					}
				}
			}
			add(evs)
			timer := time.NewTimer(m.cfg.LearnDelay)
			for gather := true; gather; {
				wctx, cancel := context.WithCancel(ctx)
				got := make(chan []store.Event, 1)
				go func() {
					_, evs, err := w.NextRevision(wctx)
					if err != nil {
						evs = nil
					}
					got <- evs
				}()
				select {
				case evs := <-got:
					add(evs)
				case <-timer.C:
					gather = false
				}
				cancel()
				if gather {
					continue
				}
				// The pending read may hold events: fold them in.
				add(<-got)
			}
			recs := make([]FlowRecord, 0, len(pending))
			for _, r := range pending {
				recs = append(recs, r)
			}
			m.learnFrom(ctx, recs)
		}
	}
}

// learnFrom turns Discover flows into learned groups and rules.
func (m *Module) learnFrom(ctx context.Context, recs []FlowRecord) {
	var flows []learn.Flow
	m.mu.Lock()
	for _, r := range recs {
		if r.Mode != string(policy.ModeDiscover) || r.Flows == 0 {
			continue
		}
		flows = append(flows, learn.Flow{Src: m.learnEndpoint(r.Client, r.ClientWorkload, r.ClientAddr),
			Dst: m.learnEndpoint(r.Server, r.ServerWorkload, r.ServerAddr), Proto: r.Proto, Port: r.Port, App: r.App})
	}
	m.mu.Unlock()
	if len(flows) == 0 {
		return
	}
	res, err := m.cfg.Policy.Learn(ctx, flows)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("learn from flows", logErr, err)
		}
		return
	}
	if len(res.Rules) > 0 || len(res.Groups) > 0 {
		m.log.Info("learned policy", "groups", len(res.Groups), "rules", len(res.Rules))
	}
}

// learnEndpoint resolves one end of a stored flow; m.mu is held.
func (m *Module) learnEndpoint(name string, workload bool, addr netip.Addr) learn.Endpoint {
	if workload {
		if w, ok := m.workloads[name]; ok {
			return learn.Endpoint{Workload: &w}
		}
	}
	if m.nodeAddrs[addr] {
		return learn.Endpoint{Node: true, Addr: addr}
	}
	return learn.Endpoint{Addr: addr}
}
