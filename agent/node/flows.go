package node

import (
	"net/netip"
	"slices"
	"time"

	"github.com/palisade-sec/palisade/agent/appdetect"
	"github.com/palisade-sec/palisade/agent/datapath"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// convKey identifies a conversation by its ends' addresses, so that flows
// between workloads that share an identity stay apart.
type convKey struct {
	client, server netip.Addr
	proto          uint8
	port           uint16
}

type flowID struct {
	client, server netip.AddrPort
	proto          uint8
}

type pendingFlow struct {
	key            convKey
	client, server []byte
	app            appdetect.Protocol
	violated       bool
	seen           time.Time
}

// aggregator folds datapath events into conversations (reported as
// agentproto.Flow) and violations (reported as agentproto.Event). A flow
// seen at both of its ends on this node counts once. Not safe for
// concurrent use.
type aggregator struct {
	maxConvs, maxFlows, maxEvents int
	convs                         map[convKey]*agentproto.Flow
	flows                         map[flowID]*pendingFlow
	events                        []agentproto.Event
	lost                          uint64
}

func newAggregator(maxConvs, maxFlows, maxEvents int) *aggregator {
	return &aggregator{maxConvs: maxConvs, maxFlows: maxFlows, maxEvents: maxEvents,
		convs: map[convKey]*agentproto.Flow{}, flows: map[flowID]*pendingFlow{}}
}

func (a *aggregator) add(e datapath.FlowEvent, now time.Time) {
	if e.Kind == datapath.EventMalformed || !e.SrcAddr.IsValid() || !e.DstAddr.IsValid() {
		return
	}
	cl := netip.AddrPortFrom(e.SrcAddr.Unmap(), e.SrcPort)
	sv := netip.AddrPortFrom(e.DstAddr.Unmap(), e.DstPort)
	if e.Reply {
		cl, sv = sv, cl
	}
	id := flowID{client: cl, server: sv, proto: e.Proto}
	key := convKey{client: cl.Addr(), server: sv.Addr(), proto: e.Proto, port: sv.Port()}
	c := a.convs[key]
	if c == nil {
		if len(a.convs) >= a.maxConvs {
			a.lost++
			return
		}
		c = &agentproto.Flow{Client: key.client, Server: key.server, Proto: key.proto, Port: key.port, FirstSeen: now}
		a.convs[key] = c
	}
	c.LastSeen = now
	if e.Kind != datapath.EventSample {
		c.Mode = e.Mode.String()
		if e.RuleID != 0 {
			c.RuleID = e.RuleID
		}
	}
	if c.Mode == "" {
		c.Mode = e.Mode.String()
	}
	if e.Dropped {
		c.Dropped++
	}
	p := a.flows[id]
	if p == nil {
		if len(a.flows) >= a.maxFlows {
			a.evictOldest()
		}
		p = &pendingFlow{key: key}
		a.flows[id] = p
		c.Flows++
	}
	p.seen = now
	violation := e.Violation || e.Kind == datapath.EventViolation
	if violation && !p.violated {
		p.violated = true
		c.Violations++
		action := "alert"
		if e.Dropped {
			action = "deny"
		}
		if len(a.events) < a.maxEvents {
			a.events = append(a.events, agentproto.Event{Time: now.UTC(), Kind: agentproto.EventViolation, Action: action,
				Mode: e.Mode.String(), Client: key.client, Server: key.server, Proto: key.proto, Port: key.port})
		} else {
			a.lost++
		}
	}
	if len(e.Payload) > 0 && p.app == appdetect.Unknown {
		if e.Reply && p.server == nil {
			p.server = e.Payload
		} else if !e.Reply && p.client == nil {
			p.client = e.Payload
		}
		p.app = appdetect.Detect(appdetect.Sample{Proto: e.Proto, Client: p.client, Server: p.server})
		if p.app != appdetect.Unknown {
			c.App = string(p.app)
		}
	}
	// The kernel's answer, where it classified the flow, saw more than
	// the first payload: gRPC is told from other HTTP/2 by the client's
	// HEADERS frame, packets after its preface.
	if e.App != datapath.AppNone && (p.app == appdetect.Unknown || p.app == appdetect.HTTP2) {
		k := appdetect.Protocol(e.App.String())
		if _, known := datapath.ParseApp(string(k)); known && k != p.app && (p.app == appdetect.Unknown || k == appdetect.GRPC) {
			p.app = k
			c.App = string(k)
		}
	}
}

// evictOldest forgets the oldest eighth of the flows: a stream of new
// flows at the bound then costs one pass over the flows per eighth of the
// bound, not one per flow.
func (a *aggregator) evictOldest() {
	seen := make([]time.Time, 0, len(a.flows))
	for _, p := range a.flows {
		seen = append(seen, p.seen)
	}
	slices.SortFunc(seen, time.Time.Compare)
	need := max(1, len(seen)/8)
	cut := seen[need-1]
	// Every flow older than cut goes (fewer than need), then flows seen
	// at cut until need are gone.
	atCut := need
	for _, t := range seen[:need] {
		if t.Before(cut) {
			atCut--
		}
	}
	for id, p := range a.flows {
		switch {
		case p.seen.Before(cut):
			delete(a.flows, id)
		case p.seen.Equal(cut) && atCut > 0:
			delete(a.flows, id)
			atCut--
		}
	}
}

// addEvent queues an event that is not a flow's (a process event).
func (a *aggregator) addEvent(e agentproto.Event) {
	if len(a.events) < a.maxEvents {
		a.events = append(a.events, e)
	} else {
		a.lost++
	}
}

// drain returns what was gathered since the last drain and forgets flows
// not seen for maxAge.
func (a *aggregator) drain(now time.Time, maxAge time.Duration) ([]agentproto.Flow, []agentproto.Event) {
	flows := make([]agentproto.Flow, 0, len(a.convs))
	for _, c := range a.convs {
		flows = append(flows, *c)
	}
	a.convs = map[convKey]*agentproto.Flow{}
	evs := a.events
	a.events = nil
	for id, p := range a.flows {
		if now.Sub(p.seen) > maxAge {
			delete(a.flows, id)
		}
	}
	return flows, evs
}
