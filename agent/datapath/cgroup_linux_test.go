//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

const cgroupRoot = "/sys/fs/cgroup/unified"

// TestPrivilegedCgroupEnforcement enforces on a cgroup instead of a veth:
// processes in the cgroup (in namespace a) get identity A.
func TestPrivilegedCgroupEnforcement(t *testing.T) {
	skipUnlessRoot(t)
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	n := newTestNet(t)
	for _, port := range []string{"8080", "9090"} {
		echoServer(t, n.b, "tcp4", "10.199.2.2:"+port)
	}
	cg := filepath.Join(cgroupRoot, fmt.Sprintf("palisade-dp-test-%d-%d", os.Getpid(), nsSeq.Add(1)))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			if err := os.Remove(cg); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", cg)
	})
	cgfd, err := unix.Open(cg, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup: %v", err)
	}
	t.Cleanup(func() { unix.Close(cgfd) })

	d := openDatapath(t, testConfig(t))
	t.Cleanup(func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := d.AttachCgroup(cg, idA); err != nil {
		t.Fatalf("attach cgroup: %v", err)
	}

	// connect runs a TCP exchange from namespace a in a child process.
	connect := func(inCgroup bool, port string) error {
		script := "exec 3<>/dev/tcp/10.199.2.2/" + port + " && echo hi >&3 && read -r line <&3 && [ \"$line\" = hi ]"
		cmd := exec.Command("nsenter", "--net=/var/run/netns/"+n.a, "timeout", "2", "bash", "-c", script)
		if inCgroup {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	tests := []struct {
		name     string
		inCgroup bool
		port     string
		want     bool
	}{
		{"allowed port from the cgroup", true, "8080", true},
		{"other port from the cgroup", true, "9090", false},
		{"other port from outside the cgroup", false, "9090", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := connect(tc.inCgroup, tc.port)
			if (err == nil) != tc.want {
				t.Errorf("connect to %s: err %v, want success %v", tc.port, err, tc.want)
			}
		})
	}
	if err := d.DetachCgroup(cg); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if err := connect(true, "9090"); err != nil {
		t.Errorf("still enforced after detach: %v", err)
	}
}
