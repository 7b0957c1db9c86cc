//go:build linux

package procguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testCgroup creates a cgroup v2 directory and returns its path, an open
// directory fd for CLONE_INTO_CGROUP, and its id.
func testCgroup(t *testing.T) (string, int, uint64) {
	t.Helper()
	root := DefaultGuardConfig().CgroupRoot
	path := filepath.Join(root, fmt.Sprintf("palisade-test-%d-%s", os.Getpid(), filepath.Base(t.TempDir())))
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	fd, err := unix.Open(path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatalf("stat cgroup: %v", err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		// The cgroup empties once its processes are reaped.
		for i := 0; i < 50; i++ {
			if err := os.Remove(path); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", path)
	})
	return path, fd, st.Ino
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read %s: %v", src, err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatalf("write %s: %v", dst, err)
	}
}

// runIn runs path inside the cgroup (or outside when cgfd < 0).
func runIn(cgfd int, path string, args ...string) error {
	cmd := exec.Command(path, args...)
	if cgfd >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	}
	return cmd.Run()
}

func TestPrivilegedGuardDeniesExecBeforeItRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events and cgroups")
	}
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	_, cgfd, cgid := testCgroup(t)
	dir := t.TempDir()
	allowed := filepath.Join(dir, "allowed")
	forbidden := filepath.Join(dir, "forbidden")
	script := filepath.Join(dir, "forbidden.sh")
	marker := filepath.Join(dir, "marker")
	copyFile(t, "/bin/true", allowed, 0o755)
	copyFile(t, "/bin/true", forbidden, 0o755)
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran > "+marker+"\n"), 0o755); err != nil {
		t.Fatalf("write script: %v", err)
	}

	policy := NewPolicy()
	if err := policy.Set(Group{Name: "web", CgroupID: cgid, Mode: ModeProtect, Allowed: []string{allowed}}); err != nil {
		t.Fatalf("set policy: %v", err)
	}
	cfg := DefaultGuardConfig()
	cfg.Marks = []Mark{{Path: dir, Scope: ScopeDirectory}}
	g, err := NewGuard(cfg, policy, quiet())
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var denied []Decision
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, func(d Decision) {
			mu.Lock()
			denied = append(denied, d)
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("guard run: %v", err)
		}
	}()

	tests := []struct {
		name    string
		cgfd    int
		path    string
		wantErr error
	}{
		{"profiled binary runs in the group", cgfd, allowed, nil},
		{"other binary denied in the group", cgfd, forbidden, unix.EPERM},
		{"script denied in the group", cgfd, script, unix.EPERM},
		{"other binary runs outside the group", -1, forbidden, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := runIn(tc.cgfd, tc.path)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("run %s: %v", tc.path, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("run %s: got %v, want %v", tc.path, err, tc.wantErr)
			}
		})
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("denied script ran: marker stat %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(denied) != 2 {
		t.Fatalf("reported %d denials, want 2: %+v", len(denied), denied)
	}
	for _, d := range denied {
		if d.CgroupID != cgid || d.Verdict != Violation || d.Mode != ModeProtect {
			t.Errorf("denial %+v: want cgroup %d, violation, protect", d, cgid)
		}
	}
}

func TestPrivilegedObserverReportsExecs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs")
	}
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	_, cgfd, cgid := testCgroup(t)
	bin := filepath.Join(t.TempDir(), "probe-binary")
	copyFile(t, "/bin/sleep", bin, 0o755)

	o, err := NewObserver(quiet())
	if err != nil {
		t.Fatalf("new observer: %+v", err)
	}
	defer o.Close()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan ExecEvent, 1024)
	done := make(chan error, 1)
	go func() {
		done <- o.Run(ctx, func(e ExecEvent) {
			if e.CgroupID == cgid {
				events <- e
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("observer run: %v", err)
		}
	}()

	// sleep keeps the process alive long enough for /proc/PID/exe.
	if err := runIn(cgfd, bin, "0.2"); err != nil {
		t.Fatalf("run: %v", err)
	}
	select {
	case e := <-events:
		if e.Filename != bin || e.Comm != "probe-binary" {
			t.Errorf("event %+v: want filename %s comm probe-binary", e, bin)
		}
		if e.Path != bin {
			t.Errorf("event path %q, want %q", e.Path, bin)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no exec event for the test cgroup")
	}
}

func TestPrivilegedWatchLearnsAndReports(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs")
	}
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	_, cgfd, cgid := testCgroup(t)
	bin := filepath.Join(t.TempDir(), "tool")
	copyFile(t, "/bin/sleep", bin, 0o755)
	o, err := NewObserver(quiet())
	if err != nil {
		t.Fatalf("new observer: %+v", err)
	}
	defer o.Close()
	policy := NewPolicy()
	if err := policy.Set(Group{Name: "app", CgroupID: cgid, Mode: ModeDiscover}); err != nil {
		t.Fatalf("set: %v", err)
	}
	type report struct {
		v    Verdict
		mode Mode
		path string
	}
	reports := make(chan report, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- o.Watch(ctx, policy, func(e ExecEvent, v Verdict, m Mode) {
			if e.CgroupID == cgid {
				reports <- report{v, m, e.Path}
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("watch: %v", err)
		}
	}()
	next := func() report {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(5 * time.Second):
			t.Fatalf("no report")
		}
		return report{}
	}
	if err := runIn(cgfd, bin, "0.2"); err != nil {
		t.Fatalf("run: %v", err)
	}
	if r := next(); r.v != Learned || r.path != bin {
		t.Errorf("discover: %+v, want learned %s", r, bin)
	}
	g, _ := policy.Group(cgid)
	if len(g.Allowed) != 1 || g.Allowed[0] != bin {
		t.Errorf("profile %v, want [%s]", g.Allowed, bin)
	}
	// Monitor: the learned binary is fine, another one is a violation.
	g.Mode = ModeMonitor
	if err := policy.Set(g); err != nil {
		t.Fatalf("set: %v", err)
	}
	if err := runIn(cgfd, bin, "0.2"); err != nil {
		t.Fatalf("run: %v", err)
	}
	other := filepath.Join(filepath.Dir(bin), "other")
	copyFile(t, "/bin/sleep", other, 0o755)
	if err := runIn(cgfd, other, "0.2"); err != nil {
		t.Fatalf("run: %v", err)
	}
	if r := next(); r.v != Violation || r.mode != ModeMonitor || r.path != other {
		t.Errorf("monitor: %+v, want violation of %s", r, other)
	}
}

func TestPrivilegedGuardFileRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events and cgroups")
	}
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	_, cgfd, cgid := testCgroup(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	watched := filepath.Join(dir, "watched")
	key := filepath.Join(dir, "tls.key")
	for _, f := range []string{secret, watched, key} {
		if err := os.WriteFile(f, []byte("data\n"), 0o644); err != nil {
			t.Fatalf("write %s: %v", f, err)
		}
	}
	policy := NewPolicy()
	err := policy.Set(Group{Name: "web", CgroupID: cgid, Mode: ModeProtect, Files: []FileRule{
		{Path: secret, Block: true},
		{Path: watched},
		{Path: filepath.Join(dir, "*.key"), Block: true, Apps: []string{"head"}},
	}})
	if err != nil {
		t.Fatalf("set policy: %v", err)
	}
	cfg := DefaultGuardConfig()
	cfg.Marks = []Mark{{Path: dir, Scope: ScopeDirectory, Files: true}}
	g, err := NewGuard(cfg, policy, quiet())
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var reports []Decision
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, func(d Decision) {
			mu.Lock()
			reports = append(reports, d)
			mu.Unlock()
		})
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("guard run: %v", err)
		}
	}()

	tests := []struct {
		name    string
		cgfd    int
		script  string
		wantErr bool
	}{
		{"blocked file unreadable in the group", cgfd, "cat " + secret, true},
		{"blocked file readable outside the group", -1, "cat " + secret, false},
		{"watched file writable in the group", cgfd, "echo more >> " + watched, false},
		{"wildcard rule blocks in the group", cgfd, "cat " + key, true},
		{"the rule's application may read", cgfd, "head " + key, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", tc.script)
			if tc.cgfd >= 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: tc.cgfd}
			}
			out, err := cmd.CombinedOutput()
			if (err != nil) != tc.wantErr {
				t.Fatalf("%s: err %v (output %q), want error %v", tc.script, err, out, tc.wantErr)
			}
		})
	}
	// The change report follows the close of the written file.
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		var denied, changed int
		for _, d := range reports {
			switch {
			case d.Kind == EventFileOpen && d.Denied && d.Path == secret && d.CgroupID == cgid:
				denied++
			case d.Kind == EventFileChange && d.Path == watched && d.CgroupID == cgid:
				changed++
			}
		}
		got := fmt.Sprintf("%+v", reports)
		mu.Unlock()
		if denied >= 1 && changed >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports %s: want a denied open of %s and a change of %s", got, secret, watched)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// privateTmpfs mounts a small tmpfs on a temporary directory, so that a
// filesystem mark covers only what the test puts there. A process must
// never itself exec a file its own guard answers for: the exec holds the
// calling thread (vfork), and a garbage collection waiting for that thread
// would stop the goroutine that answers. Tests exec marked files through
// /bin/sh, which lives outside the mark.
func privateTmpfs(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "procguard-fs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=16m,mode=0755"); err != nil {
		os.Remove(dir)
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	return dir
}

// shellRun runs path through /bin/sh, in the cgroup (or outside when
// cgfd < 0), and returns the shell's exit code.
func shellRun(t testing.TB, cgfd int, path string, args ...string) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `exec "$0" "$@" 2>/dev/null`, path}, args...)...)
	if cgfd >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run %s: %v", path, err)
	return -1
}

// With a filesystem marked, what the group's profile allows runs and the
// rest fails to exec (the shell's 126) in the group only.
func TestPrivilegedGuardFilesystemMark(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events, cgroups and mounts")
	}
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	_, cgfd, cgid := testCgroup(t)
	dir := privateTmpfs(t)
	allowed := filepath.Join(dir, "allowed")
	forbidden := filepath.Join(dir, "forbidden")
	copyFile(t, "/bin/true", allowed, 0o755)
	copyFile(t, "/bin/true", forbidden, 0o755)
	policy := NewPolicy()
	if err := policy.Set(Group{Name: "web", CgroupID: cgid, Mode: ModeProtect, Allowed: []string{allowed}}); err != nil {
		t.Fatalf("set policy: %v", err)
	}
	cfg := DefaultGuardConfig()
	cfg.Marks = []Mark{{Path: dir, Scope: ScopeFilesystem}}
	g, err := NewGuard(cfg, policy, quiet())
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, nil) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("guard run: %v", err)
		}
	}()
	tests := []struct {
		name string
		cgfd int
		path string
		want int
	}{
		{"allowed in the group", cgfd, allowed, 0},
		{"forbidden in the group", cgfd, forbidden, 126},
		{"forbidden outside the group", -1, forbidden, 0},
	}
	for _, tc := range tests {
		if got := shellRun(t, tc.cgfd, tc.path); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// The interpreter an allowed exec names (an ELF loader, a script's
// interpreter and its loader) is allowed when the same process opens it
// next, once; any other executable, or the interpreter on its own, is
// decided by the profile.
func TestPrivilegedGuardInterpreterFollowsAllowedExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: cgroups")
	}
	realLoader, err := filepath.EvalSymlinks("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Skip("no x86-64 dynamic loader here")
	}
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if Interpreter(fileReader(t, shell)) != realLoader {
		t.Skipf("%s is not dynamically linked against %s", shell, realLoader)
	}
	_, cgfd, cgid := testCgroup(t)
	dir := t.TempDir()
	allowed := filepath.Join(dir, "allowed")
	copyFile(t, "/bin/sleep", allowed, 0o755)
	fakeLoader := filepath.Join(dir, "ld-linux-x86-64.so.2")
	copyFile(t, "/bin/true", fakeLoader, 0o755)
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh -e\ntrue\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Two processes of the group to decide for.
	var pids []int
	for range 2 {
		cmd := exec.Command(allowed, "5")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	policy := NewPolicy()
	if err := policy.Set(Group{Name: "web", CgroupID: cgid, Mode: ModeProtect, Allowed: []string{allowed, script}}); err != nil {
		t.Fatalf("set policy: %v", err)
	}
	g, err := NewGuard(DefaultGuardConfig(), policy, quiet())
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}
	defer g.Close()
	fds := map[string]int{}
	for _, p := range []string{allowed, fakeLoader, realLoader, script, shell} {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		fds[p] = fd
	}
	steps := []struct {
		name string
		path string
		pid  int
		deny bool
	}{
		{"loader on its own", realLoader, pids[0], true},
		{"allowed exec", allowed, pids[0], false},
		{"its loader", realLoader, pids[0], false},
		{"the loader again", realLoader, pids[0], true},
		{"allowed exec again", allowed, pids[0], false},
		{"a look-alike loader instead", fakeLoader, pids[0], true},
		{"the real loader after the look-alike", realLoader, pids[0], true},
		{"allowed exec in one process", allowed, pids[0], false},
		{"its loader in another", realLoader, pids[1], true},
		{"allowed script", script, pids[1], false},
		{"its interpreter", shell, pids[1], false},
		{"the interpreter's loader", realLoader, pids[1], false},
		{"the interpreter on its own", shell, pids[1], true},
	}
	for _, st := range steps {
		if d := g.decide(fds[st.path], st.pid); d.Denied != st.deny || d.CgroupID != cgid {
			t.Errorf("%s: %+v, want denied %v in cgroup %d", st.name, d, st.deny, cgid)
		}
	}
}

// fileReader opens path for the length of the test.
func fileReader(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestInterpreter(t *testing.T) {
	dir := t.TempDir()
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, content, want string
	}{
		{"script", "#!/bin/sh -e\necho\n", shell},
		{"script with a space", "#! /bin/sh\n", shell},
		{"relative interpreter", "#!sh\n", ""},
		{"empty shebang", "#!\n", ""},
		{"text", "hello\n", ""},
		{"broken ELF", "\x7fELF\x02\x01\x01garbage", ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(p, []byte(tc.content), 0o755); err != nil {
			t.Fatal(err)
		}
		if got := Interpreter(fileReader(t, p)); got != tc.want {
			t.Errorf("%s: Interpreter = %q, want %q", tc.name, got, tc.want)
		}
	}
	if loader, err := filepath.EvalSymlinks("/lib64/ld-linux-x86-64.so.2"); err == nil {
		if got := Interpreter(fileReader(t, shell)); got != loader {
			t.Errorf("Interpreter(%s) = %q, want %q", shell, got, loader)
		}
	}
}

func TestDecisionPath(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		e    ExecEvent
		want string
	}{
		{"binary", ExecEvent{Filename: "/usr/bin/env", Path: "/usr/bin/env"}, "/usr/bin/env"},
		{"binary through a link", ExecEvent{Filename: "/bin/sh", Path: shell}, shell},
		{"script", ExecEvent{Filename: script, Path: shell}, script},
		{"relative name", ExecEvent{Filename: "run.sh", Path: shell}, shell},
		{"gone process", ExecEvent{Filename: "/usr/bin/env"}, "/usr/bin/env"},
	}
	for _, tc := range tests {
		if got := DecisionPath(tc.e); got != tc.want {
			t.Errorf("%s: DecisionPath = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// BenchmarkGuardExec measures the cost of one exec (of a copy of
// /bin/true, through /bin/sh as the tests do) with no guard, and with the
// guard answering for the filesystem holding it: for a process in no group
// and for one whose group allows the executable.
func BenchmarkGuardExec(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: fanotify permission events, cgroups and mounts")
	}
	dir := privateTmpfs(b)
	bin := filepath.Join(dir, "true")
	copyFile(b, "/bin/true", bin, 0o755)
	cgPath := filepath.Join(DefaultGuardConfig().CgroupRoot, fmt.Sprintf("palisade-bench-%d", os.Getpid()))
	if err := os.Mkdir(cgPath, 0o755); err != nil {
		b.Fatal(err)
	}
	defer func() {
		for i := 0; i < 50 && os.Remove(cgPath) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}()
	cgfd, err := unix.Open(cgPath, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(cgfd)
	var st unix.Stat_t
	if err := unix.Fstat(cgfd, &st); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, cgfd int) {
		for b.Loop() {
			if code := shellRun(b, cgfd, bin); code != 0 {
				b.Fatalf("exit %d", code)
			}
		}
	}
	b.Run("no-guard", func(b *testing.B) { run(b, -1) })
	policy := NewPolicy()
	if err := policy.Set(Group{Name: "bench", CgroupID: st.Ino, Mode: ModeProtect, Allowed: []string{bin}}); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultGuardConfig()
	cfg.Marks = []Mark{{Path: dir, Scope: ScopeFilesystem}}
	g, err := NewGuard(cfg, policy, quiet())
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	b.Run("guarded-no-group", func(b *testing.B) { run(b, -1) })
	b.Run("guarded-allowed", func(b *testing.B) { run(b, cgfd) })
}
