//go:build linux

package procguard

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testFallback opens a fallback pinned under a fresh bpffs directory that
// the test removes (detaching the program) when it ends.
func testFallback(t *testing.T) FallbackConfig {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Skip("needs bpffs on /sys/fs/bpf")
	}
	cfg := DefaultFallbackConfig()
	cfg.PinDir = fmt.Sprintf("/sys/fs/bpf/palisade-test-fallback-%d-%s", os.Getpid(), filepath.Base(t.TempDir()))
	t.Cleanup(func() {
		if err := os.RemoveAll(cfg.PinDir); err != nil {
			t.Errorf("remove %s: %v", cfg.PinDir, err)
		}
	})
	return cfg
}

// outcome runs path in the cgroup and tells whether it was killed by
// SIGKILL and whether it left its marker file.
func outcome(t *testing.T, cgfd int, marker, path string, args ...string) (killed, ran bool) {
	t.Helper()
	os.Remove(marker)
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		killed = ws.Signaled() && ws.Signal() == syscall.SIGKILL
	} else if err != nil {
		t.Fatalf("run %s: %v", path, err)
	}
	_, serr := os.Stat(marker)
	return killed, serr == nil
}

func TestPrivilegedFallbackKillsForbiddenExecs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF, bpffs and cgroups")
	}
	cfg := testFallback(t)
	_, cgfd, cgid := testCgroup(t)
	dir := t.TempDir()
	forbidden := filepath.Join(dir, "forbidden-sh")
	copyFile(t, "/bin/sh", forbidden, 0o755)
	touchBin, err := exec.LookPath("touch")
	if err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(dir, "allowed-touch")
	copyFile(t, touchBin, allowed, 0o755)
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "allowed-script")
	if err := os.WriteFile(script, []byte("#!"+shell+"\nexec "+allowed+" \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	named := filepath.Join(dir, "touch-by-name")
	copyFile(t, touchBin, named, 0o755)
	marker := filepath.Join(dir, "marker")

	fb, err := OpenFallback(cfg, quiet())
	if err != nil {
		t.Fatalf("open fallback: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			fb.Close()
		}
	}()
	g := Group{Name: "shop/orders", CgroupID: cgid, Mode: ModeProtect,
		Rules: []Rule{{Process: "*", Path: script}, {Process: "*", Path: allowed}, {Process: "touch-by-name", Path: "*"}, {Process: "sh", Path: "*", Deny: true}}}
	fa := FallbackExecutables(g, "/")
	if len(fa.Missing) != 0 || fa.Any || !slices.Equal(fa.Names, []string{"touch-by-name"}) {
		t.Fatalf("FallbackExecutables = %+v, want no missing, names [touch-by-name]", fa)
	}
	ids := fa.Exes
	var shellSt unix.Stat_t
	if err := unix.Stat(shell, &shellSt); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids, FileID{Dev: shellSt.Dev, Ino: shellSt.Ino}) {
		t.Fatalf("FallbackExecutables = %v: lacks the interpreter %s of the allowed script", ids, shell)
	}
	if err := fb.Set(FallbackGroup{CgroupID: cgid, Mode: ModeProtect, Exes: ids, Names: fa.Names}); err != nil {
		t.Fatalf("set group: %v", err)
	}
	if err := fb.ClearBeat(); err != nil {
		t.Fatal(err)
	}

	type run struct {
		name         string
		path         string
		args         []string
		killed, runs bool
	}
	forbiddenRun := run{"forbidden", forbidden, []string{"-c", "echo > " + marker}, true, false}
	allowedRuns := []run{
		{"allowed binary", allowed, []string{marker}, false, true},
		{"allowed script", script, []string{marker}, false, true},
		{"allowed by name", named, []string{marker}, false, true},
	}
	check := func(stage string, runs ...run) {
		t.Helper()
		for _, r := range runs {
			killed, ran := outcome(t, cgfd, marker, r.path, r.args...)
			if killed != r.killed || ran != r.runs {
				t.Errorf("%s: %s: killed %v, ran %v; want killed %v, ran %v", stage, r.name, killed, ran, r.killed, r.runs)
			}
		}
	}
	records := func() []FallbackRecord {
		t.Helper()
		var out []FallbackRecord
		if err := fb.Drain(func(r FallbackRecord) { out = append(out, r) }); err != nil {
			t.Fatalf("drain: %v", err)
		}
		return out
	}

	check("no heartbeat", append([]run{forbiddenRun}, allowedRuns...)...)
	recs := records()
	if len(recs) != 1 {
		t.Fatalf("no heartbeat: %d records, want 1: %+v", len(recs), recs)
	}
	r := recs[0]
	var fst unix.Stat_t
	if err := unix.Stat(forbidden, &fst); err != nil {
		t.Fatal(err)
	}
	if r.CgroupID != cgid || !r.Killed || r.Mode != ModeProtect || r.Filename != forbidden ||
		r.Exe != (FileID{Dev: fst.Dev, Ino: fst.Ino}) || r.Pid == 0 || r.Time.IsZero() || r.Time.After(time.Now()) {
		t.Errorf("record %+v: want cgroup %d, killed, protect, %s (%d:%d)", r, cgid, forbidden, fst.Dev, fst.Ino)
	}

	// A fresh heartbeat: the agent's guard decides, the fallback is idle.
	if err := fb.Beat(); err != nil {
		t.Fatal(err)
	}
	check("fresh heartbeat", run{"forbidden", forbidden, forbiddenRun.args, false, true})
	if recs := records(); len(recs) != 0 {
		t.Errorf("fresh heartbeat: records %+v, want none", recs)
	}
	if err := fb.ClearBeat(); err != nil {
		t.Fatal(err)
	}

	// The agent is gone (its handles closed): the pinned program keeps
	// killing; a new agent finds the group and the record in the pins.
	if err := fb.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true
	check("no agent", forbiddenRun, allowedRuns[0])
	fb, err = OpenFallback(cfg, quiet())
	if err != nil {
		t.Fatalf("reopen fallback: %v", err)
	}
	closed = false
	if got := fb.Groups(); got[cgid] != ModeProtect || len(got) != 1 {
		t.Errorf("reopened: groups %v, want %d in protect", got, cgid)
	}
	check("reopened", forbiddenRun, allowedRuns[1])
	if recs := records(); len(recs) != 2 || !recs[0].Killed || !recs[1].Killed || recs[0].KernelTimeNs > recs[1].KernelTimeNs {
		t.Errorf("reopened: records %+v, want the two kills, oldest first", recs)
	}

	// Monitor: recorded, not killed.
	if err := fb.Set(FallbackGroup{CgroupID: cgid, Mode: ModeMonitor, Exes: ids}); err != nil {
		t.Fatal(err)
	}
	check("monitor", run{"forbidden", forbidden, forbiddenRun.args, false, true})
	if recs := records(); len(recs) != 1 || recs[0].Killed || recs[0].Mode != ModeMonitor {
		t.Errorf("monitor: records %+v, want one, not killed", recs)
	}

	// The group leaves: nothing is guarded.
	if err := fb.Remove(cgid); err != nil {
		t.Fatal(err)
	}
	check("removed", run{"forbidden", forbidden, forbiddenRun.args, false, true})
	if recs := records(); len(recs) != 0 {
		t.Errorf("removed: records %+v, want none", recs)
	}
	if n, err := fb.Lost(); err != nil || n != 0 {
		t.Errorf("Lost() = %d, %v; want 0", n, err)
	}
}

func TestPrivilegedFallbackSetKeepsInStep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF and bpffs")
	}
	cfg := testFallback(t)
	fb, err := OpenFallback(cfg, quiet())
	if err != nil {
		t.Fatalf("open fallback: %v", err)
	}
	defer fb.Close()
	a, b, c := FileID{Dev: unix.Mkdev(8, 1), Ino: 10}, FileID{Dev: unix.Mkdev(259, 1<<19), Ino: 11}, FileID{Dev: 42, Ino: 12}
	steps := []struct {
		set    []FallbackGroup
		remove []uint64
		want   map[uint64][]FileID
		names  map[uint64][]string
	}{
		{set: []FallbackGroup{{CgroupID: 7, Mode: ModeProtect, Exes: []FileID{a, b}, Names: []string{"nginx", "a-name-longer-than-fifteen"}}, {CgroupID: 8, Mode: ModeMonitor, Exes: []FileID{c}}},
			want: map[uint64][]FileID{7: {a, b}, 8: {c}}, names: map[uint64][]string{7: {"a-name-longer-t", "nginx"}}},
		{set: []FallbackGroup{{CgroupID: 7, Mode: ModeProtect, Exes: []FileID{b, c}, Names: []string{"redis"}}},
			want: map[uint64][]FileID{7: {b, c}, 8: {c}}, names: map[uint64][]string{7: {"redis"}}},
		{remove: []uint64{8, 9}, want: map[uint64][]FileID{7: {b, c}}, names: map[uint64][]string{7: {"redis"}}},
		{remove: []uint64{7}, want: map[uint64][]FileID{}, names: map[uint64][]string{}},
	}
	for i, st := range steps {
		for _, g := range st.set {
			if err := fb.Set(g); err != nil {
				t.Fatalf("step %d: set %d: %v", i, g.CgroupID, err)
			}
		}
		for _, id := range st.remove {
			if err := fb.Remove(id); err != nil {
				t.Fatalf("step %d: remove %d: %v", i, id, err)
			}
		}
		// What the kernel maps hold, read back as a new agent would.
		fb2, err := OpenFallback(cfg, quiet())
		if err != nil {
			t.Fatalf("step %d: reopen: %v", i, err)
		}
		got := map[uint64][]FileID{}
		for id, m := range fb2.exes {
			for f := range m {
				got[id] = append(got[id], f)
			}
			slices.SortFunc(got[id], func(x, y FileID) int { return int(x.Ino) - int(y.Ino) })
		}
		gotNames := map[uint64][]string{}
		for id, m := range fb2.names {
			for n := range m {
				gotNames[id] = append(gotNames[id], n)
			}
			slices.Sort(gotNames[id])
		}
		modes := fb2.Groups()
		fb2.Close()
		if fmt.Sprint(gotNames) != fmt.Sprint(st.names) {
			t.Errorf("step %d: pinned names %v, want %v", i, gotNames, st.names)
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Errorf("step %d: pinned executables %v, want %v", i, got, st.want)
		}
		if len(modes) != len(st.want) {
			t.Errorf("step %d: pinned groups %v, want %d", i, modes, len(st.want))
		}
	}
	for _, g := range []FallbackGroup{{CgroupID: 7, Mode: ModeDiscover}, {CgroupID: 0, Mode: ModeProtect}} {
		if err := fb.Set(g); err == nil {
			t.Errorf("Set(%+v) = nil, want an error", g)
		}
	}
}

func TestFallbackConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*FallbackConfig)
		ok   bool
	}{
		{"default", func(*FallbackConfig) {}, true},
		{"relative pin dir", func(c *FallbackConfig) { c.PinDir = "sys/fs/bpf/x" }, false},
		{"stale too short", func(c *FallbackConfig) { c.Stale = time.Millisecond }, false},
	}
	for _, tc := range tests {
		c := DefaultFallbackConfig()
		tc.edit(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestFileIDKernelDev(t *testing.T) {
	tests := []struct {
		major, minor uint32
		want         uint32
	}{
		{8, 1, 8<<20 | 1},
		{0, 27, 27},
		{259, 1 << 19, 259<<20 | 1<<19},
	}
	for _, tc := range tests {
		id := FileID{Dev: unix.Mkdev(tc.major, tc.minor), Ino: 42}
		if got := id.kernelDev(); got != tc.want {
			t.Errorf("kernelDev(%d:%d) = %#x, want %#x", tc.major, tc.minor, got, tc.want)
		}
		if got := kernelFileID(tc.want, 42); got != id {
			t.Errorf("kernelFileID(%#x, 42) = %+v, want %+v", tc.want, got, id)
		}
	}
}

func FuzzDecodeFallbackRecord(f *testing.F) {
	f.Add(make([]byte, 320))
	f.Add([]byte{1, 2, 3})
	f.Add(append(make([]byte, 56), []byte("sh\x00")...))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := DecodeFallbackRecord(raw)
		if err != nil {
			return
		}
		if len(r.Comm) > 16 || len(r.Filename) > 256 {
			t.Errorf("decoded %+v: strings longer than their fields", r)
		}
	})
}

func TestFallbackExecutables(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	copyFile(t, "/bin/true", bin, 0o755)
	other := filepath.Join(dir, "other")
	copyFile(t, "/bin/true", other, 0o755)
	interp := filepath.Join(dir, "interp")
	copyFile(t, "/bin/true", interp, 0o755)
	script := filepath.Join(dir, "job")
	if err := os.WriteFile(script, []byte("#!"+interp+" -e\nrun\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "app-link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	id := func(path string) FileID {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return FileID{Dev: st.Dev, Ino: st.Ino}
	}
	missing := filepath.Join(dir, "gone")
	tests := []struct {
		name string
		g    Group
		want FallbackAllowed
	}{
		{"profile and exact rules", Group{Allowed: []string{bin}, Rules: []Rule{{Process: "other", Path: other}}},
			FallbackAllowed{Exes: []FileID{id(bin), id(other)}}},
		{"a symbolic link is its target", Group{Allowed: []string{link, bin}}, FallbackAllowed{Exes: []FileID{id(bin)}}},
		{"a script brings its interpreter", Group{Allowed: []string{script}}, FallbackAllowed{Exes: []FileID{id(script), id(interp)}}},
		{"a denying rule wins", Group{Allowed: []string{bin, other}, Rules: []Rule{{Process: "app", Path: "*", Deny: true}}},
			FallbackAllowed{Exes: []FileID{id(other)}}},
		{"a rule of another name allows nothing", Group{Rules: []Rule{{Process: "nginx", Path: bin}}}, FallbackAllowed{}},
		{"names anywhere", Group{Rules: []Rule{{Process: "nginx", Path: "*"}, {Process: "ngin?", Path: "*"}, {Process: "nginx", Path: "*"}}},
			FallbackAllowed{Names: []string{"nginx"}}},
		{"no name after a denying rule", Group{Rules: []Rule{{Process: "*", Path: "/tmp/*", Deny: true}, {Process: "nginx", Path: "*"}}},
			FallbackAllowed{}},
		{"anything", Group{Allowed: []string{bin}, Rules: []Rule{{Process: "*", Path: "*"}}}, FallbackAllowed{Any: true}},
		{"anything but", Group{Rules: []Rule{{Process: "sh", Path: "*", Deny: true}, {Process: "*", Path: "*"}}}, FallbackAllowed{}},
		{"missing", Group{Allowed: []string{missing, bin}}, FallbackAllowed{Exes: []FileID{id(bin)}, Missing: []string{missing}}},
		{"not a regular file", Group{Allowed: []string{dir}}, FallbackAllowed{Missing: []string{dir}}},
	}
	for _, tc := range tests {
		got := FallbackExecutables(tc.g, "/")
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: FallbackExecutables = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestFallbackExecutablesInRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	real := filepath.Join(root, "bin", "app")
	copyFile(t, "/bin/true", real, 0o755)
	// An absolute link, as a container image holds: it points inside root.
	if err := os.Symlink("/bin/app", filepath.Join(root, "usr/bin/app")); err != nil {
		t.Fatal(err)
	}
	var st, hostSh unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/bin/sh", &hostSh); err != nil {
		t.Fatal(err)
	}
	got := FallbackExecutables(Group{Allowed: []string{"/usr/bin/app", "/bin/sh"}}, root)
	want := []FileID{{Dev: st.Dev, Ino: st.Ino}, {Dev: hostSh.Dev, Ino: hostSh.Ino}}
	if !slices.Equal(got.Exes, want) || len(got.Missing) != 0 {
		t.Errorf("FallbackExecutables in %s = %+v, want %v (the link resolved in the root, /bin/sh found on the host)", root, got, want)
	}
}

// TestPrivilegedFallbackStaleBeat stands for an agent that died without
// clearing its heartbeat: once the beat is older than Stale the fallback
// kills again.
func TestPrivilegedFallbackStaleBeat(t *testing.T) {
	fb, cfg, forbidden := guardedShell(t, 100*time.Millisecond)
	if err := fb.Beat(); err != nil {
		t.Fatal(err)
	}
	// Past the bound by any measure of the monotonic clock.
	time.Sleep(3 * cfg.Stale)
	if killed, ran := forbidden(); !killed || ran {
		t.Errorf("stale heartbeat: killed %v, ran %v; want killed before it ran", killed, ran)
	}
}

// guardedShell opens a fallback whose heartbeat goes stale after stale,
// guarding a cgroup in Protect that may run nothing, and returns it with
// a run in that cgroup of a shell that would leave a file: whether it was
// killed and whether it ran.
func guardedShell(t *testing.T, stale time.Duration) (*Fallback, FallbackConfig, func() (killed, ran bool)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF, bpffs and cgroups")
	}
	cfg := testFallback(t)
	cfg.Stale = stale
	_, cgfd, cgid := testCgroup(t)
	dir := t.TempDir()
	forbidden := filepath.Join(dir, "forbidden-sh")
	copyFile(t, "/bin/sh", forbidden, 0o755)
	marker := filepath.Join(dir, "marker")
	fb, err := OpenFallback(cfg, quiet())
	if err != nil {
		t.Fatalf("open fallback: %v", err)
	}
	t.Cleanup(func() { fb.Close() })
	if err := fb.Set(FallbackGroup{CgroupID: cgid, Mode: ModeProtect}); err != nil {
		t.Fatal(err)
	}
	return fb, cfg, func() (bool, bool) {
		t.Helper()
		return outcome(t, cgfd, marker, forbidden, "-c", "echo > "+marker)
	}
}

// TestPrivilegedFallbackAgentExit checks that the end of the process that
// beats, SIGKILL included, hands execs to the fallback at once, long before
// the heartbeat would go stale; the exit of any other process does not.
func TestPrivilegedFallbackAgentExit(t *testing.T) {
	fb, _, forbidden := guardedShell(t, time.Hour)
	// A stand-in for the agent: the process whose exit ends the beat.
	agent := exec.Command("sleep", "600")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer agent.Process.Kill()
	fb.tgid = uint32(agent.Process.Pid)
	if err := fb.Beat(); err != nil {
		t.Fatal(err)
	}
	if killed, ran := forbidden(); killed || !ran {
		t.Fatalf("agent beating: killed %v, ran %v; want it left to the agent's guard", killed, ran)
	}
	// Other processes come and go (the forbidden one above among them).
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	if killed, ran := forbidden(); killed || !ran {
		t.Errorf("another process exited: killed %v, ran %v; want it left to the agent's guard", killed, ran)
	}
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	agent.Wait()
	if killed, ran := forbidden(); !killed || ran {
		t.Errorf("agent killed: killed %v, ran %v; want killed before it ran", killed, ran)
	}
}

// TestPrivilegedFallbackOverlay checks the fallback on an overlay
// filesystem, as container root filesystems are: what stat reports of a
// file in the overlay is what the kernel reads of the running executable.
func TestPrivilegedFallbackOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF, bpffs, cgroups and mounts")
	}
	cfg := testFallback(t)
	_, cgfd, cgid := testCgroup(t)
	base := privateTmpfs(t)
	for _, d := range []string{"lower/bin", "upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, "/bin/sh", filepath.Join(base, "lower/bin/app"), 0o755)
	copyFile(t, "/bin/sh", filepath.Join(base, "lower/bin/tool"), 0o755)
	root := filepath.Join(base, "root")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"))
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		t.Skipf("mount overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	// A file copied up to the upper layer is decided as what it is now.
	if err := os.Chmod(filepath.Join(root, "bin/tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	fb, err := OpenFallback(cfg, quiet())
	if err != nil {
		t.Fatalf("open fallback: %v", err)
	}
	defer fb.Close()
	fa := FallbackExecutables(Group{CgroupID: cgid, Allowed: []string{"/bin/app"}}, root)
	if len(fa.Exes) != 1 {
		t.Fatalf("FallbackExecutables in the overlay = %+v, want /bin/app", fa)
	}
	if err := fb.Set(FallbackGroup{CgroupID: cgid, Mode: ModeProtect, Exes: fa.Exes}); err != nil {
		t.Fatal(err)
	}
	if err := fb.ClearBeat(); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "marker")
	for _, tc := range []struct {
		exe    string
		killed bool
	}{{"bin/app", false}, {"bin/tool", true}} {
		killed, ran := outcome(t, cgfd, marker, filepath.Join(root, tc.exe), "-c", "echo > "+marker)
		if killed != tc.killed || ran == tc.killed {
			t.Errorf("%s in the overlay: killed %v, ran %v; want killed %v", tc.exe, killed, ran, tc.killed)
		}
	}

	// Scoped to the workload's root filesystem: the node's own shell (a
	// runtime helper joining the cgroup, say) is not the workload's and
	// runs; what is on the root is decided as before. Unscoped, the node's
	// shell is killed like any executable outside the profile.
	var rootSt, shSt unix.Stat_t
	if err := unix.Stat(root, &rootSt); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/bin/sh", &shSt); err != nil {
		t.Fatal(err)
	}
	if shSt.Dev == rootSt.Dev {
		t.Fatalf("the overlay shares device %d with /bin/sh", rootSt.Dev)
	}
	for _, tc := range []struct {
		name   string
		roots  []uint64
		exe    string
		killed bool
	}{
		{"scoped: node shell", []uint64{rootSt.Dev}, "/bin/sh", false},
		{"scoped: forbidden in root", []uint64{rootSt.Dev}, filepath.Join(root, "bin/tool"), true},
		{"scoped: allowed in root", []uint64{rootSt.Dev}, filepath.Join(root, "bin/app"), false},
		{"unscoped: node shell", nil, "/bin/sh", true},
	} {
		if err := fb.Set(FallbackGroup{CgroupID: cgid, Mode: ModeProtect, Exes: fa.Exes, Roots: tc.roots}); err != nil {
			t.Fatalf("%s: set: %v", tc.name, err)
		}
		killed, ran := outcome(t, cgfd, marker, tc.exe, "-c", "echo > "+marker)
		if killed != tc.killed || ran == tc.killed {
			t.Errorf("%s: killed %v, ran %v; want killed %v", tc.name, killed, ran, tc.killed)
		}
	}
}

// BenchmarkFallbackExec measures an exec of an allowed program in a cgroup
// the fallback guards, with the fallback acting (no heartbeat) and idle
// (fresh heartbeat), and in a cgroup it does not guard.
func BenchmarkFallbackExec(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: eBPF, bpffs and cgroups")
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &sfs); err != nil || sfs.Type != unix.BPF_FS_MAGIC {
		b.Skip("needs bpffs on /sys/fs/bpf")
	}
	cfg := DefaultFallbackConfig()
	cfg.PinDir = fmt.Sprintf("/sys/fs/bpf/palisade-bench-fallback-%d", os.Getpid())
	cfg.Stale = time.Hour // one beat keeps it idle through the run
	b.Cleanup(func() { os.RemoveAll(cfg.PinDir) })
	cg := filepath.Join(DefaultGuardConfig().CgroupRoot, fmt.Sprintf("palisade-bench-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		b.Fatal(err)
	}
	cgfd, err := unix.Open(cg, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		unix.Close(cgfd)
		for i := 0; i < 50 && os.Remove(cg) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	var st unix.Stat_t
	if err := unix.Fstat(cgfd, &st); err != nil {
		b.Fatal(err)
	}
	trueBin, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		b.Fatal(err)
	}
	fb, err := OpenFallback(cfg, quiet())
	if err != nil {
		b.Fatal(err)
	}
	defer fb.Close()
	fa := FallbackExecutables(Group{CgroupID: st.Ino, Allowed: []string{trueBin}}, "/")
	if err := fb.Set(FallbackGroup{CgroupID: st.Ino, Mode: ModeProtect, Exes: fa.Exes}); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, cgfd int) {
		for b.Loop() {
			cmd := exec.Command(trueBin)
			if cgfd >= 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
			}
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("guarded/acting", func(b *testing.B) {
		if err := fb.ClearBeat(); err != nil {
			b.Fatal(err)
		}
		run(b, cgfd)
	})
	b.Run("guarded/idle", func(b *testing.B) {
		if err := fb.Beat(); err != nil {
			b.Fatal(err)
		}
		run(b, cgfd)
	})
	b.Run("unguarded", func(b *testing.B) { run(b, -1) })
}
