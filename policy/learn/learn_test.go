package learn

import (
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

var (
	web1 = &policy.Workload{ID: "demo/web-1", Namespace: "demo", Service: "web", Labels: map[string]string{"app": "web"}}
	web2 = &policy.Workload{ID: "demo/web-2", Namespace: "demo", Service: "web", Labels: map[string]string{"app": "web"}}
	db   = &policy.Workload{ID: "demo/db-0", Namespace: "demo", Service: "db", Labels: map[string]string{"app": "db"}}
)

func wl(w *policy.Workload) Endpoint { return Endpoint{Workload: w} }

func addr(s string) Endpoint { return Endpoint{Addr: netip.MustParseAddr(s)} }

func tcp(src, dst Endpoint, port uint16, app string) Flow {
	return Flow{Src: src, Dst: dst, Proto: policy.ProtoTCP, Port: port, App: app}
}

func learner(t *testing.T, threshold int) *Learner {
	t.Helper()
	cfg := DefaultConfig()
	cfg.PortThreshold = threshold
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ruleSummary(rs []policy.NetworkRule) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		s := r.From + " -> " + r.To + " " + r.Ports
		if len(r.Applications) > 0 {
			s += " " + r.Applications[0]
		}
		out[r.Name] = s
	}
	return out
}

func TestLearn(t *testing.T) {
	userRule := policy.NetworkRule{Meta: policy.Meta{Name: "web-dns", Source: policy.SourceUser}, From: "web", To: "external", Ports: "udp/53", Action: policy.ActionAllow}
	denyRule := policy.NetworkRule{Meta: policy.Meta{Name: "no-ssh", Source: policy.SourceCode}, From: "web", To: "external", Ports: "tcp/22", Action: policy.ActionDeny}
	base := func() *policy.Set {
		return &policy.Set{
			Groups: []policy.Group{
				{Meta: policy.Meta{Name: "web", Source: policy.SourceUser}, Criteria: []policy.Criterion{{Key: policy.KeyLabel, Label: "app", Op: "=", Value: "web"}}},
				{Meta: policy.Meta{Name: "partners", Source: policy.SourceUser}, Criteria: []policy.Criterion{{Key: policy.KeyAddress, Op: "=", Value: "198.51.100.0/24"}}},
			},
			NetworkRules: []policy.NetworkRule{userRule, denyRule},
		}
	}
	tests := []struct {
		name      string
		flows     []Flow
		threshold int
		want      map[string]string
		wantGroup []string
	}{
		{"repeats merge", []Flow{tcp(wl(web1), wl(db), 5432, ""), tcp(wl(web2), wl(db), 5432, ""), tcp(wl(web1), wl(db), 5432, "")}, 16,
			map[string]string{"learned:learned.web.demo->learned.db.demo": "learned.web.demo -> learned.db.demo tcp/5432"},
			[]string{"learned.db.demo", "learned.web.demo"}},
		{"ports merge and collapse", func() []Flow {
			var fs []Flow
			for p := range uint16(5) {
				fs = append(fs, tcp(wl(web1), wl(db), 9000+p, ""))
			}
			return fs
		}(), 4, map[string]string{"learned:learned.web.demo->learned.db.demo": "learned.web.demo -> learned.db.demo tcp"}, nil},
		{"under the threshold", []Flow{tcp(wl(web1), wl(db), 1, ""), tcp(wl(web1), wl(db), 2, ""), {Src: wl(web1), Dst: wl(db), Proto: policy.ProtoUDP, Port: 2}}, 4,
			map[string]string{"learned:learned.web.demo->learned.db.demo": "learned.web.demo -> learned.db.demo tcp/1,tcp/2,udp/2"}, nil},
		{"covered by a user rule", []Flow{{Src: wl(web1), Dst: addr("8.8.8.8"), Proto: policy.ProtoUDP, Port: 53, App: "DNS"}}, 16, map[string]string{}, nil},
		{"covered by a deny rule", []Flow{tcp(wl(web1), addr("8.8.8.8"), 22, "SSH")}, 16, map[string]string{}, nil},
		{"external", []Flow{tcp(wl(db), addr("8.8.8.8"), 443, "TLS")}, 16,
			map[string]string{"learned:learned.db.demo->external": "learned.db.demo -> external tcp/443 TLS"}, []string{"learned.db.demo"}},
		{"address group", []Flow{tcp(wl(db), addr("198.51.100.7"), 443, "")}, 16,
			map[string]string{"learned:learned.db.demo->partners": "learned.db.demo -> partners tcp/443"}, nil},
		{"ingress from outside and nodes", []Flow{tcp(addr("203.0.113.9"), wl(db), 5432, "PostgreSQL"), tcp(Endpoint{Node: true}, wl(db), 8080, "HTTP")}, 16,
			map[string]string{
				"learned:external->learned.db.demo": "external -> learned.db.demo tcp/5432 PostgreSQL",
				"learned:nodes->learned.db.demo":    "nodes -> learned.db.demo tcp/8080 HTTP",
			}, nil},
		{"app only when every flow had one", []Flow{tcp(wl(db), addr("8.8.4.4"), 80, "HTTP"), tcp(wl(db), addr("8.8.4.4"), 8080, "")}, 16,
			map[string]string{"learned:learned.db.demo->external": "learned.db.demo -> external tcp/80,tcp/8080"}, nil},
		{"reserved to reserved and odd protocols ignored", []Flow{tcp(Endpoint{Node: true}, addr("1.1.1.1"), 53, ""), {Src: wl(db), Dst: wl(web1), Proto: 132, Port: 9}, tcp(wl(db), wl(web1), 0, "")}, 16,
			map[string]string{}, nil},
	}
	for _, tt := range tests {
		set := base()
		res, err := learner(t, tt.threshold).Learn(set, tt.flows)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := ruleSummary(res.Rules); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: rules %v, want %v", tt.name, got, tt.want)
		}
		if tt.wantGroup != nil {
			var got []string
			for _, g := range res.Groups {
				got = append(got, g.Name)
			}
			if !slices.Equal(got, tt.wantGroup) {
				t.Errorf("%s: groups %v, want %v", tt.name, got, tt.wantGroup)
			}
		}
		merged := *set
		merged.Groups = append(slices.Clone(set.Groups), res.Groups...)
		merged.NetworkRules = append(slices.Clone(set.NetworkRules), res.Rules...)
		if err := merged.Validate(); err != nil {
			t.Errorf("%s: learned policy does not validate: %v", tt.name, err)
		}
	}
}

func TestLearnGrowsAndConverges(t *testing.T) {
	l := learner(t, 3)
	set := &policy.Set{}
	apply := func(res *Result) {
		set.Groups = append(set.Groups, res.Groups...)
		for _, r := range res.Rules {
			set.NetworkRules = slices.DeleteFunc(set.NetworkRules, func(x policy.NetworkRule) bool { return x.Name == r.Name })
			set.NetworkRules = append(set.NetworkRules, r)
		}
	}
	res, _ := l.Learn(set, []Flow{tcp(wl(web1), wl(db), 5432, "")})
	apply(res)
	res, _ = l.Learn(set, []Flow{tcp(wl(web1), wl(db), 5432, "")})
	if len(res.Rules)+len(res.Groups) != 0 {
		t.Fatalf("repeat learned again: %+v", res)
	}
	res, _ = l.Learn(set, []Flow{tcp(wl(web1), wl(db), 6432, "")})
	if len(res.Groups) != 0 || len(res.Rules) != 1 || res.Rules[0].Ports != "tcp/5432,tcp/6432" {
		t.Fatalf("growth: %+v", res)
	}
	apply(res)
	res, _ = l.Learn(set, []Flow{tcp(wl(web1), wl(db), 7000, ""), tcp(wl(web1), wl(db), 7001, "")})
	if len(res.Rules) != 1 || res.Rules[0].Ports != "tcp" {
		t.Fatalf("collapse: %+v", res)
	}
	apply(res)
	if err := set.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(set.NetworkRules) != 1 {
		t.Fatalf("rules duplicated: %+v", set.NetworkRules)
	}
}

func TestLearnIndependentOfOrder(t *testing.T) {
	var flows []Flow
	ws := []*policy.Workload{web1, web2, db}
	r := rand.New(rand.NewPCG(1, 1))
	for range 200 {
		flows = append(flows, tcp(wl(ws[r.IntN(3)]), wl(ws[r.IntN(3)]), uint16(1+r.IntN(30)), []string{"", "HTTP"}[r.IntN(2)]))
	}
	l := learner(t, 10)
	want, _ := l.Learn(&policy.Set{}, flows)
	for range 10 {
		r.Shuffle(len(flows), func(i, j int) { flows[i], flows[j] = flows[j], flows[i] })
		got, _ := l.Learn(&policy.Set{}, flows)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("result depends on flow order")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{PortThreshold: 0, GroupPrefix: "x"}, {PortThreshold: 5, GroupPrefix: "a b"}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
