//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	rel, cgfd := testCgroup(t, root, fmt.Sprintf("/palisade-node-test-%d", os.Getpid()))
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
	guard := runGuard(t, a, root)
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

// The file rules of workloads with roots of their own (a process in its
// own mount namespace, pivoted into a root filesystem of its own, as in a
// container) are marked in their roots: the guard names the files by
// their paths inside the root, a blocking rule denies the workload's
// open of its own file, a same-named file in another root is not the
// rule's, even for the workload's processes, a file mounted on its own
// (as a container's /etc/hosts) is guarded too, and the marks go with
// the workloads.
func TestPrivilegedFileRulesInRoots(t *testing.T) {
	root := needContainerRoots(t)
	const secret, hosts, deep = "/etc/secret.conf", "/etc/hosts", "/srv/data/deep/x.conf"
	type box struct {
		id, cgroup string
		cgfd       int
		dir        string
		pid        int
	}
	boxes := []*box{{id: "shop/orders"}, {id: "shop/payments"}}
	a := testAgent()
	for i, b := range boxes {
		b.cgroup, b.cgfd = testCgroup(t, root, fmt.Sprintf("/palisade-node-test-%d-%d", os.Getpid(), i))
		b.dir = testRoot(t, b.id)
		ns, name, _ := strings.Cut(b.id, "/")
		a.endpoints[b.id] = workload.Endpoint{Workload: workload.Workload{Name: name, Namespace: ns, Cgroup: b.cgroup},
			Images: []workload.Image{{Container: name, Name: "palisade.test/" + name + ":1"}}}
	}
	block := func(path string, id uint32) compile.FileEntry {
		return compile.FileEntry{Filter: path, Behavior: policy.FileBlockAccess, RuleID: id}
	}
	all := []compile.ProcessEntry{{Process: "*", Path: "*", Action: policy.ActionAllow}}
	a.table = &compile.Table{
		Profiles: []compile.Profile{
			{ID: 256, ProcessMode: policy.ModeProtect, Processes: all, Files: []compile.FileEntry{block(secret, 5), block(hosts, 7),
				{Filter: "/srv/data", Recursive: true, Behavior: policy.FileBlockAccess, RuleID: 8}}},
			{ID: 257, ProcessMode: policy.ModeMonitor, Processes: all, Files: []compile.FileEntry{block(secret, 6)}},
		},
		Workloads: []compile.WorkloadIdentity{{Workload: "shop/orders", ID: 256}, {Workload: "shop/payments", ID: 257}},
	}
	guard := runGuard(t, a, root)
	a.syncProcesses()
	placed := map[procguard.Mark]bool{}
	a.syncFileMarks(guard, placed)
	if len(placed) != 0 {
		t.Fatalf("marks %v before the workloads have processes, want none", placed)
	}

	for _, b := range boxes {
		b.pid = startInRoot(t, b.dir, b.cgfd)
	}
	a.syncFileMarks(guard, placed)
	mark := func(b *box, path string) procguard.Mark {
		return procguard.Mark{Path: fmt.Sprintf("/proc/%d/root%s", b.pid, path), Scope: procguard.ScopeDirectory, Files: true}
	}
	mount := func(b *box, path string) procguard.Mark {
		m := mark(b, path)
		m.Scope = procguard.ScopeMount
		return m
	}
	orders, payments := boxes[0], boxes[1]
	checkMarks := func(when string, want ...procguard.Mark) {
		t.Helper()
		ok := len(placed) == len(want)
		for _, m := range want {
			ok = ok && placed[m]
		}
		if !ok {
			t.Fatalf("marks %v %s, want %v", placed, when, want)
		}
	}
	checkMarks("with the workloads' processes", mark(orders, "/etc"), mark(orders, hosts), mount(orders, "/srv/data"), mark(payments, "/etc"))
	a.syncFileMarks(guard, placed)
	checkMarks("after a second sync", mark(orders, "/etc"), mark(orders, hosts), mount(orders, "/srv/data"), mark(payments, "/etc"))

	// cat runs cat of file in the mount namespace and root of box in, as
	// a process of the cgroup of box as.
	cat := func(in, as *box, file string) (string, error) { return catIn(in.pid, as.cgfd, file) }
	if out, err := cat(payments, orders, secret); err != nil || out != payments.id+"\n" {
		t.Errorf("orders' cat of payments' %s: %q, %v; want payments' file (not orders' rule)", secret, out, err)
	}
	for _, f := range []string{secret, hosts, deep} {
		if out, err := cat(orders, orders, f); err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("orders' cat of its own %s: %q, %v; want EPERM", f, out, err)
		}
	}
	if out, err := cat(payments, payments, secret); err != nil || out != payments.id+"\n" {
		t.Errorf("payments' cat of its own %s in Monitor: %q, %v", secret, out, err)
	}
	if out, err := cat(payments, payments, hosts); err != nil || out != payments.id+" hosts\n" {
		t.Errorf("payments' cat of its own %s: %q, %v", hosts, out, err)
	}
	if b, err := os.ReadFile(filepath.Join(orders.dir, secret)); err != nil || string(b) != orders.id+"\n" {
		t.Errorf("the node's read of orders' %s: %q, %v", secret, b, err)
	}
	seen := waitFileEvents(t, a, []string{
		agentproto.EventFileDenied + " deny shop/orders " + secret + " 5",
		agentproto.EventFileDenied + " deny shop/orders " + hosts + " 7",
		agentproto.EventFileDenied + " deny shop/orders " + deep + " 8",
		agentproto.EventFileViolation + " alert shop/payments " + secret + " 6",
	})
	if len(seen) != 4 {
		t.Errorf("events %q, want only the denials in orders and the open in payments", seen)
	}

	// The workloads go: their marks go.
	syscall.Kill(payments.pid, syscall.SIGKILL)
	waitGone(t, payments.pid)
	a.syncFileMarks(guard, placed)
	checkMarks("once payments' process is gone", mark(orders, "/etc"), mark(orders, hosts), mount(orders, "/srv/data"))
	delete(a.endpoints, orders.id)
	a.syncProcesses()
	a.syncFileMarks(guard, placed)
	if len(placed) != 0 {
		t.Errorf("marks %v once orders is gone, want none", placed)
	}
	if out, err := cat(orders, orders, secret); err != nil || out != orders.id+"\n" {
		t.Errorf("cat of orders' %s once its rules went: %q, %v", secret, out, err)
	}
}

// testCgroup makes a cgroup under root and returns its path relative to
// root and an open descriptor of it.
func testCgroup(t *testing.T, root, rel string) (string, int) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(root, rel), 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	fd, err := unix.Open(filepath.Join(root, rel), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup: %v", err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		os.WriteFile(filepath.Join(root, rel, "cgroup.kill"), []byte("1"), 0o644)
		for range 100 {
			if err := os.Remove(filepath.Join(root, rel)); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", rel)
	})
	return rel, fd
}

// testRoot makes a root filesystem of its own, a tmpfs with the node's
// /usr bound in, /etc/secret.conf and /srv/data/deep/x.conf holding name
// and /etc/hosts a file of the node's filesystem bound in, holding name
// and "hosts".
func testRoot(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	for _, d := range []string{"etc", "usr", "old", "proc", "srv/data/deep"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := os.Symlink("usr/"+l, filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"etc/secret.conf", "srv/data/deep/x.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("/usr", filepath.Join(dir, "usr"), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatalf("bind /usr: %v", err)
	}
	src := filepath.Join(t.TempDir(), "hosts")
	for _, f := range []string{src, filepath.Join(dir, "etc/hosts")} {
		if err := os.WriteFile(f, []byte(name+" hosts\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(src, filepath.Join(dir, "etc/hosts"), "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", src, err)
	}
	return dir
}

// startInRoot starts a process in cgroup cgfd, in a mount namespace of
// its own pivoted into dir, and returns its pid once its root is dir.
func startInRoot(t *testing.T, dir string, cgfd int) int {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
		"cd \"$1\" && pivot_root . old && mount -t proc proc /proc && umount -l /old && exec sleep 300", "sh", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start in %s: %v", dir, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	var want unix.Stat_t
	if err := unix.Stat(dir, &want); err != nil {
		t.Fatal(err)
	}
	root := fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)
	for range 250 {
		var st unix.Stat_t
		if unix.Stat(root, &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			return cmd.Process.Pid
		}
		select {
		case <-exited:
			t.Fatalf("process in %s exited: %s", dir, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("process %d not in its root %s: %s", cmd.Process.Pid, dir, out.String())
	return 0
}

// waitGone waits for process pid to be reaped.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for range 250 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still there", pid)
}

// waitFileEvents waits for the events want ("kind action workload path
// rule") and returns every event seen meanwhile.
func waitFileEvents(t *testing.T, a *Agent, want []string) []string {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	var seen []string
	deadline := time.Now().Add(5 * time.Second)
	for len(missing) > 0 {
		a.mu.Lock()
		_, evs := a.agg.drain(time.Now(), time.Hour)
		a.mu.Unlock()
		for _, e := range evs {
			k := fmt.Sprintf("%s %s %s %s %d", e.Kind, e.Action, e.Workload, e.Path, e.Rule)
			seen = append(seen, k)
			delete(missing, k)
		}
		if len(missing) > 0 && time.Now().After(deadline) {
			t.Fatalf("events %q: want %q", seen, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return seen
}

// runGuard runs a process guard for a's policy, with cgroup v2 at root,
// until the test ends.
func runGuard(t *testing.T, a *Agent, root string) *procguard.Guard {
	t.Helper()
	guard, err := procguard.NewGuard(procguard.GuardConfig{CgroupRoot: root}, a.procs.policy, a.log)
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- guard.Run(ctx, a.onDecision) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("guard run: %v", err)
		}
		guard.Close()
	})
	return guard
}

// TestPrivilegedFileRuleThroughLinks checks a rule whose path leads
// through symbolic links in the workload's own root, as a Kubernetes
// service account token does (/var/run -> /run, token -> ..data/token,
// ..data -> a dated directory): the open through the rule's path is
// denied and reported under the path the kernel names, and a file beside
// it is not.
func TestPrivilegedFileRuleThroughLinks(t *testing.T) {
	root := needContainerRoots(t)
	const token, dated = "/var/run/secrets/sa/token", "/run/secrets/sa/..2026_11_23"
	a := testAgent()
	cg, cgfd := testCgroup(t, root, fmt.Sprintf("/palisade-node-links-%d", os.Getpid()))
	dir := testRoot(t, "shop/orders")
	if err := os.MkdirAll(filepath.Join(dir, dated), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"token", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, dated, f), []byte(f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"var/run": "/run", "run/secrets/sa/..data": "..2026_11_23",
		"run/secrets/sa/token": "..data/token", "run/secrets/sa/ca.crt": "..data/ca.crt"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	a.endpoints["shop/orders"] = workload.Endpoint{Workload: workload.Workload{Name: "orders", Namespace: "shop", Cgroup: cg}}
	a.table = &compile.Table{
		Profiles: []compile.Profile{{ID: 256, ProcessMode: policy.ModeProtect,
			Processes: []compile.ProcessEntry{{Process: "*", Path: "*", Action: policy.ActionAllow}},
			Files:     []compile.FileEntry{{Filter: token, Behavior: policy.FileBlockAccess, RuleID: 11}}}},
		Workloads: []compile.WorkloadIdentity{{Workload: "shop/orders", ID: 256}},
	}
	guard := runGuard(t, a, root)
	a.syncProcesses()
	pid := startInRoot(t, dir, cgfd)
	placed := map[procguard.Mark]bool{}
	a.syncFileMarks(guard, placed)
	cat := func(file string) (string, error) { return catIn(pid, cgfd, file) }
	if out, err := cat(token); err == nil || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("cat of %s: %q, %v; want EPERM", token, out, err)
	}
	if out, err := cat("/var/run/secrets/sa/ca.crt"); err != nil || out != "ca.crt\n" {
		t.Errorf("cat of the certificate beside the token: %q, %v", out, err)
	}
	seen := waitFileEvents(t, a, []string{agentproto.EventFileDenied + " deny shop/orders " + dated + "/token 11"})
	if len(seen) != 1 {
		t.Errorf("events %q, want the one denial", seen)
	}
}

// needContainerRoots skips a test that cannot run workloads in roots of
// their own here, and returns the cgroup v2 root.
func needContainerRoots(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: fanotify permission events, mounts and cgroups")
	}
	root := DefaultProcessConfig().CgroupRoot
	if err := checkCgroupRoot(root); err != nil {
		t.Skipf("no cgroup v2: %v", err)
	}
	for _, b := range []string{"unshare", "nsenter", "pivot_root"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed", b)
		}
	}
	return root
}

// catIn runs cat of file in the mount namespace and root of process pid,
// as a process of the cgroup open as cgfd.
func catIn(pid, cgfd int, file string) (string, error) {
	cmd := exec.Command("nsenter", "--target", strconv.Itoa(pid), "--mount", "--root", "--wd", "cat", file)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPrivilegedProcRootSkipsNodeRoot checks that a workload's root is
// taken from a process with a root of its own, not from one still on the
// node's root listed first (a runtime's start-up process).
func TestPrivilegedProcRootSkipsNodeRoot(t *testing.T) {
	root := needContainerRoots(t)
	_, cgfd := testCgroup(t, root, fmt.Sprintf("/palisade-node-procroot-%d", os.Getpid()))
	pid := startInRoot(t, testRoot(t, "shop/orders"), cgfd)
	a := testAgent()
	a.cfg.Processes.CgroupRoot = t.TempDir()
	fakeCgroup(t, a.cfg.Processes.CgroupRoot, "pod", os.Getpid(), pid)
	if got, ok := a.procRoot("pod"); !ok || got != fmt.Sprintf("/proc/%d/root", pid) {
		t.Errorf("procRoot = %q, %v; want the root of %d, not of %d on the node's root", got, ok, pid, os.Getpid())
	}
	fakeCgroup(t, a.cfg.Processes.CgroupRoot, "host", os.Getpid())
	if got, ok := a.procRoot("host"); !ok || got != fmt.Sprintf("/proc/%d/root", os.Getpid()) {
		t.Errorf("procRoot of a workload on the node's root = %q, %v", got, ok)
	}
}
