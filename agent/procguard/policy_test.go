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

func TestPolicyCheckFile(t *testing.T) {
	p := NewPolicy()
	rules := []FileRule{
		{Path: "/etc/shadow", Block: true},
		{Path: "/app/config", Recursive: false},
		{Path: "/app/secrets", Recursive: true, Block: true, ID: 7},
		{Path: "/srv/*.key", Block: true, ID: 8},
		{Path: "/var/lib/*.db", Recursive: true, Block: true, ID: 9},
	}
	if err := p.Set(Group{Name: "g", CgroupID: 1, Mode: ModeProtect, Files: rules}); err != nil {
		t.Fatalf("set: %v", err)
	}
	if err := p.Set(Group{Name: "m", CgroupID: 2, Mode: ModeMonitor, Files: rules}); err != nil {
		t.Fatalf("set: %v", err)
	}
	p.SetFileDevices(2, []uint64{20, 21})
	p.SetFileDevices(4, []uint64{20}) // no such group: ignored
	tests := []struct {
		cg          uint64
		path        string
		change      bool
		match, deny bool
		id          uint32
	}{
		{1, "/etc/shadow", false, true, true, 0}, // devices never set: any
		{1, "/etc/shadow", true, true, false, 0}, // a change is reported, never denied
		{1, "/etc/passwd", false, false, false, 0},
		{1, "/app/config/a.yaml", false, false, false, 0}, // watching rules ignore opens
		{1, "/app/config/a.yaml", true, true, false, 0},
		{1, "/app/config/sub/a.yaml", true, false, false, 0}, // not recursive
		{1, "/app/configx", true, false, false, 0},
		{1, "/app/secrets/db/key", false, true, true, 7},
		{1, "/srv/tls.key", false, true, true, 8},
		{1, "/srv/sub/tls.key", false, false, false, 0}, // not recursive
		{1, "/srv/tls.crt", false, false, false, 0},
		{1, "/var/lib/a/b/orders.db", false, true, true, 9},
		{1, "/var/libx/orders.db", false, false, false, 0},
		{2, "/app/secrets/db/key", false, true, false, 7}, // monitor reports only
		{3, "/etc/shadow", false, false, false, 0},
	}
	for _, tc := range tests {
		r, m, _, d := p.CheckFile(tc.cg, 21, tc.path, tc.change)
		if m != tc.match || d != tc.deny || r.ID != tc.id {
			t.Errorf("CheckFile(%d, 21, %s, %v) = match %v deny %v rule %d, want %v %v %d", tc.cg, tc.path, tc.change, m, d, r.ID, tc.match, tc.deny, tc.id)
		}
	}
	// Group 2's rules are watched on devices 20 and 21 only: the same
	// path on another root filesystem is not its.
	for _, tc := range []struct {
		cg, dev uint64
		match   bool
	}{{2, 20, true}, {2, 22, false}, {1, 22, true}} {
		if _, m, _, _ := p.CheckFile(tc.cg, tc.dev, "/etc/shadow", false); m != tc.match {
			t.Errorf("CheckFile(%d, %d, /etc/shadow) = match %v, want %v", tc.cg, tc.dev, m, tc.match)
		}
	}
	for _, bad := range []string{"/a/*/b", "/a/../b"} {
		if err := (FileRule{Path: bad}).Validate(); err == nil {
			t.Errorf("file rule %q accepted", bad)
		}
	}
	apps := FileRule{Path: "/etc", Block: true, Apps: []string{"cat", "/usr/sbin/nginx*"}}
	for exe, want := range map[string]bool{"/usr/bin/cat": true, "/usr/sbin/nginx-debug": true, "/usr/bin/nginx": false, "/bin/sh": false} {
		if got := apps.Allows(exe); got != want {
			t.Errorf("Allows(%s) = %v, want %v", exe, got, want)
		}
	}
	if err := p.Set(Group{Name: "bad", CgroupID: 5, Files: []FileRule{{Path: "rel/path"}}}); err == nil {
		t.Errorf("relative file rule accepted")
	}
}

// FileOwner puts a change whose writer is gone on the group whose rule
// covers the path on the file's device, never on another root's group.
func TestPolicyFileOwner(t *testing.T) {
	p := NewPolicy()
	shadow := []FileRule{{Path: "/etc/shadow", Block: true}}
	for _, g := range []Group{
		{Name: "host", CgroupID: 3, Files: shadow},
		{Name: "orders", CgroupID: 5, Files: shadow},
		{Name: "payments", CgroupID: 7, Files: shadow},
		{Name: "data", CgroupID: 9, Files: []FileRule{{Path: "/srv", Recursive: true}}},
	} {
		if err := p.Set(g); err != nil {
			t.Fatalf("set %s: %v", g.Name, err)
		}
	}
	p.SetFileDevices(3, []uint64{100})
	p.SetFileDevices(5, []uint64{105})
	p.SetFileDevices(7, []uint64{107, 108})
	tests := []struct {
		dev  uint64
		path string
		want uint64
		ok   bool
	}{
		{100, "/etc/shadow", 3, true},
		{105, "/etc/shadow", 5, true},
		{108, "/etc/shadow", 7, true},
		{109, "/etc/shadow", 0, false},
		{105, "/etc/passwd", 0, false},
		{109, "/srv/a/b", 9, true}, // devices never set: any
	}
	for _, tc := range tests {
		if got, ok := p.FileOwner(tc.dev, tc.path); got != tc.want || ok != tc.ok {
			t.Errorf("FileOwner(%d, %s) = %d %v, want %d %v", tc.dev, tc.path, got, ok, tc.want, tc.ok)
		}
	}
	// A group set again keeps its devices; removed, it owns nothing.
	if err := p.Set(Group{Name: "orders", CgroupID: 5, Files: shadow}); err != nil {
		t.Fatal(err)
	}
	if got, ok := p.FileOwner(100, "/etc/shadow"); got != 3 || !ok {
		t.Errorf("FileOwner(100) after a new Set of 5 = %d %v, want 3", got, ok)
	}
	p.Remove(3)
	if got, ok := p.FileOwner(100, "/etc/shadow"); ok {
		t.Errorf("FileOwner(100) after Remove(3) = %d, want none", got)
	}
	p.SetFileDevices(5, nil)
	if got, ok := p.FileOwner(105, "/etc/shadow"); ok {
		t.Errorf("FileOwner(105) with no devices left = %d, want none", got)
	}
}

func TestPolicyRules(t *testing.T) {
	rules := []Rule{
		{Process: "sh", Path: "*", Deny: true},
		{Process: "*", Path: "/usr/bin/*"},
		{Process: "sleep", Path: "/opt/app/sleep"},
	}
	p := NewPolicy()
	for _, g := range []Group{
		{Name: "learn", CgroupID: 1, Mode: ModeDiscover, Rules: rules},
		{Name: "watch", CgroupID: 2, Mode: ModeMonitor, Rules: rules},
		{Name: "guard", CgroupID: 3, Mode: ModeProtect, Rules: rules, Allowed: []string{"/bin/true"}},
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
		{3, "/bin/sh", Violation, true},     // deny rule first
		{3, "/usr/bin/sh", Violation, true}, // deny wins over the later allow
		{3, "/usr/bin/curl", Allowed, false},
		{3, "/opt/app/sleep", Allowed, false},
		{3, "/opt/other/sleep", Violation, true},
		{3, "/bin/true", Allowed, false},
		{2, "/bin/sh", Violation, false},
		{2, "/usr/bin/curl", Allowed, false},
		{1, "/bin/sh", Violation, false}, // a deny rule is not learned over
		{1, "/usr/bin/curl", Allowed, false},
		{1, "/opt/x", Learned, false},
		{1, "/opt/x", Allowed, false},
	}
	for i, tc := range tests {
		v, _, deny := p.Check(tc.cg, tc.path)
		if v != tc.want || deny != tc.wantDeny {
			t.Errorf("%d: Check(%d, %s) = %v deny %v, want %v deny %v", i, tc.cg, tc.path, v, deny, tc.want, tc.wantDeny)
		}
	}
	for _, bad := range []Rule{{Path: "/bin/sh"}, {Process: "sh", Path: "sh"}} {
		if err := p.Set(Group{Name: "bad", CgroupID: 9, Rules: []Rule{bad}}); err == nil {
			t.Errorf("rule %+v accepted", bad)
		}
	}
}

func TestPolicyDecideDoesNotLearn(t *testing.T) {
	p := NewPolicy()
	if err := p.Set(Group{Name: "learn", CgroupID: 1, Mode: ModeDiscover}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if v, _, deny := p.Decide(1, "/bin/ls"); v != Learned || deny {
			t.Fatalf("Decide = %v deny %v, want Learned", v, deny)
		}
	}
	if v, _, _ := p.Check(1, "/bin/ls"); v != Learned {
		t.Errorf("Check after Decide = %v, want Learned (Decide must not learn)", v)
	}
	if v, _, _ := p.Decide(1, "/bin/ls"); v != Allowed {
		t.Errorf("Decide after Check = %v, want Allowed", v)
	}
}

// TestPolicyResolvedFiles checks that a group's rules on the paths its
// links lead to are matched besides its own, by CheckFile and FileOwner,
// only for that group, and go with the group.
func TestPolicyResolvedFiles(t *testing.T) {
	p := NewPolicy()
	token := FileRule{Path: "/var/run/secrets/sa/token", Block: true, ID: 11}
	for _, g := range []Group{
		{Name: "orders", CgroupID: 5, Mode: ModeProtect, Files: []FileRule{token}},
		{Name: "payments", CgroupID: 7, Mode: ModeProtect, Files: []FileRule{token}},
	} {
		if err := p.Set(g); err != nil {
			t.Fatal(err)
		}
	}
	real := "/run/secrets/sa/..2026_11_23/token"
	if _, matched, _, _ := p.CheckFile(5, 1, real, false); matched {
		t.Fatalf("%s matched before it was resolved", real)
	}
	resolved := token
	resolved.Path = real
	p.SetResolvedFiles(5, []FileRule{resolved, {Path: "relative", Block: true}})
	p.SetResolvedFiles(99, []FileRule{resolved}) // no such group: nothing
	if r, matched, _, deny := p.CheckFile(5, 1, real, false); !matched || !deny || r.ID != 11 {
		t.Errorf("orders' open of %s: rule %+v matched %v deny %v; want rule 11 denying", real, r, matched, deny)
	}
	if _, matched, _, _ := p.CheckFile(7, 1, real, false); matched {
		t.Errorf("payments matched orders' resolved rule")
	}
	if r, matched, _, deny := p.CheckFile(5, 1, token.Path, false); !matched || !deny || r.ID != 11 {
		t.Errorf("orders' own rule no longer matches: %+v %v %v", r, matched, deny)
	}
	if id, ok := p.FileOwner(1, real); !ok || id != 5 {
		t.Errorf("owner of %s: %d %v, want orders (5)", real, id, ok)
	}
	p.Remove(5)
	if err := p.Set(Group{Name: "orders", CgroupID: 5, Mode: ModeProtect, Files: []FileRule{token}}); err != nil {
		t.Fatal(err)
	}
	if _, matched, _, _ := p.CheckFile(5, 1, real, false); matched {
		t.Errorf("resolved rule outlived the group's removal")
	}
}
