// Package harness runs real palisade processes for the end-to-end tests:
// it builds the binary once (or uses $PALISADE_BIN), hands out loopback
// ports, starts processes with their logs in the test's directory, waits
// for their ready lines, and kills them when the test ends.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/shared/apiclient"
)

// Binary returns the palisade binary to test: $PALISADE_BIN, or one built
// from this checkout into dir.
func Binary(dir string) (string, error) {
	if p := os.Getenv("PALISADE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("PALISADE_BIN: %w", err)
		}
		return p, nil
	}
	out := filepath.Join(dir, "palisade")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/palisade")
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build palisade: %v\n%s", err, b)
	}
	return out, nil
}

func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// Ports hands out free loopback TCP ports (also free for UDP at the time
// they are handed out).
type Ports struct {
	mu   sync.Mutex
	used map[int]bool
}

// Next returns "127.0.0.1:PORT" for a port free for TCP and UDP.
func (p *Ports) Next(t testing.TB) string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used == nil {
		p.used = map[int]bool{}
	}
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, uerr := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if uerr != nil || p.used[port] {
			continue
		}
		u.Close()
		p.used[port] = true
		return fmt.Sprintf("127.0.0.1:%d", port)
	}
	t.Fatal("no free port")
	return ""
}

// Proc is a running palisade process.
type Proc struct {
	Name    string
	Args    []string
	LogPath string
	bin     string
	t       testing.TB

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs bin with args; its stdout and stderr go to DIR/NAME.log.
func Start(t testing.TB, bin, dir, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Args: args, LogPath: filepath.Join(dir, name+".log"), bin: bin, t: t}
	p.start()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.LogPath)
			t.Logf("---- log of %s (last 4 KiB) ----\n%s", name, tail(b, 4096))
		}
	})
	return p
}

// Pid is the process's ID while it runs, or 0.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (p *Proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM and waits up to 10s, then kills.
func (p *Proc) Stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Restart starts the process again with the same arguments.
func (p *Proc) Restart() {
	p.Kill()
	p.start()
}

// Exited reports whether the process has ended, and its error.
func (p *Proc) Exited() (bool, error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// Log returns the process's log so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// WaitLog waits until the log has at least count lines matching re since
// the log started, and returns the last match's submatches.
func (p *Proc) WaitLog(re *regexp.Regexp, count int, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var last []string
		n := 0
		sc := bufio.NewScanner(bytes.NewReader([]byte(p.Log())))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				n++
				last = m
			}
		}
		if n >= count {
			return last
		}
		if exited, err := p.Exited(); exited {
			p.t.Fatalf("%s exited (%v) before logging %q", p.Name, err, re)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not log %q %d time(s) within %s", p.Name, re, count, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Eventually retries f until it returns nil or timeout passes, and returns
// how long it took.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not done within %s: %v", what, timeout, err)
	return 0
}

// CLI runs the palisade binary with args and returns its stdout, stderr and
// exit code. env entries are added to the environment.
func CLI(t testing.TB, bin string, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run palisade %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// Controller is one controller replica started by the harness.
type Controller struct {
	*Proc
	Name    string
	DataDir string
	API     string // https://127.0.0.1:PORT
	Raft    string
	Gossip  string
	Fed     string // federation address (UDP)
}

// CAFile is the cluster CA the replica wrote.
func (c *Controller) CAFile() string { return filepath.Join(c.DataDir, "ca.crt") }

// Client returns an API client for this replica with token.
func (c *Controller) Client(t testing.TB, token string) *apiclient.Client {
	t.Helper()
	cl, err := apiclient.New(apiclient.Config{URL: c.API, CAFile: c.CAFile(), Token: token, Timeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// ReadyRE matches a controller's ready line.
var ReadyRE = regexp.MustCompile(`msg="controller ready"`)

// ClusterSpec describes a controller cluster to start.
type ClusterSpec struct {
	// Prefix names the replicas PREFIX1..N.
	Prefix   string
	Replicas int
	// PasswordFile is the admin password file.
	PasswordFile string
	// Extra arguments for every replica.
	Extra []string
}

// StartCluster starts a cluster's replicas joined through the first one
// and waits until every replica is ready.
func StartCluster(t testing.TB, bin, dir string, ports *Ports, spec ClusterSpec) []*Controller {
	t.Helper()
	var cs []*Controller
	for i := 1; i <= spec.Replicas; i++ {
		c := &Controller{Name: fmt.Sprintf("%s%d", spec.Prefix, i), DataDir: filepath.Join(dir, fmt.Sprintf("%s%d", spec.Prefix, i))}
		c.API = "https://" + ports.Next(t)
		c.Raft = ports.Next(t)
		c.Gossip = ports.Next(t)
		c.Fed = ports.Next(t)
		cs = append(cs, c)
	}
	for _, c := range cs {
		args := []string{"controller", "--name", c.Name, "--data-dir", c.DataDir,
			"--api-addr", strings.TrimPrefix(c.API, "https://"), "--raft-addr", c.Raft, "--gossip-addr", c.Gossip, "--fed-addr", c.Fed,
			"--bootstrap-expect", fmt.Sprint(spec.Replicas), "--cluster-name", spec.Prefix}
		if spec.Replicas > 1 {
			args = append(args, "--join", cs[0].Gossip)
		}
		// Every replica gets its own webhook and agent ports; a test's Extra
		// flags come later and win.
		args = append(args, "--admission-addr", ports.Next(t), "--agent-addr", ports.Next(t))
		if spec.PasswordFile != "" {
			args = append(args, "--admin-password-file", spec.PasswordFile)
		}
		args = append(args, spec.Extra...)
		c.Proc = Start(t, bin, dir, c.Name, args...)
	}
	for _, c := range cs {
		c.WaitLog(ReadyRE, 1, 60*time.Second)
	}
	return cs
}
