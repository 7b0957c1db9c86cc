package node

import (
	"net/netip"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/datapath"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
)

func TestToDatapath(t *testing.T) {
	v := func(src, dst uint32, lo uint16, app string, a policy.Action) compile.Verdict {
		return compile.Verdict{SrcID: src, DstID: dst, Proto: 6, PortLo: lo, PortHi: lo, App: app, Action: a, RuleID: src + dst}
	}
	tests := []struct {
		name string
		in   []compile.Verdict
		want []datapath.VerdictEntry
	}{
		{"plain allow and deny", []compile.Verdict{v(256, 257, 80, "", policy.ActionAllow), v(256, 257, 22, "", policy.ActionDeny)},
			[]datapath.VerdictEntry{{SrcID: 256, DstID: 257, Proto: 6, PortLo: 80, PortHi: 80, Action: datapath.ActionAllow, RuleID: 513},
				{SrcID: 256, DstID: 257, Proto: 6, PortLo: 22, PortHi: 22, Action: datapath.ActionDeny, RuleID: 513}}},
		{"kernel-classified application keeps its application", []compile.Verdict{v(256, 257, 8080, "HTTP", policy.ActionAllow)},
			[]datapath.VerdictEntry{{SrcID: 256, DstID: 257, Proto: 6, PortLo: 8080, PortHi: 8080, App: datapath.AppHTTP, Action: datapath.ActionAllow, RuleID: 513}}},
		{"kernel-classified application deny is enforced", []compile.Verdict{v(256, 257, 80, "", policy.ActionAllow), v(256, 257, 80, "SSH", policy.ActionDeny)},
			[]datapath.VerdictEntry{{SrcID: 256, DstID: 257, Proto: 6, PortLo: 80, PortHi: 80, Action: datapath.ActionAllow, RuleID: 513},
				{SrcID: 256, DstID: 257, Proto: 6, PortLo: 80, PortHi: 80, App: datapath.AppSSH, Action: datapath.ActionDeny, RuleID: 513}}},
		{"postgresql, mysql, mongodb, kafka, dns and grpc are kernel-classified", []compile.Verdict{v(256, 257, 5432, "PostgreSQL", policy.ActionAllow),
			v(256, 257, 3306, "mysql", policy.ActionDeny), v(256, 257, 27017, "mongodb", policy.ActionAllow), v(256, 257, 9092, "kafka", policy.ActionAllow),
			v(256, 257, 53, "dns", policy.ActionAllow), v(256, 257, 50051, "grpc", policy.ActionAllow)},
			[]datapath.VerdictEntry{{SrcID: 256, DstID: 257, Proto: 6, PortLo: 5432, PortHi: 5432, App: datapath.AppPostgres, Action: datapath.ActionAllow, RuleID: 513},
				{SrcID: 256, DstID: 257, Proto: 6, PortLo: 3306, PortHi: 3306, App: datapath.AppMySQL, Action: datapath.ActionDeny, RuleID: 513},
				{SrcID: 256, DstID: 257, Proto: 6, PortLo: 27017, PortHi: 27017, App: datapath.AppMongoDB, Action: datapath.ActionAllow, RuleID: 513},
				{SrcID: 256, DstID: 257, Proto: 6, PortLo: 9092, PortHi: 9092, App: datapath.AppKafka, Action: datapath.ActionAllow, RuleID: 513},
				{SrcID: 256, DstID: 257, Proto: 6, PortLo: 53, PortHi: 53, App: datapath.AppDNS, Action: datapath.ActionAllow, RuleID: 513},
				{SrcID: 256, DstID: 257, Proto: 6, PortLo: 50051, PortHi: 50051, App: datapath.AppGRPC, Action: datapath.ActionAllow, RuleID: 513}}},
		{"port-only application allow becomes its port", []compile.Verdict{v(256, 257, 25, "SMTP", policy.ActionAllow)},
			[]datapath.VerdictEntry{{SrcID: 256, DstID: 257, Proto: 6, PortLo: 25, PortHi: 25, Action: datapath.ActionAllow, RuleID: 513}}},
		{"plain entry wins over port-only application entry", []compile.Verdict{v(256, 257, 80, "", policy.ActionDeny), v(256, 257, 80, "AMQP", policy.ActionAllow)},
			[]datapath.VerdictEntry{{SrcID: 256, DstID: 257, Proto: 6, PortLo: 80, PortHi: 80, Action: datapath.ActionDeny, RuleID: 513}}},
		{"port-only application deny is not enforced in the kernel", []compile.Verdict{v(256, 257, 80, "SMTP", policy.ActionDeny)}, nil},
		{"two port-only applications on one port give one entry", []compile.Verdict{v(256, 257, 80, "AMQP", policy.ActionAllow), v(256, 257, 80, "SMTP", policy.ActionAllow)},
			[]datapath.VerdictEntry{{SrcID: 256, DstID: 257, Proto: 6, PortLo: 80, PortHi: 80, Action: datapath.ActionAllow, RuleID: 513}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := &compile.Table{
				Endpoints: []compile.Endpoint{{Prefix: netip.MustParsePrefix("10.0.0.2/32"), ID: 256}},
				Verdicts:  tc.in,
				Profiles:  []compile.Profile{{ID: 256, NetworkMode: policy.ModeProtect}, {ID: 257}},
			}
			got, err := ToDatapath(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Verdicts) != len(tc.want) {
				t.Fatalf("verdicts: got %+v, want %+v", got.Verdicts, tc.want)
			}
			for i := range tc.want {
				if got.Verdicts[i] != tc.want[i] {
					t.Errorf("verdict %d: got %+v, want %+v", i, got.Verdicts[i], tc.want[i])
				}
			}
			if got.Modes[256] != datapath.ModeProtect || got.Modes[257] != datapath.ModeDiscover {
				t.Errorf("modes: got %v, want 256 protect, 257 discover", got.Modes)
			}
			if len(got.Endpoints) != 1 || got.Endpoints[0].Identity != 256 {
				t.Errorf("endpoints: got %+v", got.Endpoints)
			}
		})
	}
	if _, err := ToDatapath(&compile.Table{Verdicts: []compile.Verdict{v(1, 2, 3, "", "maybe")}}); err == nil {
		t.Error("unknown action: got no error")
	}
}

func TestAggregator(t *testing.T) {
	cl, sv := netip.MustParseAddr("10.231.1.2"), netip.MustParseAddr("10.231.2.2")
	t0 := time.Unix(1000, 0)
	ev := func(kind datapath.EventKind, srcPort uint16, reply bool, payload string) datapath.FlowEvent {
		e := datapath.FlowEvent{Kind: kind, SrcAddr: cl, DstAddr: sv, SrcPort: srcPort, DstPort: 8080, Proto: 6, Mode: datapath.ModeDiscover, Reply: reply}
		if reply {
			e.SrcAddr, e.DstAddr, e.SrcPort, e.DstPort = sv, cl, 8080, srcPort
		}
		if payload != "" {
			e.Payload = []byte(payload)
		}
		return e
	}
	a := newAggregator(10, 10, 10)
	// One flow seen at both ends, with samples both ways; a second flow.
	a.add(ev(datapath.EventNewFlow, 40000, false, ""), t0)
	a.add(ev(datapath.EventNewFlow, 40000, false, ""), t0)
	a.add(ev(datapath.EventSample, 40000, false, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), t0)
	a.add(ev(datapath.EventSample, 40000, true, "HTTP/1.1 200 OK\r\n\r\n"), t0)
	a.add(ev(datapath.EventNewFlow, 40001, false, ""), t0)
	// A violation dropped twice (a retransmitted SYN) is one event.
	drop := ev(datapath.EventViolation, 40002, false, "")
	drop.Mode, drop.Dropped, drop.Violation = datapath.ModeProtect, true, true
	a.add(drop, t0)
	a.add(drop, t0.Add(time.Second))
	flows, evs := a.drain(t0, time.Minute)
	if len(flows) != 1 {
		t.Fatalf("flows: got %+v, want one conversation", flows)
	}
	f := flows[0]
	if f.Client != cl || f.Server != sv || f.Port != 8080 || f.Flows != 3 || f.App != "http" || f.Violations != 1 || f.Dropped != 2 {
		t.Errorf("conversation: got %+v, want 3 flows, app http, 1 violation, 2 drops", f)
	}
	if len(evs) != 1 || evs[0].Action != "deny" || evs[0].Mode != "protect" || evs[0].Client != cl || evs[0].Port != 8080 {
		t.Errorf("events: got %+v, want one deny event", evs)
	}
	if flows, evs := a.drain(t0, time.Minute); len(flows) != 0 || len(evs) != 0 {
		t.Errorf("second drain: got %d flows and %d events, want none", len(flows), len(evs))
	}
	// gRPC: the preface alone reads as HTTP/2; the kernel, which walked
	// the client's frames to its HEADERS, names gRPC in a later sample.
	g := newAggregator(10, 10, 10)
	pre := ev(datapath.EventSample, 41000, false, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	g.add(pre, t0)
	if f, _ := g.drain(t0, time.Minute); len(f) != 1 || f[0].App != "http2" {
		t.Fatalf("preface: got %+v, want app http2", f)
	}
	later := ev(datapath.EventSample, 41000, false, "")
	later.App = datapath.AppGRPC
	g.add(pre, t0)
	g.add(later, t0)
	odd := ev(datapath.EventSample, 41001, false, "")
	odd.App = datapath.App(200) // not an application this build knows
	g.add(odd, t0)
	gf, _ := g.drain(t0, time.Minute)
	if len(gf) != 1 || gf[0].App != "grpc" {
		t.Errorf("kernel gRPC: got %+v, want app grpc", gf)
	}
	// Bounds: conversations beyond the limit are counted as lost.
	small := newAggregator(1, 10, 10)
	small.add(ev(datapath.EventNewFlow, 1, false, ""), t0)
	other := ev(datapath.EventNewFlow, 2, false, "")
	other.DstPort = 9090
	small.add(other, t0)
	if small.lost != 1 {
		t.Errorf("lost: got %d, want 1", small.lost)
	}
	// Flows beyond their bound evict the oldest eighth, ties included.
	for _, tc := range []struct {
		name string
		at   func(i int) time.Time
	}{
		{"distinct times", func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }},
		{"oldest two tied", func(i int) time.Time { return t0.Add(time.Duration(max(i, 1)) * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAggregator(100, 16, 10)
			for i := range 17 {
				a.add(ev(datapath.EventNewFlow, uint16(i), false, ""), tc.at(i))
			}
			if len(a.flows) != 15 {
				t.Fatalf("flows: got %d, want 15 (16 less the oldest two, and the new one)", len(a.flows))
			}
			for id := range a.flows {
				if id.client.Port() < 2 {
					t.Errorf("flow from port %d kept, want the two oldest gone", id.client.Port())
				}
			}
		})
	}
}

// BenchmarkAggregatorFull measures adding new flows to an aggregator
// holding as many flows as it keeps (the agent's bound, 65536), as under
// a scan of many ports.
func BenchmarkAggregatorFull(b *testing.B) {
	const max = 65536
	a := newAggregator(max, max, max)
	cl, sv := netip.MustParseAddr("10.231.1.2"), netip.MustParseAddr("10.231.2.2")
	t0 := time.Unix(1000, 0)
	ev := func(i int) datapath.FlowEvent {
		return datapath.FlowEvent{Kind: datapath.EventNewFlow, SrcAddr: cl, DstAddr: sv,
			SrcPort: uint16(i), DstPort: uint16(i >> 16), Proto: 6, Mode: datapath.ModeDiscover}
	}
	for i := range max {
		a.add(ev(i), t0.Add(time.Duration(i)))
	}
	i := max
	for b.Loop() {
		a.add(ev(i), t0.Add(time.Duration(i)))
		i++
	}
	if len(a.flows) > max {
		b.Fatalf("flows: %d, want at most %d", len(a.flows), max)
	}
}
