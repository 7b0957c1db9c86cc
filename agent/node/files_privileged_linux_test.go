//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// The file rules of a workload's profile reach a real guard: in Protect
// the workload's processes cannot open the blocked file while others can,
// a change to the watched file is reported, and the marks go with the
// rules. The guard marks only a directory of a private tmpfs, and the
// test runs what it needs through /bin/sh, outside the mark.
func TestPrivilegedFileRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events and cgroups")
	}
	root := DefaultProcessConfig().CgroupRoot
	if err := checkCgroupRoot(root); err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	rel := fmt.Sprintf("/palisade-node-test-%d", os.Getpid())
	if err := os.Mkdir(filepath.Join(root, rel), 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	cgfd, err := unix.Open(filepath.Join(root, rel), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup: %v", err)
	}
	t.Cleanup(func() {
		unix.Close(cgfd)
		for i := 0; i < 50; i++ {
			if err := os.Remove(filepath.Join(root, rel)); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", rel)
	})
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	dir := filepath.Join(mnt, "orders")
	secret, watched := filepath.Join(dir, "secret.conf"), filepath.Join(dir, "watched.conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{secret, watched} {
		if err := os.WriteFile(f, []byte("data\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	a := testAgent()
	a.endpoints = map[string]workload.Endpoint{"shop/orders": {Workload: workload.Workload{Name: "orders", Namespace: "shop", Cgroup: rel}}}
	a.table = &compile.Table{
		Profiles: []compile.Profile{{ID: 256, ProcessMode: policy.ModeProtect, Processes: []compile.ProcessEntry{
			{Process: "*", Path: "*", Action: policy.ActionAllow}}, Files: []compile.FileEntry{
			{Filter: secret, Behavior: policy.FileBlockAccess, RuleID: 5},
			{Filter: watched, Behavior: policy.FileMonitorChange, RuleID: 6},
		}}},
		Workloads: []compile.WorkloadIdentity{{Workload: "shop/orders", ID: 256}},
	}
	guard, err := procguard.NewGuard(procguard.GuardConfig{CgroupRoot: root}, a.procs.policy, a.log)
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}
	defer guard.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- guard.Run(ctx, a.onDecision) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("guard run: %v", err)
		}
	}()
	a.syncProcesses()
	placed := map[procguard.Mark]bool{}
	a.syncFileMarks(guard, placed)
	mark := procguard.Mark{Path: dir, Scope: procguard.ScopeDirectory, Files: true}
	if len(placed) != 1 || !placed[mark] {
		t.Fatalf("marks %v, want %+v", placed, mark)
	}

	shell := func(inGroup bool, script string) error {
		cmd := exec.Command("/bin/sh", "-c", script)
		if inGroup {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	if err := shell(true, "cat "+secret); err == nil || !strings.Contains(err.Error(), "Operation not permitted") {
		t.Errorf("cat of the blocked file in the workload: got %v, want EPERM", err)
	}
	if err := shell(false, "cat "+secret+" >/dev/null"); err != nil {
		t.Errorf("cat of the blocked file outside the workload: %v", err)
	}
	if err := shell(true, "echo more >> "+watched); err != nil {
		t.Errorf("write of the watched file in the workload: %v", err)
	}
	want := map[string]bool{
		agentproto.EventFileDenied + " deny shop/orders " + secret + " 5":   false,
		agentproto.EventFileChange + " alert shop/orders " + watched + " 6": false,
	}
	var seen []string
	deadline := time.Now().Add(5 * time.Second)
	for missing := len(want); missing > 0; {
		a.mu.Lock()
		_, evs := a.agg.drain(time.Now(), time.Hour)
		a.mu.Unlock()
		for _, e := range evs {
			k := fmt.Sprintf("%s %s %s %s %d", e.Kind, e.Action, e.Workload, e.Path, e.Rule)
			seen = append(seen, k)
			if got, ok := want[k]; ok && !got {
				want[k] = true
				missing--
			}
		}
		if missing > 0 && time.Now().After(deadline) {
			t.Fatalf("events %q: want %v", seen, want)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The rules go: the mark goes, and the file opens again.
	a.mu.Lock()
	a.table = &compile.Table{Profiles: []compile.Profile{{ID: 256, ProcessMode: policy.ModeProtect, Processes: []compile.ProcessEntry{
		{Process: "*", Path: "*", Action: policy.ActionAllow}}}}, Workloads: a.table.Workloads}
	a.mu.Unlock()
	a.syncProcesses()
	a.syncFileMarks(guard, placed)
	if len(placed) != 0 {
		t.Errorf("marks %v after the rules went, want none", placed)
	}
	if err := guard.RemoveMark(mark); err == nil {
		t.Errorf("second removal of the file mark succeeded; the first left it in place")
	}
	if err := shell(true, "cat "+secret+" >/dev/null"); err != nil {
		t.Errorf("cat in the workload once the rule went: %v", err)
	}
}
