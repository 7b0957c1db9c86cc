// Package flowagg folds the datapath's flow events into per-conversation
// records (client identity, server identity, protocol, server port) with
// flow and violation counts and the detected application, ready to report
// to the controller and to feed learning.
package flowagg

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/agent/appdetect"
	"github.com/palisade-sec/palisade/agent/datapath"
)

// Config configures an Aggregator.
type Config struct {
	// MaxRecords bounds the records held between drains; events for new
	// records beyond it are counted in Stats.Overflow and dropped.
	MaxRecords int
	// MaxPendingFlows bounds the flows whose application is still being
	// detected and the flows remembered to avoid counting one flow twice
	// (it is seen at both ends when both are on this node).
	MaxPendingFlows int
}

// DefaultConfig returns sizes for a busy node.
func DefaultConfig() Config {
	return Config{MaxRecords: 65536, MaxPendingFlows: 65536}
}

// Validate reports the first problem of the configuration.
func (c Config) Validate() error {
	if c.MaxRecords <= 0 {
		return fmt.Errorf("flowagg config: MaxRecords %d is not positive", c.MaxRecords)
	}
	if c.MaxPendingFlows <= 0 {
		return fmt.Errorf("flowagg config: MaxPendingFlows %d is not positive", c.MaxPendingFlows)
	}
	return nil
}

// Key identifies a conversation.
type Key struct {
	Src, Dst datapath.Identity // client, server
	Proto    uint8
	Port     uint16 // server port
}

// Record is what the node saw of one conversation since the last drain.
type Record struct {
	Key
	App        appdetect.Protocol
	Flows      uint64 // distinct flows
	Violations uint64 // flows the policy did not allow
	Dropped    uint64 // packets dropped in Protect
	RuleID     uint32 // last rule that decided a flow
	Mode       datapath.Mode
	FirstSeen  time.Time
	LastSeen   time.Time
}

// Stats counts what the aggregator could not keep.
type Stats struct {
	Overflow uint64
}

type flowID struct {
	client, server netip.AddrPort
	proto          uint8
}

type pending struct {
	key            Key
	client, server []byte
	seen           time.Time
}

// Aggregator is safe for concurrent use.
type Aggregator struct {
	cfg     Config
	mu      sync.Mutex
	records map[Key]*Record
	flows   map[flowID]*pending
	stats   Stats
}

// New returns an empty aggregator.
func New(cfg Config) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Aggregator{cfg: cfg, records: map[Key]*Record{}, flows: map[flowID]*pending{}}, nil
}

func orient(e datapath.FlowEvent) (flowID, Key) {
	cl := netip.AddrPortFrom(e.SrcAddr, e.SrcPort)
	sv := netip.AddrPortFrom(e.DstAddr, e.DstPort)
	if e.Reply {
		cl, sv = sv, cl
	}
	return flowID{client: cl, server: sv, proto: e.Proto},
		Key{Src: e.Src, Dst: e.Dst, Proto: e.Proto, Port: sv.Port()}
}

// Add folds one event in; now is when it was read.
func (a *Aggregator) Add(e datapath.FlowEvent, now time.Time) {
	if e.Kind == datapath.EventMalformed {
		return
	}
	id, key := orient(e)
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.records[key]
	if r == nil {
		if len(a.records) >= a.cfg.MaxRecords {
			a.stats.Overflow++
			return
		}
		r = &Record{Key: key, FirstSeen: now}
		a.records[key] = r
	}
	r.LastSeen = now
	r.Mode = e.Mode
	if e.RuleID != 0 {
		r.RuleID = e.RuleID
	}
	if e.Dropped {
		r.Dropped++
	}
	p, known := a.flows[id]
	if !known {
		if len(a.flows) >= a.cfg.MaxPendingFlows {
			a.evictOldest()
		}
		p = &pending{key: key}
		a.flows[id] = p
		if !e.Dropped {
			r.Flows++
			if e.Violation || e.Kind == datapath.EventViolation {
				r.Violations++
			}
		}
	}
	p.seen = now
	if e.Dropped {
		return
	}
	if len(e.Payload) > 0 && r.App == appdetect.Unknown {
		if e.Reply && p.server == nil {
			p.server = e.Payload
		} else if !e.Reply && p.client == nil {
			p.client = e.Payload
		}
		r.App = appdetect.Detect(appdetect.Sample{Proto: e.Proto, Client: p.client, Server: p.server})
	}
}

func (a *Aggregator) evictOldest() {
	var oldest flowID
	var t time.Time
	first := true
	for id, p := range a.flows {
		if first || p.seen.Before(t) {
			oldest, t, first = id, p.seen, false
		}
	}
	delete(a.flows, oldest)
}

// Drain returns the records gathered since the last drain and starts
// afresh. Flows not seen for maxAge are forgotten.
func (a *Aggregator) Drain(now time.Time, maxAge time.Duration) []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Record, 0, len(a.records))
	for _, r := range a.records {
		out = append(out, *r)
	}
	a.records = map[Key]*Record{}
	for id, p := range a.flows {
		if now.Sub(p.seen) > maxAge {
			delete(a.flows, id)
		}
	}
	return out
}

// Stats returns the loss counters.
func (a *Aggregator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}
