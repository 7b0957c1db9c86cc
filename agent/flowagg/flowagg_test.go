package flowagg

import (
	"net/netip"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/appdetect"
	"github.com/palisade-sec/palisade/agent/datapath"
)

func ev(kind datapath.EventKind, reply bool, payload string, mods ...func(*datapath.FlowEvent)) datapath.FlowEvent {
	e := datapath.FlowEvent{
		Kind: kind, Src: 1, Dst: 2, Proto: 6, RuleID: 5, Mode: datapath.ModeMonitor,
		SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 40000, DstPort: 3306, Reply: reply, Payload: []byte(payload),
	}
	if reply {
		e.SrcAddr, e.DstAddr = e.DstAddr, e.SrcAddr
		e.SrcPort, e.DstPort = e.DstPort, e.SrcPort
	}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func TestAggregator(t *testing.T) {
	mysql := "\x4a\x00\x00\x00\x0a8.0.36\x00\x0b\x00\x00\x00"
	now := time.Unix(1000, 0)
	tests := []struct {
		name   string
		events []datapath.FlowEvent
		want   Record
	}{
		{
			name: "server-first protocol seen at both ends counts once",
			events: []datapath.FlowEvent{
				ev(datapath.EventNewFlow, false, ""),
				ev(datapath.EventNewFlow, false, ""), // same flow, other veth
				ev(datapath.EventSample, true, mysql),
			},
			want: Record{Key: Key{Src: 1, Dst: 2, Proto: 6, Port: 3306}, App: appdetect.MySQL, Flows: 1, RuleID: 5, Mode: datapath.ModeMonitor},
		},
		{
			name: "violations and drops",
			events: []datapath.FlowEvent{
				ev(datapath.EventViolation, false, "", func(e *datapath.FlowEvent) { e.Violation = true }),
				ev(datapath.EventViolation, false, "", func(e *datapath.FlowEvent) { e.SrcPort = 40001; e.Dropped = true }),
				ev(datapath.EventViolation, false, "", func(e *datapath.FlowEvent) { e.SrcPort = 40001; e.Dropped = true }),
			},
			want: Record{Key: Key{Src: 1, Dst: 2, Proto: 6, Port: 3306}, Flows: 1, Violations: 1, Dropped: 2, RuleID: 5, Mode: datapath.ModeMonitor},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(DefaultConfig())
			if err != nil {
				t.Fatalf("new: %v", err)
			}
			for _, e := range tc.events {
				a.Add(e, now)
			}
			got := a.Drain(now, time.Minute)
			if len(got) != 1 {
				t.Fatalf("got %d records, want 1: %+v", len(got), got)
			}
			g := got[0]
			g.FirstSeen, g.LastSeen = time.Time{}, time.Time{}
			if g != tc.want {
				t.Errorf("record %+v, want %+v", g, tc.want)
			}
			if again := a.Drain(now, time.Minute); len(again) != 0 {
				t.Errorf("second drain returned %d records", len(again))
			}
		})
	}
}

func TestAggregatorBounds(t *testing.T) {
	a, err := New(Config{MaxRecords: 2, MaxPendingFlows: 2})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	for port := uint16(1); port <= 4; port++ {
		a.Add(ev(datapath.EventNewFlow, false, "", func(e *datapath.FlowEvent) { e.DstPort = port }), time.Unix(int64(port), 0))
	}
	if got := len(a.Drain(time.Unix(10, 0), time.Hour)); got != 2 {
		t.Errorf("kept %d records, want 2", got)
	}
	if got := a.Stats().Overflow; got != 2 {
		t.Errorf("overflow %d, want 2", got)
	}
	if _, err := New(Config{}); err == nil {
		t.Errorf("zero config accepted")
	}
}
