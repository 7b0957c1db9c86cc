//go:build linux

package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/procguard"
	"github.com/palisade-sec/palisade/agent/workload"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

func TestFileMarks(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc/app", "srv/data", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/app/secret.conf"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An absolute link resolves inside the root, as for the workload.
	if err := os.Symlink("/etc/app", filepath.Join(root, "conf")); err != nil {
		t.Fatal(err)
	}
	rf := openRoot(t, root)
	dirMark := func(p string) fileMark { return fileMark{Path: p, Scope: procguard.ScopeDirectory} }
	mountMark := func(p string) fileMark { return fileMark{Path: p, Scope: procguard.ScopeMount} }
	tests := []struct {
		name  string
		rules []procguard.FileRule
		want  []fileMark
	}{
		{"file: its directory", []procguard.FileRule{{Path: "/etc/app/secret.conf"}}, []fileMark{dirMark("/etc/app")}},
		{"file yet to be created: its directory", []procguard.FileRule{{Path: "/etc/app/new.conf"}}, []fileMark{dirMark("/etc/app")}},
		{"directory: itself", []procguard.FileRule{{Path: "/etc/app"}}, []fileMark{dirMark("/etc/app")}},
		{"wildcard: its directory", []procguard.FileRule{{Path: "/etc/app/*.conf"}}, []fileMark{dirMark("/etc/app")}},
		{"missing directory: no mark", []procguard.FileRule{{Path: "/opt/x/y.conf"}}, nil},
		{"directory missing in the root: no mark", []procguard.FileRule{{Path: filepath.Join(root, "etc/app/secret.conf")}}, nil},
		{"linked directory inside the root", []procguard.FileRule{{Path: "/conf/secret.conf"}}, []fileMark{dirMark("/conf")}},
		{"recursive: a mount mark", []procguard.FileRule{{Path: "/srv/data", Recursive: true}}, []fileMark{mountMark("/srv/data")}},
		{"recursive below a missing directory: closest above", []procguard.FileRule{{Path: "/srv/data/a/b", Recursive: true}}, []fileMark{mountMark("/srv/data")}},
		{"recursive under nothing: the root", []procguard.FileRule{{Path: "/opt/a", Recursive: true}}, []fileMark{mountMark("/")}},
		{"one mark per place", []procguard.FileRule{{Path: "/etc/app/a"}, {Path: "/etc/app/b", Block: true}, {Path: "/etc/app"}}, []fileMark{dirMark("/etc/app")}},
	}
	for _, tc := range tests {
		if got := fileMarks(rf, tc.rules); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: fileMarks = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// openIn resolves a workload's paths in its root, never in the node's: a
// link to /tmp leads to the root's tmp.
func TestOpenInStaysInRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": "/tmp", "up": "../../../../../../tmp"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	rf := openRoot(t, root)
	want, err := os.Stat(filepath.Join(root, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/abs", "/up", "/../tmp", "/tmp"} {
		f, err := openIn(rf, p)
		if err != nil {
			t.Errorf("openIn(%s): %v", p, err)
			continue
		}
		got, err := f.Stat()
		f.Close()
		if err != nil || !os.SameFile(got, want) {
			t.Errorf("openIn(%s) opened another place than the root's /tmp (err %v)", p, err)
		}
	}
	if _, err := openIn(rf, "/missing"); err == nil {
		t.Errorf("openIn(/missing) succeeded")
	}
}

func openRoot(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fakeMarker records marks by the place they name (a guard mark names it
// by an open descriptor); places in fail are refused once.
type fakeMarker struct {
	marks map[fileMark]bool
	fail  map[string]bool
}

func (f *fakeMarker) place(m procguard.Mark) (fileMark, error) {
	p, err := os.Readlink(m.Path)
	if err != nil {
		return fileMark{}, err
	}
	if !m.Files {
		return fileMark{}, fmt.Errorf("mark of %s does not watch files", p)
	}
	return fileMark{Path: p, Scope: m.Scope}, nil
}

func (f *fakeMarker) AddMark(m procguard.Mark) error {
	fm, err := f.place(m)
	if err != nil {
		return err
	}
	if f.fail[fm.Path] {
		delete(f.fail, fm.Path)
		return errors.New("refused")
	}
	f.marks[fm] = true
	return nil
}

func (f *fakeMarker) RemoveMark(m procguard.Mark) error {
	fm, err := f.place(m)
	if err != nil {
		return err
	}
	if !f.marks[fm] {
		return fmt.Errorf("%s not marked", fm.Path)
	}
	delete(f.marks, fm)
	return nil
}

func testAgent() *Agent {
	return &Agent{log: slog.New(slog.DiscardHandler), agg: newAggregator(100, 100, 100), procs: newProcControl(), cfg: Config{Processes: DefaultProcessConfig()},
		endpoints: map[string]workload.Endpoint{}}
}

// fakeCgroup makes a cgroup directory under a fake cgroup root holding
// pids, and returns its cgroup id.
func fakeCgroup(t *testing.T, root, rel string, pids ...int) uint64 {
	t.Helper()
	dir := filepath.Join(root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var procs []byte
	for _, p := range pids {
		procs = fmt.Appendf(procs, "%d\n", p)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), procs, 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := cgroupID(root, rel)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Marks follow the rules and the workloads: a refused mark is tried
// again, marks of a workload sharing the node's root sit in the node's
// root, a container without a process has none, and the rules are held
// to the devices of their marks.
func TestSyncFileMarks(t *testing.T) {
	dir := t.TempDir()
	a := testAgent()
	a.cfg.Processes.CgroupRoot = t.TempDir()
	orders := fakeCgroup(t, a.cfg.Processes.CgroupRoot, "/shop/orders", os.Getpid())
	idle := fakeCgroup(t, a.cfg.Processes.CgroupRoot, "/shop/idle")
	ctr := fakeCgroup(t, a.cfg.Processes.CgroupRoot, "/k8s.io/ctr")
	a.endpoints["shop/orders"] = workload.Endpoint{Workload: workload.Workload{Name: "orders", Namespace: "shop", Cgroup: "/shop/orders"}}
	a.endpoints["shop/idle"] = workload.Endpoint{Workload: workload.Workload{Name: "idle", Namespace: "shop", Cgroup: "/shop/idle"}}
	a.endpoints["shop/ctr"] = workload.Endpoint{Workload: workload.Workload{Name: "ctr", Namespace: "shop", Cgroup: "/k8s.io/ctr"},
		Images: []workload.Image{{Container: "ctr", Name: "shop/ctr:1"}}}
	g := &fakeMarker{marks: map[fileMark]bool{}, fail: map[string]bool{dir: true}}
	placed := map[procguard.Mark]bool{}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	mark := fileMark{Path: dir, Scope: procguard.ScopeDirectory}
	set := func(id uint64, files []procguard.FileRule) {
		name := map[uint64]string{orders: "shop/orders", idle: "shop/idle", ctr: "shop/ctr"}[id]
		g := procguard.Group{Name: name, CgroupID: id, Mode: procguard.ModeProtect, Files: files}
		if err := a.procs.policy.Set(g); err != nil {
			t.Fatal(err)
		}
		a.procs.mu.Lock()
		a.procs.groups[id] = g
		a.procs.mu.Unlock()
	}
	secret := []procguard.FileRule{{Path: filepath.Join(dir, "secret.conf"), Block: true}}
	steps := []struct {
		name        string
		id          uint64
		files       []procguard.FileRule
		want        []fileMark
		ordersMatch bool // orders' rule covers the secret on dir's device
	}{
		{"refused mark is not placed", orders, secret, nil, true},
		{"tried again", orders, secret, []fileMark{mark}, true},
		{"a container without a process: no mark", ctr, secret, []fileMark{mark}, true},
		{"rule gone, mark gone", orders, nil, nil, false},
		{"a netns workload without a process: the node's root", idle, secret, []fileMark{mark}, false},
	}
	for _, s := range steps {
		set(s.id, s.files)
		a.syncFileMarks(g, placed)
		var got []fileMark
		for m := range g.marks {
			got = append(got, m)
		}
		if !reflect.DeepEqual(got, s.want) || len(placed) != len(s.want) {
			t.Errorf("%s: marks %+v (placed %v), want %+v", s.name, got, placed, s.want)
		}
		_, m, _, _ := a.procs.policy.CheckFile(orders, uint64(st.Dev), filepath.Join(dir, "secret.conf"), false)
		if m != s.ordersMatch {
			t.Errorf("%s: orders' rule covers the secret: %v, want %v", s.name, m, s.ordersMatch)
		}
		if _, m, _, _ := a.procs.policy.CheckFile(ctr, uint64(st.Dev), filepath.Join(dir, "secret.conf"), false); m {
			t.Errorf("%s: the container's rule covers the node's file", s.name)
		}
	}
}

func TestFileDecisionEvents(t *testing.T) {
	a := testAgent()
	rule := procguard.FileRule{Path: "/etc/app", Block: true, ID: 12}
	a.procs.groups[7] = procguard.Group{Name: "shop/orders", CgroupID: 7, Files: []procguard.FileRule{rule}}
	ds := []procguard.Decision{
		{Kind: procguard.EventFileOpen, Pid: 10, CgroupID: 7, Path: "/etc/app/secret.conf", Mode: procguard.ModeProtect, Denied: true, Rule: rule},
		{Kind: procguard.EventFileOpen, Pid: 11, CgroupID: 7, Path: "/etc/app/secret.conf", Mode: procguard.ModeMonitor, Rule: rule},
		{Kind: procguard.EventFileChange, Pid: 12, CgroupID: 7, Path: "/etc/app/a.conf", Mode: procguard.ModeMonitor, Rule: rule},
		{Kind: procguard.EventFileOpen, Pid: 13, CgroupID: 8, Path: "/etc/app/secret.conf", Mode: procguard.ModeProtect, Denied: true, Rule: rule}, // no workload
		{Kind: procguard.EventExec, Pid: 14, CgroupID: 7, Path: "/bin/sh", Mode: procguard.ModeProtect, Denied: true},
	}
	for _, d := range ds {
		a.onDecision(d)
	}
	_, evs := a.agg.drain(time.Now(), time.Hour)
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s %s %s %s %s %d", e.Kind, e.Action, e.Mode, e.Workload, e.Path, e.Rule))
		if e.Message == "" {
			t.Errorf("event %+v has no message", e)
		}
	}
	want := []string{
		agentproto.EventFileDenied + " deny protect shop/orders /etc/app/secret.conf 12",
		agentproto.EventFileViolation + " alert monitor shop/orders /etc/app/secret.conf 12",
		agentproto.EventFileChange + " alert monitor shop/orders /etc/app/a.conf 12",
		agentproto.EventExecDenied + " deny protect shop/orders /bin/sh 0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

func TestPlacedPath(t *testing.T) {
	tests := []struct{ root, path, name string }{
		{"/", "/etc/app", "/etc/app"},
		{"/proc/42/root", "/etc", "/proc/42/root/etc"},
		{"/proc/42/root", "/", "/proc/42/root/"},
		{"/", "/proc/self/root/x", "/proc/self/root/x"}, // not a pid: the node's root
		{"/", "/srv", "/srv"},
	}
	for _, tc := range tests {
		name := rootPath(tc.root, tc.path)
		if name != tc.name {
			t.Errorf("rootPath(%s, %s) = %s, want %s", tc.root, tc.path, name, tc.name)
		}
		if root, path := placedPath(name); root != tc.root || path != tc.path {
			t.Errorf("placedPath(%s) = %s %s, want %s %s", name, root, path, tc.root, tc.path)
		}
	}
}

func TestWorkloadRoots(t *testing.T) {
	root := t.TempDir()
	self := os.Getpid()
	fakeCgroup(t, root, "/netns/orders", 999999999, self)
	fakeCgroup(t, root, "/k8s.io/ctr", self)
	fakeCgroup(t, root, "/empty")
	fakeCgroup(t, root, "/pod")
	fakeCgroup(t, root, "/pod/a", self)
	fakeCgroup(t, root, "/pod/b", self)
	tests := []struct {
		cgroup   string
		hostRoot bool
		want     []string
	}{
		{"/netns/orders", true, []string{"/"}}, // a pid gone is passed over
		{"/k8s.io/ctr", false, nil},            // a container on the node's root: none
		{"/empty", true, []string{"/"}},
		{"/empty", false, nil},
		{"/pod", true, []string{"/"}}, // child cgroups, one root once
		{"/missing", false, nil},
	}
	for _, tc := range tests {
		if got := workloadRoots(filepath.Join(root, tc.cgroup), tc.hostRoot); !slices.Equal(got, tc.want) {
			t.Errorf("workloadRoots(%s, %v) = %q, want %q", tc.cgroup, tc.hostRoot, got, tc.want)
		}
	}
}

// BenchmarkSyncFileMarks measures one sync of the file marks of 16
// workloads with 4 rules each, all marks in place.
func BenchmarkSyncFileMarks(b *testing.B) {
	dir := b.TempDir()
	a := testAgent()
	a.cfg.Processes.CgroupRoot = b.TempDir()
	for i := range 16 {
		name := fmt.Sprintf("w%d", i)
		var files []procguard.FileRule
		for j := range 4 {
			d := filepath.Join(dir, name, fmt.Sprintf("d%d", j))
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.Fatal(err)
			}
			files = append(files, procguard.FileRule{Path: filepath.Join(d, "secret.conf"), Block: true})
		}
		rel := "/shop/" + name
		dirPath := filepath.Join(a.cfg.Processes.CgroupRoot, rel)
		if err := os.MkdirAll(dirPath, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirPath, "cgroup.procs"), fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
			b.Fatal(err)
		}
		id, err := cgroupID(a.cfg.Processes.CgroupRoot, rel)
		if err != nil {
			b.Fatal(err)
		}
		a.endpoints["shop/"+name] = workload.Endpoint{Workload: workload.Workload{Name: name, Namespace: "shop", Cgroup: rel}}
		g := procguard.Group{Name: "shop/" + name, CgroupID: id, Files: files}
		if err := a.procs.policy.Set(g); err != nil {
			b.Fatal(err)
		}
		a.procs.groups[id] = g
	}
	m := &fakeMarker{marks: map[fileMark]bool{}, fail: map[string]bool{}}
	placed := map[procguard.Mark]bool{}
	a.syncFileMarks(m, placed)
	if len(placed) != 64 {
		b.Fatalf("%d marks, want 64", len(placed))
	}
	for b.Loop() {
		a.syncFileMarks(m, placed)
	}
}

// TestResolvedRules checks the rules added on the paths symbolic links
// lead to inside a workload's root: a service account token behind
// /var/run -> /run and the ..data links, a wildcard's directory, a path
// that does not exist yet below a link, and no rule for a path with no
// link on its way.
func TestResolvedRules(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"run/secrets/sa/..2026_11_23", "var", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"run/secrets/sa/..2026_11_23/token", "etc/real.conf"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"var/run":               "/run",
		"run/secrets/sa/..data": "..2026_11_23",
		"run/secrets/sa/token":  "..data/token",
		"etc/ssl":               "/usr/lib/ssl", // leads nowhere in this root
		"etc/escape":            "../../../../etc",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	rule := func(path string, recursive bool) procguard.FileRule {
		return procguard.FileRule{Path: path, Recursive: recursive, Block: true, ID: 9}
	}
	rules := []procguard.FileRule{
		rule("/var/run/secrets/sa/token", false),
		rule("/var/run/secrets/sa/*.key", false),
		rule("/var/run/app/new.conf", false),
		rule("/var/run", true),
		rule("/etc/real.conf", false),
		rule("/etc/ssl/private/x.pem", false),
		rule("/etc/escape/passwd", false),
	}
	var got []string
	for _, r := range resolvedRules(root, rules) {
		if r.ID != 9 || !r.Block {
			t.Errorf("resolved rule %+v lost its id or action", r)
		}
		got = append(got, fmt.Sprintf("%s recursive=%v", r.Path, r.Recursive))
	}
	want := []string{
		"/run/secrets/sa/..2026_11_23/token recursive=false",
		"/run/secrets/sa/*.key recursive=false",
		"/run/app/new.conf recursive=false",
		"/run recursive=true",
		"/etc/passwd recursive=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("resolved rules\n got %q\nwant %q", got, want)
	}
}
