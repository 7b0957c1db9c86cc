package procguard

import "testing"

func TestPolicyCheck(t *testing.T) {
	p := NewPolicy()
	for _, g := range []Group{
		{Name: "learn", CgroupID: 1, Mode: ModeDiscover, Allowed: []string{"/bin/sh"}},
		{Name: "watch", CgroupID: 2, Mode: ModeMonitor, Allowed: []string{"/bin/sh"}},
		{Name: "guard", CgroupID: 3, Mode: ModeProtect, Allowed: []string{"/bin/sh"}},
	} {
		if err := p.Set(g); err != nil {
			t.Fatalf("set %s: %v", g.Name, err)
		}
	}
	tests := []struct {
		cg       uint64
		path     string
		want     Verdict
		wantDeny bool
	}{
		{1, "/bin/sh", Allowed, false},
		{1, "/usr/bin/curl", Learned, false},
		{1, "/usr/bin/curl", Allowed, false}, // learned above
		{2, "/usr/bin/curl", Violation, false},
		{2, "/usr/bin/curl", Violation, false}, // monitor does not learn
		{3, "/bin/sh", Allowed, false},
		{3, "/usr/bin/curl", Violation, true},
		{9, "/usr/bin/curl", Unguarded, false},
	}
	for i, tc := range tests {
		v, _, deny := p.Check(tc.cg, tc.path)
		if v != tc.want || deny != tc.wantDeny {
			t.Errorf("%d: Check(%d, %s) = %v deny %v, want %v deny %v", i, tc.cg, tc.path, v, deny, tc.want, tc.wantDeny)
		}
	}
	g, _ := p.Group(1)
	if len(g.Allowed) != 2 {
		t.Errorf("learned profile %v, want 2 paths", g.Allowed)
	}
	if err := p.Set(Group{Name: "bad"}); err == nil {
		t.Errorf("group with cgroup id 0 accepted")
	}
	if err := p.Set(Group{Name: "bad", CgroupID: 4, Mode: 7}); err == nil {
		t.Errorf("group with bad mode accepted")
	}
	p.Remove(3)
	if v, _, _ := p.Check(3, "/usr/bin/curl"); v != Unguarded {
		t.Errorf("removed group still guarded: %v", v)
	}
}
