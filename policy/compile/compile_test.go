package compile

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func label(k, v string) policy.Criterion {
	return policy.Criterion{Key: policy.KeyLabel, Label: k, Op: policy.OpEqual, Value: v}
}

func crit(k policy.Key, v string) policy.Criterion {
	return policy.Criterion{Key: k, Op: policy.OpEqual, Value: v}
}

func group(name string, src policy.Source, cs ...policy.Criterion) policy.Group {
	return policy.Group{Meta: policy.Meta{Name: name, Source: src}, Criteria: cs}
}

func rule(name string, src policy.Source, from, to, ports string, a policy.Action, apps ...string) policy.NetworkRule {
	return policy.NetworkRule{Meta: policy.Meta{Name: name, Source: src}, From: from, To: to, Ports: ports, Action: a, Applications: apps}
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// scenario is a small cluster: a web tier, a database, an address group and
// a domain, with rules from every source.
func scenario() Input {
	u, c := policy.SourceUser, policy.SourceCode
	return Input{
		Policy: &policy.Set{
			Defaults: policy.Defaults{NetworkMode: policy.ModeMonitor},
			Groups: []policy.Group{
				group("web", u, label("app", "web")),
				group("db", u, label("app", "db")),
				group("demo", u, crit(policy.KeyNamespace, "demo")),
				{Meta: policy.Meta{Name: "locked", Source: c}, Criteria: []policy.Criterion{label("tier", "locked")}, NetworkMode: policy.ModeProtect, ProcessMode: policy.ModeProtect, Baseline: policy.BaselineZeroDrift},
				group("corp", u, crit(policy.KeyAddress, "10.0.0.0/8"), crit(policy.KeyAddress, "2001:db8::/32")),
				group("corp-lab", u, crit(policy.KeyAddress, "10.9.0.0/16")),
				group("saas", u, crit(policy.KeyAddress, "*.example.com")),
			},
			NetworkRules: []policy.NetworkRule{
				rule("web-to-db", u, "web", "db", "tcp/5432", policy.ActionAllow),
				rule("demo-no-db-admin", u, "demo", "db", "tcp/5433,tcp/9000-9100", policy.ActionDeny),
				rule("code-db-metrics", c, "web", "db", "tcp/9090", policy.ActionAllow),
				rule("ingress-web", u, "external", "web", "tcp/443,tcp/80", policy.ActionAllow),
				rule("web-dns", u, "web", "external", "udp/53", policy.ActionAllow, "DNS"),
				rule("web-corp-http", u, "web", "corp", "tcp/8000-8100", policy.ActionAllow, "HTTP"),
				rule("web-corp-any", u, "web", "corp", "any", policy.ActionDeny),
				rule("web-lab", c, "web", "corp-lab", "tcp/8080", policy.ActionAllow),
				rule("web-saas", u, "web", "saas", "tcp/443", policy.ActionAllow, "TLS"),
				rule("nodes-probe", u, "nodes", "web", "tcp/8081", policy.ActionAllow),
				rule("learned-db-web", policy.SourceLearned, "db", "web", "tcp/80", policy.ActionAllow),
			},
			ProcessRules: []policy.ProcessRule{
				{Meta: policy.Meta{Name: "web:nginx", Source: u}, Group: "web", Process: "nginx", Path: "/usr/sbin/nginx", Action: policy.ActionAllow},
				{Meta: policy.Meta{Name: "locked:sh", Source: c}, Group: "locked", Process: "sh", Path: "/bin/sh", Action: policy.ActionDeny},
			},
			FileRules: []policy.FileRule{
				{Meta: policy.Meta{Name: "locked:etc", Source: c}, Group: "locked", Filter: "/etc", Recursive: true, Behavior: policy.FileBlockAccess},
			},
		},
		Workloads: []policy.Workload{
			{ID: "demo/web-1", Namespace: "demo", Labels: map[string]string{"app": "web"}, Node: "n1", Addresses: addrs("10.244.1.10")},
			{ID: "demo/web-2", Namespace: "demo", Labels: map[string]string{"app": "web"}, Node: "n2", Addresses: addrs("10.244.2.10", "fd00::2:10")},
			{ID: "demo/db-1", Namespace: "demo", Labels: map[string]string{"app": "db"}, Node: "n2", Addresses: addrs("10.244.2.20")},
			{ID: "prod/db-1", Namespace: "prod", Labels: map[string]string{"app": "db", "tier": "locked"}, Node: "n1", Addresses: addrs("10.244.1.30")},
			{ID: "prod/batch", Namespace: "prod", Node: "n1", Addresses: addrs("10.244.1.40")},
		},
		Nodes: []Node{{Name: "n1", Addresses: addrs("192.168.0.1")}, {Name: "n2", Addresses: addrs("192.168.0.2")}},
	}
}

func mustCompile(t *testing.T, in Input) *Table {
	t.Helper()
	tb, err := Compile(in)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tb
}

func golden(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file; run with -update and review the diff.\ngot:\n%s", name, got)
	}
}

func TestCompileGolden(t *testing.T) {
	tb := mustCompile(t, scenario())
	golden(t, "scenario.table.json", tb)
	golden(t, "scenario.n1.json", tb.ForNode("n1"))
}

func idOf(t *testing.T, tb *Table, workload string) uint32 {
	t.Helper()
	id, ok := tb.IdentityOf(workload)
	if !ok {
		t.Fatalf("workload %s has no identity", workload)
	}
	return id
}

func endpointID(tb *Table, a string) uint32 {
	addr := netip.MustParseAddr(a)
	best, id := -1, IDUnknown
	for _, e := range tb.Endpoints {
		if e.Prefix.Contains(addr) && e.Prefix.Bits() > best {
			best, id = e.Prefix.Bits(), e.ID
		}
	}
	return id
}

func TestCompileVerdicts(t *testing.T) {
	tb := mustCompile(t, scenario())
	web, dbDemo, dbProd, batch := idOf(t, tb, "demo/web-1"), idOf(t, tb, "demo/db-1"), idOf(t, tb, "prod/db-1"), idOf(t, tb, "prod/batch")
	if web != idOf(t, tb, "demo/web-2") {
		t.Errorf("replicas with the same groups have different identities")
	}
	if batch != IDUngrouped {
		t.Errorf("ungrouped workload has identity %d, want %d", batch, IDUngrouped)
	}
	corp, lab := endpointID(tb, "10.1.2.3"), endpointID(tb, "10.9.0.1")
	for _, tt := range []struct {
		addr string
		want uint32
	}{{"10.244.1.10", web}, {"fd00::2:10", web}, {"192.168.0.1", IDNodes}, {"8.8.8.8", IDExternal}, {"2606:4700::1", IDExternal}} {
		if got := endpointID(tb, tt.addr); got != tt.want {
			t.Errorf("endpoint %s = %d, want %d", tt.addr, got, tt.want)
		}
	}
	if corp < FirstDynamicID || lab < FirstDynamicID || corp == lab {
		t.Fatalf("address identities corp=%d lab=%d", corp, lab)
	}
	tests := []struct {
		name     string
		src, dst uint32
		proto    uint8
		port     uint16
		app      string
		want     policy.Action // "" means no entry
		wantRule string
	}{
		{"allowed db port", web, dbDemo, policy.ProtoTCP, 5432, "", policy.ActionAllow, "web-to-db"},
		{"deny from namespace group", web, dbDemo, policy.ProtoTCP, 9050, "", policy.ActionDeny, "demo-no-db-admin"},
		{"code allow beats user deny", web, dbDemo, policy.ProtoTCP, 9090, "", policy.ActionAllow, "code-db-metrics"},
		{"no rule", web, dbDemo, policy.ProtoTCP, 22, "", "", ""},
		{"udp not covered", web, dbDemo, policy.ProtoUDP, 5432, "", "", ""},
		{"other db, rule by label", web, dbProd, policy.ProtoTCP, 5432, "", policy.ActionAllow, "web-to-db"},
		{"deny covers every db from demo", web, dbProd, policy.ProtoTCP, 9050, "", policy.ActionDeny, "demo-no-db-admin"},
		{"no rule from ungrouped", batch, dbProd, policy.ProtoTCP, 5432, "", "", ""},
		{"ingress from world", IDExternal, web, policy.ProtoTCP, 443, "", policy.ActionAllow, "ingress-web"},
		{"ingress from address group is external too", corp, web, policy.ProtoTCP, 80, "", policy.ActionAllow, "ingress-web"},
		{"ingress other port", IDExternal, web, policy.ProtoTCP, 8443, "", "", ""},
		{"nodes probe", IDNodes, web, policy.ProtoTCP, 8081, "", policy.ActionAllow, "nodes-probe"},
		{"learned rule", dbDemo, web, policy.ProtoTCP, 80, "", policy.ActionAllow, "learned-db-web"},
		{"corp deny before app detection", web, corp, policy.ProtoTCP, 8050, "", policy.ActionDeny, "web-corp-any"},
		{"corp http app", web, corp, policy.ProtoTCP, 8050, "HTTP", policy.ActionDeny, "web-corp-any"},
		{"corp udp", web, corp, policy.ProtoUDP, 53, "", policy.ActionDeny, "web-corp-any"},
		{"corp icmp", web, corp, policy.ProtoICMP, 0, "", policy.ActionDeny, "web-corp-any"},
		{"lab code allow beats user deny", web, lab, policy.ProtoTCP, 8080, "", policy.ActionAllow, "web-lab"},
		{"lab is in corp", web, lab, policy.ProtoTCP, 8081, "", policy.ActionDeny, "web-corp-any"},
		{"dns with app", web, IDExternal, policy.ProtoUDP, 53, "DNS", policy.ActionAllow, "web-dns"},
		{"dns app only", web, IDExternal, policy.ProtoUDP, 53, "", "", ""},
	}
	names := map[uint32]string{}
	for _, r := range tb.Rules {
		names[r.ID] = r.Name
	}
	for _, tt := range tests {
		v, ok := tb.Lookup(tt.src, tt.dst, tt.proto, tt.port, tt.app)
		switch {
		case tt.want == "" && ok:
			t.Errorf("%s: got %s by %s, want no entry", tt.name, v.Action, names[v.RuleID])
		case tt.want != "" && !ok:
			t.Errorf("%s: no entry, want %s by %s", tt.name, tt.want, tt.wantRule)
		case ok && (v.Action != tt.want || names[v.RuleID] != tt.wantRule):
			t.Errorf("%s: got %s by %s, want %s by %s", tt.name, v.Action, names[v.RuleID], tt.want, tt.wantRule)
		}
	}
}

func TestCompileVerdictsDoNotOverlap(t *testing.T) {
	tb := mustCompile(t, scenario())
	for i := 1; i < len(tb.Verdicts); i++ {
		a, b := tb.Verdicts[i-1], tb.Verdicts[i]
		if a.SrcID == b.SrcID && a.DstID == b.DstID && a.App == b.App && a.Proto == b.Proto {
			if a.PortHi == 0 && a.PortLo == 0 || b.PortLo <= a.PortHi {
				t.Errorf("overlapping entries %+v and %+v", a, b)
			}
		}
	}
}

func TestCompileProfiles(t *testing.T) {
	tb := mustCompile(t, scenario())
	prof := map[uint32]Profile{}
	for _, p := range tb.Profiles {
		prof[p.ID] = p
	}
	web := prof[idOf(t, tb, "demo/web-1")]
	if web.NetworkMode != policy.ModeMonitor || web.ProcessMode != policy.ModeDiscover || web.Baseline != policy.BaselineBasic {
		t.Errorf("web profile modes %+v", web)
	}
	if len(web.Processes) != 1 || web.Processes[0].Path != "/usr/sbin/nginx" {
		t.Errorf("web processes %+v", web.Processes)
	}
	locked := prof[idOf(t, tb, "prod/db-1")]
	if locked.NetworkMode != policy.ModeProtect || locked.ProcessMode != policy.ModeProtect || locked.Baseline != policy.BaselineZeroDrift {
		t.Errorf("locked profile %+v", locked)
	}
	if len(locked.Files) != 1 || locked.Files[0].Behavior != policy.FileBlockAccess {
		t.Errorf("locked files %+v", locked.Files)
	}
	if _, ok := prof[IDExternal]; ok {
		t.Errorf("external identity has a profile")
	}
}

func TestCompileRejectsInvalidPolicy(t *testing.T) {
	in := scenario()
	in.Policy.NetworkRules[0].Ports = "tcp/99999"
	_, err := Compile(in)
	if err == nil {
		t.Fatal("Compile accepted a bad port")
	}
	if want := `network rule "web-to-db": ports: "tcp/99999" is out of range`; !contains(err.Error(), want) {
		t.Errorf("error %q, want containing %q", err, want)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// shuffled returns a copy of in with every list in a random order.
func shuffled(in Input, r *rand.Rand) Input {
	p := *in.Policy
	p.Groups = slices.Clone(p.Groups)
	p.NetworkRules = slices.Clone(p.NetworkRules)
	p.ProcessRules = slices.Clone(p.ProcessRules)
	p.FileRules = slices.Clone(p.FileRules)
	for i := range p.Groups {
		p.Groups[i].Criteria = slices.Clone(p.Groups[i].Criteria)
		r.Shuffle(len(p.Groups[i].Criteria), func(a, b int) {
			p.Groups[i].Criteria[a], p.Groups[i].Criteria[b] = p.Groups[i].Criteria[b], p.Groups[i].Criteria[a]
		})
	}
	r.Shuffle(len(p.Groups), func(a, b int) { p.Groups[a], p.Groups[b] = p.Groups[b], p.Groups[a] })
	r.Shuffle(len(p.NetworkRules), func(a, b int) { p.NetworkRules[a], p.NetworkRules[b] = p.NetworkRules[b], p.NetworkRules[a] })
	r.Shuffle(len(p.ProcessRules), func(a, b int) { p.ProcessRules[a], p.ProcessRules[b] = p.ProcessRules[b], p.ProcessRules[a] })
	out := Input{Policy: &p, Workloads: slices.Clone(in.Workloads), Nodes: slices.Clone(in.Nodes)}
	r.Shuffle(len(out.Workloads), func(a, b int) { out.Workloads[a], out.Workloads[b] = out.Workloads[b], out.Workloads[a] })
	r.Shuffle(len(out.Nodes), func(a, b int) { out.Nodes[a], out.Nodes[b] = out.Nodes[b], out.Nodes[a] })
	return out
}

func TestCompileIndependentOfInputOrder(t *testing.T) {
	for _, in := range []Input{scenario(), synthetic(rand.New(rand.NewPCG(1, 2)), 60, 40, 12)} {
		want := mustCompile(t, in)
		r := rand.New(rand.NewPCG(7, 9))
		for i := range 25 {
			got := mustCompile(t, shuffled(in, r))
			if !reflect.DeepEqual(got, want) {
				d := Diff(want, got)
				t.Fatalf("shuffle %d: table differs: %d entries changed", i, d.Len())
			}
		}
	}
}

// synthetic builds a random cluster: services in namespaces with
// replicas over nodes, service, namespace and label groups, and rules
// between them from every source.
func synthetic(r *rand.Rand, nWorkloads, nRules, nServices int) Input {
	srcs := []policy.Source{policy.SourceCode, policy.SourceUser, policy.SourceLearned}
	var set policy.Set
	var nss []string
	for i := range nServices {
		ns := fmt.Sprintf("ns%d", i%4)
		set.Groups = append(set.Groups, group(fmt.Sprintf("svc%d", i), policy.SourceLearned, crit(policy.KeyService, fmt.Sprintf("svc%d", i)), crit(policy.KeyNamespace, ns)))
		if !slices.Contains(nss, ns) {
			nss = append(nss, ns)
			set.Groups = append(set.Groups, group("ns-"+ns, policy.SourceUser, crit(policy.KeyNamespace, ns)))
		}
	}
	set.Groups = append(set.Groups,
		group("tier-front", policy.SourceUser, label("tier", "front")),
		group("tier-back", policy.SourceCode, label("tier", "back")),
		group("net-a", policy.SourceUser, crit(policy.KeyAddress, "203.0.113.0/24")),
		group("net-b", policy.SourceUser, crit(policy.KeyAddress, "203.0.113.128/25"), crit(policy.KeyAddress, "*.svc.example")))
	names := func() string {
		if r.IntN(10) == 0 {
			return []string{"external", "nodes", "net-a", "net-b"}[r.IntN(4)]
		}
		return set.Groups[r.IntN(len(set.Groups)-2)].Name
	}
	ports := []string{"tcp/80", "tcp/443", "udp/53", "tcp/8000-8100", "any", "tcp", "443", "icmp", "tcp/5432,tcp/5433"}
	for i := range nRules {
		a := policy.ActionAllow
		if r.IntN(5) == 0 {
			a = policy.ActionDeny
		}
		nr := rule(fmt.Sprintf("r%d", i), srcs[r.IntN(len(srcs))], names(), names(), ports[r.IntN(len(ports))], a)
		if r.IntN(6) == 0 {
			nr.Applications = []string{"HTTP"}
		}
		set.NetworkRules = append(set.NetworkRules, nr)
	}
	set.ProcessRules = append(set.ProcessRules, policy.ProcessRule{Meta: policy.Meta{Name: "front-sh", Source: policy.SourceUser}, Group: "tier-front", Process: "sh", Path: "/bin/sh", Action: policy.ActionDeny})
	in := Input{Policy: &set}
	for i := range 3 {
		in.Nodes = append(in.Nodes, Node{Name: fmt.Sprintf("node%d", i), Addresses: addrs(fmt.Sprintf("192.168.1.%d", i+1))})
	}
	for i := range nWorkloads {
		s := r.IntN(nServices)
		tier := []string{"front", "back", ""}[s%3]
		w := policy.Workload{ID: fmt.Sprintf("w%d", i), Namespace: fmt.Sprintf("ns%d", s%4), Service: fmt.Sprintf("svc%d", s),
			Labels: map[string]string{}, Node: fmt.Sprintf("node%d", r.IntN(3)), Addresses: addrs(fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256))}
		if tier != "" {
			w.Labels["tier"] = tier
		}
		in.Workloads = append(in.Workloads, w)
	}
	return in
}
