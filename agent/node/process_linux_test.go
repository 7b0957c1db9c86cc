//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/procguard"
	"github.com/palisade-sec/palisade/agent/workload"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

func TestProcessGroup(t *testing.T) {
	tb := &compile.Table{
		Profiles: []compile.Profile{
			{ID: 256, ProcessMode: policy.ModeProtect, Processes: []compile.ProcessEntry{
				{Process: "sh", Path: "*", Action: policy.ActionDeny},
				{Process: "sleep", Path: "/usr/bin/sleep", Action: policy.ActionAllow},
				{Process: "bad", Path: "relative", Action: policy.ActionAllow},
			}, Files: []compile.FileEntry{
				{Filter: "/etc/secret", Behavior: policy.FileBlockAccess, Applications: []string{"api"}, RuleID: 9},
				{Filter: "/srv/data", Recursive: true, Behavior: policy.FileMonitorChange, RuleID: 10},
				{Filter: "relative", Behavior: policy.FileBlockAccess, RuleID: 11},
			}},
			{ID: 257, ProcessMode: policy.ModeMonitor},
			{ID: 258},
		},
		Workloads: []compile.WorkloadIdentity{{Workload: "shop/a", ID: 256}, {Workload: "shop/b", ID: 257}, {Workload: "shop/c", ID: 258}, {Workload: "shop/d", ID: 300}},
	}
	tests := []struct {
		workload string
		want     procguard.Group
		ok       bool
	}{
		{"shop/a", procguard.Group{Name: "shop/a", Mode: procguard.ModeProtect, Rules: []procguard.Rule{
			{Process: "sh", Path: "*", Deny: true}, {Process: "sleep", Path: "/usr/bin/sleep"}}, Files: []procguard.FileRule{
			{Path: "/etc/secret", Block: true, Apps: []string{"api"}, ID: 9}, {Path: "/srv/data", Recursive: true, ID: 10}}}, true},
		{"shop/b", procguard.Group{Name: "shop/b", Mode: procguard.ModeMonitor}, true},
		{"shop/c", procguard.Group{Name: "shop/c", Mode: procguard.ModeDiscover}, true},
		{"shop/d", procguard.Group{}, false}, // no profile
		{"shop/e", procguard.Group{}, false}, // no identity
	}
	for _, tc := range tests {
		got, ok := processGroup(tb, tc.workload)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("processGroup(%s) = %+v, %v; want %+v, %v", tc.workload, got, ok, tc.want, tc.ok)
		}
	}
}

func TestProcessConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*ProcessConfig)
		ok   bool
	}{
		{"default", func(*ProcessConfig) {}, true},
		{"disabled ignores the rest", func(c *ProcessConfig) { c.Disabled, c.CgroupRoot = true, "" }, true},
		{"relative cgroup root", func(c *ProcessConfig) { c.CgroupRoot = "sys/fs/cgroup" }, false},
		{"relative mark", func(c *ProcessConfig) { c.Marks = []procguard.Mark{{Path: "tmp"}} }, false},
		{"no resync", func(c *ProcessConfig) { c.Resync = 0 }, false},
		{"no pending", func(c *ProcessConfig) { c.MaxPending = 0 }, false},
		{"fallback stale too short", func(c *ProcessConfig) { c.FallbackStale = time.Millisecond }, false},
		{"relative fallback pin dir", func(c *ProcessConfig) { c.FallbackPinDir = "sys/fs/bpf/x" }, false},
		{"no fallback ignores its settings", func(c *ProcessConfig) { c.NoFallback, c.FallbackStale = true, 0 }, true},
	}
	for _, tc := range tests {
		c := DefaultProcessConfig()
		tc.edit(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestPrivilegedFallbackFollowsPolicy runs the agent's side of the exec
// fallback on a real cgroup: the workload in Protect gets its profile's
// executables, a forbidden exec is killed while no guard beats and comes
// back as a process-denied event of the workload, the workload in
// Discover is let go, and a cgroup no workload has is let go after the
// grace.
func TestPrivilegedFallbackFollowsPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF, bpffs and cgroups")
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &sfs); err != nil || sfs.Type != unix.BPF_FS_MAGIC {
		t.Skip("needs bpffs on /sys/fs/bpf")
	}
	cfg := DefaultConfig()
	cfg.Controllers, cfg.Node, cfg.DataDir = []string{"127.0.0.1:1"}, "node1", t.TempDir()
	if err := checkCgroupRoot(cfg.Processes.CgroupRoot); err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	cfg.Processes.FallbackPinDir = fmt.Sprintf("/sys/fs/bpf/palisade-node-test-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(cfg.Processes.FallbackPinDir) })
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rel := fmt.Sprintf("/palisade-node-test-%d", os.Getpid())
	cgPath := filepath.Join(cfg.Processes.CgroupRoot, rel)
	if err := os.Mkdir(cgPath, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	cgfd, err := unix.Open(cgPath, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(cgfd)
		for i := 0; i < 50 && os.Remove(cgPath) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	dir := t.TempDir()
	allowed := filepath.Join(dir, "worker")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(allowed, b, 0o755); err != nil {
		t.Fatal(err)
	}
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	table := func(mode policy.Mode) *compile.Table {
		return &compile.Table{
			Profiles: []compile.Profile{{ID: 256, ProcessMode: mode, Processes: []compile.ProcessEntry{
				{Process: "worker", Path: allowed, Action: policy.ActionAllow}}}},
			Workloads: []compile.WorkloadIdentity{{Workload: "shop/orders", ID: 256}},
		}
	}
	a.mu.Lock()
	a.table = table(policy.ModeProtect)
	a.endpoints["shop/orders"] = workload.Endpoint{Workload: workload.Workload{Name: "orders", Namespace: "shop", Cgroup: rel}}
	a.mu.Unlock()

	fb := a.openFallback()
	if fb == nil {
		t.Fatal("exec fallback did not open")
	}
	defer fb.Close()
	st := fallbackState{grace: fallbackGrace, absent: map[uint64]time.Time{}}
	if got := a.syncProcesses(); !reflect.DeepEqual(got, []string{rel}) {
		t.Fatalf("protected cgroups %v, want [%s]", got, rel)
	}
	a.syncFallback(fb, &st, func(uint64) bool { return true })
	if err := fb.ClearBeat(); err != nil {
		t.Fatal(err)
	}
	run := func(path string, args ...string) (killed bool) {
		t.Helper()
		cmd := exec.Command(path, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		err := cmd.Run()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
		if err != nil {
			t.Fatalf("run %s: %v", path, err)
		}
		return false
	}
	if !run("/bin/sh", "-c", "true") {
		t.Errorf("Protect: /bin/sh not killed")
	}
	if run(allowed) {
		t.Errorf("Protect: the profile's %s killed", allowed)
	}
	a.drainFallback(fb, &st)
	a.mu.Lock()
	_, evs := a.agg.drain(time.Now(), time.Minute)
	a.mu.Unlock()
	if len(evs) != 1 || evs[0].Kind != agentproto.EventExecDenied || evs[0].Action != "deny" || evs[0].Workload != "shop/orders" ||
		evs[0].Path != shell || evs[0].Mode != "protect" {
		t.Errorf("events %+v, want one process-denied of %s in shop/orders", evs, shell)
	}

	// The agent runs (it beats) but its guard could not mark the
	// workload's root: the fallback acts anyway, and says why.
	if err := fb.Beat(); err != nil {
		t.Fatal(err)
	}
	if run("/bin/sh", "-c", "true") {
		t.Errorf("agent beating, workload covered: /bin/sh killed")
	}
	a.syncFallback(fb, &st, func(uint64) bool { return false })
	if !run("/bin/sh", "-c", "true") {
		t.Errorf("agent beating, workload not covered by its guard: /bin/sh not killed")
	}
	a.drainFallback(fb, &st)
	a.mu.Lock()
	_, evs = a.agg.drain(time.Now(), time.Minute)
	a.mu.Unlock()
	if len(evs) != 1 || evs[0].Kind != agentproto.EventExecDenied || !strings.Contains(evs[0].Message, "does not cover") {
		t.Errorf("events %+v, want one process-denied saying the guard does not cover the workload", evs)
	}
	a.syncFallback(fb, &st, func(uint64) bool { return true })
	if run("/bin/sh", "-c", "true") {
		t.Errorf("agent beating, workload covered again: /bin/sh killed")
	}
	if err := fb.ClearBeat(); err != nil {
		t.Fatal(err)
	}

	// Discover: the fallback lets the workload go.
	a.mu.Lock()
	a.table = table(policy.ModeDiscover)
	a.mu.Unlock()
	a.syncProcesses()
	a.syncFallback(fb, &st, func(uint64) bool { return true })
	if got := fb.Groups(); len(got) != 0 {
		t.Errorf("Discover: fallback groups %v, want none", got)
	}
	if run("/bin/sh", "-c", "true") {
		t.Errorf("Discover: /bin/sh killed")
	}

	// Back to Protect, then the workload leaves: its cgroup stays guarded
	// for the grace, then is let go.
	a.mu.Lock()
	a.table = table(policy.ModeProtect)
	a.mu.Unlock()
	a.syncProcesses()
	a.syncFallback(fb, &st, func(uint64) bool { return true })
	a.mu.Lock()
	delete(a.endpoints, "shop/orders")
	a.mu.Unlock()
	a.syncProcesses()
	a.syncFallback(fb, &st, func(uint64) bool { return true })
	if got := fb.Groups(); len(got) != 1 {
		t.Errorf("workload gone, within the grace: fallback groups %v, want its cgroup", got)
	}
	st.grace = 0
	a.syncFallback(fb, &st, func(uint64) bool { return true })
	if got := fb.Groups(); len(got) != 0 {
		t.Errorf("workload gone, after the grace: fallback groups %v, want none", got)
	}

	// An agent configured without the fallback detaches the pinned one.
	a.cfg.Processes.NoFallback = true
	if a.openFallback() != nil {
		t.Errorf("NoFallback: the fallback opened")
	}
	if _, err := os.Stat(cfg.Processes.FallbackPinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("NoFallback: pin dir %s: %v, want it removed", cfg.Processes.FallbackPinDir, err)
	}
}

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/dash"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"bin":         "usr/bin",
		"usr/bin/sh":  "dash",
		"abs":         "/usr/bin/dash",
		"escape":      "../../../../usr/bin/sh",
		"loop-a":      "loop-b",
		"loop-b":      "/loop-a",
		"usr/bin/bad": "/nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"/bin/sh", "/usr/bin/dash", true},
		{"/usr/bin/dash", "/usr/bin/dash", true},
		{"/abs", "/usr/bin/dash", true},
		{"/escape", "/usr/bin/dash", true},
		{"/usr/../bin/./sh", "/usr/bin/dash", true},
		{"/../../bin/sh", "/usr/bin/dash", true},
		{"/loop-a", "", false},
		{"/usr/bin/bad", "", false},
		{"/usr/bin/dash/x", "", false},
	}
	for _, tc := range tests {
		got, err := resolveIn(root, tc.path)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("resolveIn(%s) = %q, %v; want %q, ok %v", tc.path, got, err, tc.want, tc.ok)
		}
	}
}
