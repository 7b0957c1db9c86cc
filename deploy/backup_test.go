package deploy

import (
	"bytes"
	"fmt"
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
	name    string
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

// replicaAddrs are one replica's listen addresses.
type replicaAddrs struct{ api, raft, gossip, fed, agent string }

func newAddrs(t *testing.T) replicaAddrs {
	return replicaAddrs{api: freeTCP(t), raft: freeTCP(t), gossip: freeTCP(t), fed: freeUDP(t), agent: freeUDP(t)}
}

// startController runs a one-replica controller, as the chart's small mode
// does, on fresh loopback ports, and waits until it is ready.
func startController(t *testing.T, bin, name, dataDir, passwordFile string) *controllerProc {
	t.Helper()
	a := newAddrs(t)
	p := startReplica(t, bin, name, dataDir, passwordFile, a, a.gossip, 1)
	waitReady(t, p)
	return p
}

// startReplica starts one replica of a cluster of expect replicas that
// find each other through join (a gossip address).
func startReplica(t *testing.T, bin, name, dataDir, passwordFile string, a replicaAddrs, join string, expect int) *controllerProc {
	t.Helper()
	cmd := exec.Command(bin, "controller", "--name", name, "--cluster-name", "backup", "--data-dir", dataDir,
		"--api-addr", a.api, "--raft-addr", a.raft, "--gossip-addr", a.gossip, "--fed-addr", a.fed,
		"--agent-addr", a.agent, "--admission-addr=", "--join", join, "--bootstrap-expect", fmt.Sprint(expect),
		"--admin-password-file", passwordFile)
	p := &controllerProc{cmd: cmd, log: &syncBuffer{}, api: "https://" + a.api, done: make(chan error, 1), name: name}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start controller: %v", err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// waitReady waits until the replica says it is ready.
func waitReady(t *testing.T, p *controllerProc) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(p.log.String(), "controller ready") {
		select {
		case err := <-p.done:
			p.stopped = true
			t.Fatalf("controller %s exited: %v\n%s", p.name, err, p.log.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller %s not ready:\n%s", p.name, p.log.String())
		}
	}
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

// TestBackupRestoreDataDirHA follows deploy/README.md's HA procedure: stop
// one of three replicas, copy its data directory, start it again; later
// stop all three, put the copy into every replica's directory keeping each
// one's node-id, and start them. The cluster elects a leader and has the
// state of the copy: what was written before it, not what came after.
func TestBackupRestoreDataDirHA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs palisade; skipped with -short")
	}
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("tar not installed")
	}
	bin := buildPalisade(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "admin.pw")
	userPW := filepath.Join(dir, "user.pw")
	for path, v := range map[string]string{pw: "backup-test-password\n", userPW: "another-password-1234\n"} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"palisade-0", "palisade-1", "palisade-2"}
	addrs := make([]replicaAddrs, len(names))
	dataDirs := make([]string, len(names))
	for i := range names {
		addrs[i] = newAddrs(t)
		dataDirs[i] = filepath.Join(dir, "data-"+names[i])
	}
	startAll := func() []*controllerProc {
		procs := make([]*controllerProc, len(names))
		for i, n := range names {
			procs[i] = startReplica(t, bin, n, dataDirs[i], pw, addrs[i], addrs[0].gossip, len(names))
		}
		for _, p := range procs {
			waitReady(t, p)
		}
		return procs
	}
	session := filepath.Join(dir, "session.json")
	login := func(p *controllerProc, i int) {
		cli(t, bin, session, "login", "--api", p.api, "--ca-file", filepath.Join(dataDirs[i], "ca.crt"), "--password-file", pw)
	}

	procs := startAll()
	login(procs[0], 0)
	cli(t, bin, session, "user", "create", "before-backup", "--role", "reader", "--password-file", userPW)
	// The write is on every replica once palisade-2 serves it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		login(procs[2], 2)
		if strings.Contains(cli(t, bin, session, "user", "list"), "before-backup") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("palisade-2 never saw the write")
		}
		time.Sleep(500 * time.Millisecond)
	}

	// kubectl scale --replicas=2, copy data-palisade-2, scale back to 3.
	procs[2].stop(t)
	backup := filepath.Join(dir, "palisade-data.tgz")
	if out, err := exec.Command("tar", "czf", backup, "-C", dataDirs[2], ".").CombinedOutput(); err != nil {
		t.Fatalf("tar czf: %v\n%s", err, out)
	}
	procs[2] = startReplica(t, bin, names[2], dataDirs[2], pw, addrs[2], addrs[0].gossip, len(names))
	waitReady(t, procs[2])
	login(procs[0], 0)
	cli(t, bin, session, "user", "create", "after-backup", "--role", "reader", "--password-file", userPW)

	// Restore: every replica stopped, each directory emptied but for its
	// node-id, the copy untarred into it, node-id put back.
	for _, p := range procs {
		p.stop(t)
	}
	for i, d := range dataDirs {
		id, err := os.ReadFile(filepath.Join(d, "node-id"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("tar", "xzf", backup, "-C", d).CombinedOutput(); err != nil {
			t.Fatalf("tar xzf: %v\n%s", err, out)
		}
		if err := os.WriteFile(filepath.Join(d, "node-id"), id, 0o600); err != nil {
			t.Fatal(err)
		}
		if i == 0 && !bytes.Contains(id, []byte("palisade-0")) {
			t.Fatalf("node-id of palisade-0 = %q", id)
		}
	}
	procs = startAll()
	for i, p := range procs {
		login(p, i)
		users := cli(t, bin, session, "user", "list")
		if !strings.Contains(users, "before-backup") {
			t.Errorf("%s after restore lacks the user written before the backup:\n%s", names[i], users)
		}
		if strings.Contains(users, "after-backup") {
			t.Errorf("%s after restore has the user written after the backup:\n%s", names[i], users)
		}
	}
}
