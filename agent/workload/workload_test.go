package workload

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	good := `
- name: web
  namespace: shop
  labels: {app: web, tier: front}
  netns: web-1
- name: db
  namespace: shop
  netns: db-1
  cgroup: /palisade/db
`
	ws, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(ws) != 2 || ws[0].ID() != "shop/web" || ws[0].Labels["tier"] != "front" || ws[1].Netns != "db-1" ||
		ws[1].Cgroup != "/palisade/db" || ws[0].Cgroup != "" {
		t.Errorf("parsed %+v", ws)
	}
	bad := []struct{ name, in string }{
		{"not a list", "name: web"},
		{"no name", "- {namespace: a, netns: x}"},
		{"no namespace", "- {name: a, netns: x}"},
		{"netns path", "- {name: a, namespace: b, netns: ../etc}"},
		{"netns dotdot", "- {name: a, namespace: b, netns: ..}"},
		{"duplicate", "- {name: a, namespace: b, netns: x}\n- {name: a, namespace: b, netns: y}"},
		{"unknown field", "- {name: a, namespace: b, netns: x, image: y}"},
		{"cgroup relative", "- {name: a, namespace: b, netns: x, cgroup: palisade/a}"},
		{"cgroup dotdot", "- {name: a, namespace: b, netns: x, cgroup: /palisade/../a}"},
		{"cgroup unclean", "- {name: a, namespace: b, netns: x, cgroup: /palisade//a}"},
		{"cgroup trailing slash", "- {name: a, namespace: b, netns: x, cgroup: /palisade/}"},
		{"empty label key", "- {name: a, namespace: b, netns: x, labels: {'': v}}"},
	}
	for _, tc := range bad {
		if _, err := Parse([]byte(tc.in)); !errors.Is(err, ErrBadFile) {
			t.Errorf("%s: got %v, want ErrBadFile", tc.name, err)
		}
	}
}

func TestDiff(t *testing.T) {
	ep := func(name string, addr string) Endpoint {
		return Endpoint{Workload: Workload{Name: name, Namespace: "n", Netns: name},
			Interfaces: []Interface{{Name: "eth0", Index: 2, Addrs: []netip.Prefix{netip.MustParsePrefix(addr)}}}}
	}
	old := map[string]Endpoint{"n/a": ep("a", "10.0.0.1/24"), "n/b": ep("b", "10.0.0.2/24")}
	cur := map[string]Endpoint{"n/a": ep("a", "10.0.0.9/24"), "n/c": ep("c", "10.0.0.3/24")}
	got := Diff(old, cur)
	want := []struct {
		kind ChangeKind
		name string
	}{{Updated, "a"}, {Added, "c"}, {Removed, "b"}}
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Kind != w.kind || got[i].Endpoint.Name != w.name {
			t.Errorf("change %d: %v %s, want %v %s", i, got[i].Kind, got[i].Endpoint.Name, w.kind, w.name)
		}
	}
	if len(Diff(cur, cur)) != 0 {
		t.Errorf("no-op diff reported changes")
	}
	moved := ep("a", "10.0.0.9/24")
	moved.Cgroup = "/palisade/a"
	if got := Diff(cur, map[string]Endpoint{"n/a": moved, "n/c": cur["n/c"]}); len(got) != 1 || got[0].Kind != Updated {
		t.Errorf("cgroup change: got %+v, want one Updated", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("- {name: a, namespace: b, netns: x, labels: {k: v}}"))
	f.Add([]byte("[]"))
	f.Add([]byte("- {name: a, namespace: b, netns: x, cgroup: /palisade/a}"))
	f.Add([]byte("- name: a\n  namespace: b\n  netns: ../x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ws, err := Parse(data)
		if err != nil {
			return
		}
		for _, w := range ws {
			if w.Name == "" || w.Namespace == "" || w.Netns == "" || ValidateCgroup(w.Cgroup) != nil {
				t.Fatalf("accepted incomplete workload %+v", w)
			}
		}
	})
}

func TestValidateCgroup(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"", true},
		{"/", true},
		{"/palisade/orders", true},
		{"/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope", true},
		{"palisade", false},
		{"/a/../b", false},
		{"/..", false},
		{"/a/./b", false},
		{"/a//b", false},
		{"/a/", false},
		{"/a\x00b", false},
	}
	for _, tc := range tests {
		if err := ValidateCgroup(tc.in); (err == nil) != tc.ok {
			t.Errorf("ValidateCgroup(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
