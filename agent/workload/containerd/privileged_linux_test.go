//go:build linux

package containerd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/workload"
)

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestPrivilegedSourceContainerd runs a real containerd and a container
// in a network namespace with CRI labels, and follows it through the
// source until its task is killed.
func TestPrivilegedSourceContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containerd and creates network namespaces")
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", b)
		}
	}
	dir := t.TempDir()

	// The container's root filesystem: one static program.
	rootfs := filepath.Join(dir, "rootfs")
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "sleeper"), "./testdata/sleeper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sleeper: %v\n%s", err, out)
	}

	// A host namespace holding the veth's host side, and the container's.
	p := fmt.Sprintf("plc%d", os.Getpid()%100000)
	host, ctrNS := p+"h", p+"c"
	for _, ns := range []string{host, ctrNS} {
		run(t, "ip", "netns", "add", ns)
		name := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	}
	run(t, "ip", "-n", host, "link", "add", "vctr", "type", "veth", "peer", "name", "eth0", "netns", ctrNS)
	run(t, "ip", "-n", ctrNS, "addr", "add", "10.199.7.2/24", "dev", "eth0")
	run(t, "ip", "-n", ctrNS, "link", "set", "eth0", "up")
	run(t, "ip", "-n", host, "link", "set", "vctr", "up")

	// A private containerd.
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "containerd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command("containerd", "--config", filepath.Join(dir, "containerd.toml"))
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		daemon.Process.Kill()
		daemon.Wait()
		logf.Close()
		killShims(sock)
		detachMounts(dir)
	})
	ctr := func(args ...string) (string, error) {
		out, err := exec.Command("ctr", append([]string{"-a", sock, "-n", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if _, err := ctr("version"); err == nil {
			break
		}
		if time.Since(start) > 20*time.Second {
			b, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("containerd did not start:\n%s", b)
		}
	}

	scfg := DefaultConfig()
	scfg.Socket = sock
	scfg.HostNetns = "/var/run/netns/" + host
	scfg.Resync = time.Hour // changes must come from the events
	src, err := New(scfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan workload.Change, 64)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(c workload.Change) { changes <- c }) }()
	defer func() {
		cancel()
		<-done
	}()
	next := func(kind workload.ChangeKind) workload.Change {
		t.Helper()
		select {
		case c := <-changes:
			if c.Kind != kind {
				t.Fatalf("change %v %+v, want %v", c.Kind, c.Endpoint, kind)
			}
			return c
		case <-time.After(20 * time.Second):
			t.Fatalf("no %v change", kind)
		}
		return workload.Change{}
	}

	t.Cleanup(func() {
		ctr("task", "kill", "-s", "SIGKILL", "web")
		for range 50 {
			if out, err := ctr("task", "delete", "web"); err == nil || strings.Contains(out, "not found") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		ctr("container", "delete", "web")
	})
	if out, err := ctr("run", "-d", "--rootfs", "--with-ns", "network:/var/run/netns/"+ctrNS,
		"--label", LabelPodName+"=web-1", "--label", LabelPodNamespace+"=shop", "--label", LabelContainerName+"=web",
		"--label", "app=web", rootfs, "web", "/sleeper"); err != nil {
		t.Fatalf("ctr run: %v\n%s", err, out)
	}
	c := next(workload.Added)
	ep := c.Endpoint
	if ep.ID() != "shop/web-1" || fmt.Sprint(ep.Labels) != "map[app:web]" || ep.Cgroup != "/k8s.io/web" {
		t.Errorf("endpoint %s labels %v cgroup %q, want shop/web-1 map[app:web] /k8s.io/web", ep.ID(), ep.Labels, ep.Cgroup)
	}
	if len(ep.Interfaces) != 1 || ep.Interfaces[0].HostIfN != "vctr" || fmt.Sprint(ep.Addrs()) != "[10.199.7.2/24]" {
		t.Errorf("interfaces %+v, want eth0 10.199.7.2/24 behind vctr", ep.Interfaces)
	}

	if out, err := ctr("task", "kill", "-s", "SIGKILL", "web"); err != nil {
		t.Fatalf("ctr task kill: %v\n%s", err, out)
	}
	if c := next(workload.Removed); c.Endpoint.ID() != "shop/web-1" {
		t.Errorf("removed %s, want shop/web-1", c.Endpoint.ID())
	}
}

// killShims kills the runc shims started for containerd socket sock; they
// outlive a killed containerd.
func killShims(sock string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.HasSuffix(args[0], "containerd-shim-runc-v2") && slices.Contains(args, sock) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// detachMounts lazily unmounts everything mounted under dir, deepest first.
func detachMounts(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mps = append(mps, f[4])
		}
	}
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mps {
		syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}
