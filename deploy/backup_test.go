package deploy

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer a process's output goroutines may write
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// controllerProc is one `palisade controller` started by a test.
type controllerProc struct {
	cmd     *exec.Cmd
	log     *syncBuffer
	api     string
	done    chan error
	stopped bool
}

func freeTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func freeUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// startController runs a one-replica controller, as the chart's small mode
// does, on fresh loopback ports, and waits until it is ready.
func startController(t *testing.T, bin, name, dataDir, passwordFile string) *controllerProc {
	t.Helper()
	api, gossip := freeTCP(t), freeTCP(t)
	cmd := exec.Command(bin, "controller", "--name", name, "--cluster-name", "backup", "--data-dir", dataDir,
		"--api-addr", api, "--raft-addr", freeTCP(t), "--gossip-addr", gossip, "--fed-addr", freeUDP(t),
		"--agent-addr", freeUDP(t), "--admission-addr=", "--join", gossip, "--bootstrap-expect", "1",
		"--admin-password-file", passwordFile)
	p := &controllerProc{cmd: cmd, log: &syncBuffer{}, api: "https://" + api, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start controller: %v", err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(p.log.String(), "controller ready") {
		select {
		case err := <-p.done:
			p.stopped = true
			t.Fatalf("controller %s exited: %v\n%s", name, err, p.log.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller %s not ready:\n%s", name, p.log.String())
		}
	}
	return p
}

// stop ends the controller with SIGTERM, as Kubernetes does.
func (p *controllerProc) stop(t *testing.T) {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("controller did not stop on SIGTERM:\n%s", p.log.String())
	}
}

// cli runs the palisade CLI with its own session file.
func cli(t *testing.T, bin, session string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PALISADE_SESSION_FILE="+session)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("palisade %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestBackupRestoreDataDir follows deploy/README.md's backup and restore
// of a small-mode controller: stop the replica, tar its data directory,
// untar it into an empty one and start the replica from there, on other
// addresses (a rescheduled pod gets a new IP). The restored controller has
// the state written before the backup and the same cluster CA; the copy
// refuses to start as another replica.
func TestBackupRestoreDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs palisade; skipped with -short")
	}
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("tar not installed")
	}
	bin := buildPalisade(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "admin.pw")
	if err := os.WriteFile(pw, []byte("backup-test-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	userPW := filepath.Join(dir, "user.pw")
	if err := os.WriteFile(userPW, []byte("another-password-1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	orig := filepath.Join(dir, "data-palisade-0")
	session := filepath.Join(dir, "session.json")

	c := startController(t, bin, "palisade-0", orig, pw)
	cli(t, bin, session, "login", "--api", c.api, "--ca-file", filepath.Join(orig, "ca.crt"), "--password-file", pw)
	cli(t, bin, session, "user", "create", "restore-check", "--role", "reader", "--password-file", userPW)
	caBefore, err := os.ReadFile(filepath.Join(orig, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c.stop(t) // kubectl scale statefulset palisade --replicas=0

	backup := filepath.Join(dir, "palisade-data.tgz")
	if out, err := exec.Command("tar", "czf", backup, "-C", orig, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar czf: %v\n%s", err, out)
	}
	restored := filepath.Join(dir, "restored")
	if err := os.Mkdir(restored, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "xzf", backup, "-C", restored).CombinedOutput(); err != nil {
		t.Fatalf("tar xzf: %v\n%s", err, out)
	}

	// The copy belongs to palisade-0: another replica name is refused.
	wrong := exec.Command(bin, "controller", "--name", "palisade-1", "--data-dir", restored,
		"--api-addr", freeTCP(t), "--raft-addr", freeTCP(t), "--gossip-addr", freeTCP(t), "--fed-addr", freeUDP(t),
		"--agent-addr", freeUDP(t), "--admission-addr=", "--admin-password-file", pw)
	out, err := wrong.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `belongs to replica "palisade-0"`) {
		t.Errorf("restored copy started as palisade-1: %v\n%s", err, out)
	}

	r := startController(t, bin, "palisade-0", restored, pw)
	caAfter, err := os.ReadFile(filepath.Join(restored, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("the restored controller has another cluster CA")
	}
	session2 := filepath.Join(dir, "session2.json")
	cli(t, bin, session2, "login", "--api", r.api, "--ca-file", filepath.Join(restored, "ca.crt"), "--password-file", pw)
	if users := cli(t, bin, session2, "user", "list"); !strings.Contains(users, "restore-check") {
		t.Errorf("restored controller lacks the user created before the backup:\n%s", users)
	}
}
