package datapath

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// lookup mimics the kernel: longest port prefix for (src, dst, proto), then
// for (src, dst, any).
func lookup(m map[policyKey]policyValue, src, dst Identity, proto uint8, port uint16) (policyValue, bool) {
	for _, p := range []uint8{proto, 0} {
		for bits := 16; bits >= 0; bits-- {
			mask := uint16(0xffff << (16 - bits))
			if bits == 0 {
				mask = 0
			}
			k := policyKey{Src: src, Dst: dst, Proto: p, Port: port & mask, Bits: uint8(bits)}
			if v, ok := m[k]; ok {
				return v, true
			}
		}
	}
	return policyValue{}, false
}

// reference picks the winner by brute force.
func reference(es []VerdictEntry, src, dst Identity, proto uint8, port uint16) (policyValue, bool) {
	var best *VerdictEntry
	for i := range es {
		e := es[i]
		lo, hi := e.ports()
		if e.SrcID != src || e.DstID != dst || (e.Proto != 0 && e.Proto != proto) || port < lo || port > hi {
			continue
		}
		if best == nil || moreSpecific(e, *best) < 0 {
			best = &es[i]
		}
	}
	if best == nil {
		return policyValue{}, false
	}
	return policyValue{RuleID: best.RuleID, Action: best.Action}, true
}

func TestCompileVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		entries []VerdictEntry
		probes  []struct {
			proto uint8
			port  uint16
			want  policyValue
			ok    bool
		}
	}{
		{
			name: "exact port and any",
			entries: []VerdictEntry{
				{SrcID: 1, DstID: 2, Proto: 6, PortLo: 80, PortHi: 80, Action: ActionAllow, RuleID: 10},
				{SrcID: 1, DstID: 2, Action: ActionDeny, RuleID: 11},
			},
			probes: []struct {
				proto uint8
				port  uint16
				want  policyValue
				ok    bool
			}{
				{6, 80, policyValue{RuleID: 10, Action: ActionAllow}, true},
				{6, 81, policyValue{RuleID: 11, Action: ActionDeny}, true},
				{17, 80, policyValue{RuleID: 11, Action: ActionDeny}, true},
				{1, 0, policyValue{RuleID: 11, Action: ActionDeny}, true},
			},
		},
		{
			name: "narrow deny inside wide allow",
			entries: []VerdictEntry{
				{SrcID: 1, DstID: 2, Proto: 6, PortLo: 1000, PortHi: 2000, Action: ActionAllow, RuleID: 1},
				{SrcID: 1, DstID: 2, Proto: 6, PortLo: 1500, PortHi: 1500, Action: ActionDeny, RuleID: 2},
			},
			probes: []struct {
				proto uint8
				port  uint16
				want  policyValue
				ok    bool
			}{
				{6, 999, policyValue{}, false},
				{6, 1000, policyValue{RuleID: 1, Action: ActionAllow}, true},
				{6, 1499, policyValue{RuleID: 1, Action: ActionAllow}, true},
				{6, 1500, policyValue{RuleID: 2, Action: ActionDeny}, true},
				{6, 2000, policyValue{RuleID: 1, Action: ActionAllow}, true},
				{6, 2001, policyValue{}, false},
				{17, 1500, policyValue{}, false},
			},
		},
		{
			name: "equal width deny wins",
			entries: []VerdictEntry{
				{SrcID: 1, DstID: 2, Proto: 17, PortLo: 53, PortHi: 53, Action: ActionAllow, RuleID: 1},
				{SrcID: 1, DstID: 2, Proto: 0, PortLo: 53, PortHi: 53, Action: ActionDeny, RuleID: 2},
			},
			probes: []struct {
				proto uint8
				port  uint16
				want  policyValue
				ok    bool
			}{
				{17, 53, policyValue{RuleID: 1, Action: ActionAllow}, true}, // specific protocol first
				{6, 53, policyValue{RuleID: 2, Action: ActionDeny}, true},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := stateFromTable(Table{Verdicts: tc.entries})
			if err != nil {
				t.Fatalf("stateFromTable: %v", err)
			}
			m := compileVerdicts(s, nil)
			for _, p := range tc.probes {
				got, ok := lookup(m, 1, 2, p.proto, p.port)
				if ok != p.ok || got != p.want {
					t.Errorf("proto %d port %d: got %+v,%v want %+v,%v", p.proto, p.port, got, ok, p.want, p.ok)
				}
			}
		})
	}
}

func TestCompileVerdictsMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		var es []VerdictEntry
		seen := map[verdictID]bool{}
		for i := 0; i < 1+r.IntN(12); i++ {
			lo := uint16(r.IntN(200))
			hi := lo + uint16(r.IntN(60))
			if r.IntN(5) == 0 {
				lo, hi = 0, 0
			}
			e := VerdictEntry{SrcID: 1, DstID: 2, Proto: []uint8{0, 6, 17}[r.IntN(3)], PortLo: lo, PortHi: hi,
				Action: Action(1 + r.IntN(2)), RuleID: uint32(i + 1)}
			if seen[e.id()] {
				continue
			}
			seen[e.id()] = true
			es = append(es, e)
		}
		s, err := stateFromTable(Table{Verdicts: es})
		if err != nil {
			t.Fatalf("stateFromTable: %v", err)
		}
		m := compileVerdicts(s, nil)
		for _, proto := range []uint8{1, 6, 17} {
			for port := 0; port < 300; port++ {
				got, gok := lookup(m, 1, 2, proto, uint16(port))
				want, wok := reference(es, 1, 2, proto, uint16(port))
				if got != want || gok != wok {
					t.Fatalf("round %d proto %d port %d: got %+v,%v want %+v,%v (entries %+v)", round, proto, port, got, gok, want, wok, es)
				}
			}
		}
	}
}

// kernelDecision is what the programs decide for a flow of application app
// (AppNone: not one the classifier names) from a compiled map.
func kernelDecision(m map[policyKey]policyValue, proto uint8, port uint16, app App) (rule uint32, allow bool) {
	v, ok := lookup(m, 1, 2, proto, port)
	if !ok {
		return 0, false
	}
	if appApplies(proto, app) && v.AppMask&(1<<app) != 0 {
		return v.AppRule[app], v.AppAllow&(1<<app) != 0
	}
	return v.RuleID, v.Action == ActionAllow
}

// appApplies reports whether application rules of app decide flows of
// protocol proto: any application over TCP, DNS over UDP.
func appApplies(proto uint8, app App) bool {
	return app != AppNone && (proto == 6 || (proto == 17 && app == AppDNS))
}

// referenceApp decides by brute force: the most specific entry of the
// application's space, else the most specific entry without application.
func referenceApp(es []VerdictEntry, proto uint8, port uint16, app App) (rule uint32, allow bool) {
	space := func(a App) []VerdictEntry {
		var out []VerdictEntry
		for _, e := range es {
			if e.App == a {
				out = append(out, e)
			}
		}
		return out
	}
	if appApplies(proto, app) {
		if v, ok := reference(space(app), 1, 2, proto, port); ok {
			return v.RuleID, v.Action == ActionAllow
		}
		// gRPC is HTTP/2.
		if app == AppGRPC {
			if v, ok := reference(space(AppHTTP2), 1, 2, proto, port); ok {
				return v.RuleID, v.Action == ActionAllow
			}
		}
	}
	v, _ := reference(space(AppNone), 1, 2, proto, port)
	return v.RuleID, v.Action == ActionAllow
}

func TestCompileAppVerdictsMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 50; round++ {
		var es []VerdictEntry
		seen := map[verdictID]bool{}
		for i := 0; i < 1+r.IntN(14); i++ {
			lo := uint16(r.IntN(200))
			hi := lo + uint16(r.IntN(60))
			if r.IntN(5) == 0 {
				lo, hi = 0, 0
			}
			e := VerdictEntry{SrcID: 1, DstID: 2, Proto: []uint8{0, 6, 17}[r.IntN(3)], PortLo: lo, PortHi: hi,
				App: []App{AppNone, AppNone, AppHTTP, AppTLS, AppRedis, AppDNS, AppGRPC, AppHTTP2, AppKafka}[r.IntN(9)], Action: Action(1 + r.IntN(2)), RuleID: uint32(i + 1)}
			if seen[e.id()] {
				continue
			}
			seen[e.id()] = true
			es = append(es, e)
		}
		s, err := stateFromTable(Table{Verdicts: es})
		if err != nil {
			t.Fatalf("stateFromTable: %v", err)
		}
		m := compileVerdicts(s, nil)
		for _, proto := range []uint8{6, 17} {
			for app := AppNone; app <= AppGRPC; app++ {
				for port := 0; port < 300; port++ {
					grule, gallow := kernelDecision(m, proto, uint16(port), app)
					wrule, wallow := referenceApp(es, proto, uint16(port), app)
					if gallow != wallow {
						t.Fatalf("round %d proto %d port %d app %s: allow %v (rule %d), want %v (rule %d); entries %+v", round, proto, port, app, gallow, grule, wallow, wrule, es)
					}
					if _, plainAllow := referenceApp(es, proto, uint16(port), AppNone); wallow != plainAllow && grule != wrule {
						t.Fatalf("round %d proto %d port %d app %s: rule %d, want %d", round, proto, port, app, grule, wrule)
					}
				}
			}
		}
	}
}

func TestCompileAppOnlyRule(t *testing.T) {
	s, err := stateFromTable(Table{Verdicts: []VerdictEntry{
		{SrcID: 1, DstID: 2, Proto: 6, PortLo: 8080, PortHi: 8080, App: AppHTTP, Action: ActionAllow, RuleID: 7},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := compileVerdicts(s, nil)
	if len(m) != 1 {
		t.Fatalf("got %d prefixes, want 1: %+v", len(m), m)
	}
	v, ok := lookup(m, 1, 2, 6, 8080)
	want := policyValue{Action: ActionNone, AppMask: 1 << AppHTTP, AppAllow: 1 << AppHTTP}
	want.AppRule[AppHTTP] = 7
	if !ok || v != want {
		t.Errorf("8080: got %+v %v, want %+v", v, ok, want)
	}
}

func TestCompileHighApplications(t *testing.T) {
	s, err := stateFromTable(Table{Verdicts: []VerdictEntry{
		{SrcID: 1, DstID: 2, Proto: 6, PortLo: 50051, PortHi: 50051, App: AppGRPC, Action: ActionAllow, RuleID: 7},
		{SrcID: 1, DstID: 2, Proto: 6, PortLo: 50051, PortHi: 50051, App: AppHTTP2, Action: ActionDeny, RuleID: 8},
		{SrcID: 1, DstID: 2, Proto: 6, PortLo: 50051, PortHi: 50051, Action: ActionAllow, RuleID: 9},
		{SrcID: 1, DstID: 2, Proto: 0, PortLo: 53, PortHi: 53, App: AppDNS, Action: ActionAllow, RuleID: 10},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m := compileVerdicts(s, nil)
	v, ok := lookup(m, 1, 2, 6, 50051)
	// gRPC agrees with the plain allow: only HTTP/2 is decided otherwise.
	want := policyValue{RuleID: 9, Action: ActionAllow, AppMask: 1 << AppHTTP2}
	want.AppRule[AppHTTP2] = 8
	if !ok || v != want {
		t.Errorf("50051: got %+v %v, want %+v", v, ok, want)
	}
	// gRPC without entries of its own follows HTTP/2.
	s, err = stateFromTable(Table{Verdicts: []VerdictEntry{
		{SrcID: 1, DstID: 2, Proto: 6, PortLo: 8000, PortHi: 8100, App: AppHTTP2, Action: ActionAllow, RuleID: 11},
		{SrcID: 1, DstID: 2, Proto: 6, PortLo: 8050, PortHi: 8050, App: AppGRPC, Action: ActionDeny, RuleID: 12},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m = compileVerdicts(s, nil)
	v, ok = lookup(m, 1, 2, 6, 8000)
	want = policyValue{AppMask: 1<<AppHTTP2 | 1<<AppGRPC, AppAllow: 1<<AppHTTP2 | 1<<AppGRPC}
	want.AppRule[AppHTTP2], want.AppRule[AppGRPC] = 11, 11
	if !ok || v != want {
		t.Errorf("8000: got %+v %v, want %+v", v, ok, want)
	}
	v, ok = lookup(m, 1, 2, 6, 8050)
	want = policyValue{AppMask: 1 << AppHTTP2, AppAllow: 1 << AppHTTP2}
	want.AppRule[AppHTTP2] = 11
	if !ok || v != want {
		t.Errorf("8050: got %+v %v, want %+v", v, ok, want)
	}
	s, err = stateFromTable(Table{Verdicts: []VerdictEntry{
		{SrcID: 1, DstID: 2, Proto: 0, PortLo: 53, PortHi: 53, App: AppDNS, Action: ActionAllow, RuleID: 10},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m = compileVerdicts(s, nil)
	v, ok = lookup(m, 1, 2, 17, 53)
	want = policyValue{AppMask: 1 << AppDNS, AppAllow: 1 << AppDNS}
	want.AppRule[AppDNS] = 10
	if !ok || v != want {
		t.Errorf("udp/53: got %+v %v, want %+v", v, ok, want)
	}
	if err := (VerdictEntry{SrcID: 1, DstID: 2, App: appMax + 1, Action: ActionAllow}).Validate(); err == nil {
		t.Errorf("application %d: no error", appMax+1)
	}
}

func TestPortPrefixes(t *testing.T) {
	tests := []struct {
		lo, hi uint32
		want   int
	}{
		{80, 80, 1},
		{0, 65535, 1},
		{1, 65535, 16},
		{1024, 2047, 1},
		{1, 65534, 30},
	}
	for _, tc := range tests {
		got := portPrefixes(tc.lo, tc.hi)
		if len(got) != tc.want {
			t.Errorf("portPrefixes(%d,%d): %d prefixes, want %d", tc.lo, tc.hi, len(got), tc.want)
		}
		covered := uint32(0)
		next := tc.lo
		for _, p := range got {
			if uint32(p.port) != next {
				t.Fatalf("portPrefixes(%d,%d): gap at %d", tc.lo, tc.hi, next)
			}
			size := uint32(1) << (16 - p.bits)
			covered += size
			next += size
		}
		if covered != tc.hi-tc.lo+1 {
			t.Errorf("portPrefixes(%d,%d) covers %d ports, want %d", tc.lo, tc.hi, covered, tc.hi-tc.lo+1)
		}
	}
}

func TestValidateEntries(t *testing.T) {
	tests := []struct {
		name string
		tab  Table
	}{
		{"bad action", Table{Verdicts: []VerdictEntry{{SrcID: 1, DstID: 2, Action: 7}}}},
		{"inverted range", Table{Verdicts: []VerdictEntry{{SrcID: 1, DstID: 2, PortLo: 90, PortHi: 80, Action: ActionAllow}}}},
		{"conflicting duplicate", Table{Verdicts: []VerdictEntry{
			{SrcID: 1, DstID: 2, Proto: 6, PortLo: 80, PortHi: 80, Action: ActionAllow, RuleID: 1},
			{SrcID: 1, DstID: 2, Proto: 6, PortLo: 80, PortHi: 80, Action: ActionDeny, RuleID: 2}}}},
		{"bad mode", Table{Modes: map[Identity]Mode{3: 9}}},
	}
	for _, tc := range tests {
		if _, err := stateFromTable(tc.tab); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestStateApplyLeavesOriginal(t *testing.T) {
	a := VerdictEntry{SrcID: 1, DstID: 2, Proto: 6, PortLo: 80, PortHi: 80, Action: ActionAllow, RuleID: 1}
	b := VerdictEntry{SrcID: 1, DstID: 3, Proto: 6, PortLo: 80, PortHi: 80, Action: ActionAllow, RuleID: 2}
	s, err := stateFromTable(Table{Verdicts: []VerdictEntry{a, b}})
	if err != nil {
		t.Fatalf("stateFromTable: %v", err)
	}
	c := a
	c.PortLo, c.PortHi, c.RuleID = 443, 443, 3
	n, pairs, err := s.apply(Diff{AddVerdicts: []VerdictEntry{c}, RemoveVerdicts: []VerdictEntry{b}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if s.nverdicts != 2 || len(s.verdicts[pairKey{1, 2}]) != 1 || len(s.verdicts[pairKey{1, 3}]) != 1 {
		t.Errorf("original changed: %d verdicts %+v", s.nverdicts, s.verdicts)
	}
	if n.nverdicts != 2 || len(n.verdicts[pairKey{1, 2}]) != 2 || len(n.verdicts[pairKey{1, 3}]) != 0 {
		t.Errorf("result: %d verdicts %+v", n.nverdicts, n.verdicts)
	}
	if !pairs[pairKey{1, 2}] || !pairs[pairKey{1, 3}] || len(pairs) != 2 {
		t.Errorf("touched pairs %v", pairs)
	}
	if _, _, err := s.apply(Diff{AddVerdicts: []VerdictEntry{{SrcID: 1, DstID: 2, Action: 9}}}); err == nil {
		t.Errorf("invalid verdict in diff accepted")
	}
	if _, _, err := s.apply(Diff{AddEndpoints: []EndpointEntry{{Prefix: netip.MustParsePrefix("10.0.0.1/8")}}}); err == nil {
		t.Errorf("prefix with host bits accepted")
	}
}

// BenchmarkCompileVerdicts compiles 100,000 single-port verdicts over 100
// identity pairs, as the traffic benchmark's table.
func BenchmarkCompileVerdicts(b *testing.B) {
	var es []VerdictEntry
	for i := 0; i < 100000; i++ {
		es = append(es, VerdictEntry{SrcID: Identity(1000 + i/1000), DstID: 200, Proto: 6, PortLo: uint16(1 + i%1000), PortHi: uint16(1 + i%1000), Action: ActionAllow, RuleID: uint32(100 + i)})
	}
	s, err := stateFromTable(Table{Verdicts: es})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m := compileVerdicts(s, nil); len(m) != len(es) {
			b.Fatalf("%d prefixes, want %d", len(m), len(es))
		}
	}
}
