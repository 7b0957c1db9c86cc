package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/remote/agents"
	"github.com/palisade-sec/palisade/remote/policyapi"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// shopNet is a set of network namespaces: a node namespace holding the
// host side of every veth and routing between them, and one namespace per
// role (a workload or an external client).
type shopNet struct {
	node string
	ns   map[string]string // role -> namespace
	ip   map[string]string // role -> address
}

// shopRoles returns the coffee shop's four workloads and its external client.
func shopRoles() []string {
	return []string{"orders", "payments", "inventory", "redis", "client"}
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newShopNet makes the node namespace prefix+"-node" and, for the i-th
// role, a namespace prefix+"-"+role with eth0 at 10.octet.i.2/24 behind the
// node's veth vethPrefix+i. Distinct prefixes, veth names and octets let
// tests run at the same time.
func newShopNet(t *testing.T, prefix, vethPrefix string, octet int, roles ...string) *shopNet {
	t.Helper()
	n := &shopNet{node: prefix + "-node", ns: map[string]string{}, ip: map[string]string{}}
	add := func(ns string) {
		exec.Command("ip", "netns", "del", ns).Run() // left over from a killed run
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	add(n.node)
	sh(t, "ip", "netns", "exec", n.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for i, role := range roles {
		ns := prefix + "-" + role
		add(ns)
		host := fmt.Sprintf("%s%d", vethPrefix, i+1)
		sub := fmt.Sprintf("10.%d.%d", octet, i+1)
		sh(t, "ip", "-n", n.node, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh(t, "ip", "-n", ns, "addr", "add", sub+".2/24", "dev", "eth0")
		sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		sh(t, "ip", "-n", ns, "route", "add", "default", "via", sub+".1")
		sh(t, "ip", "-n", n.node, "addr", "add", sub+".1/24", "dev", host)
		sh(t, "ip", "-n", n.node, "link", "set", host, "up")
		n.ns[role], n.ip[role] = ns, sub+".2"
	}
	return n
}

// agentCluster is a one-replica controller listening for agents, with the
// CLI logged in as admin and an agent enrolment token made.
type agentCluster struct {
	ctl       *harness.Controller
	cli       func(args ...string) string // runs the CLI; fails the test on a non-zero exit
	agentAddr string                      // where agents reach the controller
	token     string                      // agent enrolment token, valid 10 minutes
}

// startAgentCluster starts an agentCluster whose admin has password.
func startAgentCluster(t testing.TB, dir, prefix, password string) *agentCluster {
	t.Helper()
	pw := writeFile(t, dir, "admin.pw", password)
	agentAddr := ports.Next(t)
	c := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: prefix, Replicas: 1, PasswordFile: pw,
		Extra: []string{"--agent-addr", agentAddr}})[0]
	env := []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, "session.json")}
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := harness.CLI(t, bin, env, args...)
		if code != 0 {
			t.Fatalf("palisade %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	cli("login", "--api", c.API, "--ca-file", c.CAFile(), "--password-file", pw)
	token := strings.TrimSpace(cli("agent", "token", "create", "--ttl", "10m"))
	return &agentCluster{ctl: c, cli: cli, agentAddr: agentAddr, token: token}
}

// inNetns runs fn on an OS thread inside namespace ns; sockets fn creates
// stay there.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

func dialFrom(ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 700*time.Millisecond)
		return err
	})
	return c, err
}

// httpServe serves HTTP in ns on addr:8080 until the test ends.
func httpServe(t *testing.T, ns, addr, name string) {
	t.Helper()
	var l net.Listener
	if err := inNetns(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr+":8080")
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", ns, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }),
		ReadHeaderTimeout: 2 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// keepAliveGet makes one HTTP/1.1 request on an open connection and wants
// the body want back.
func keepAliveGet(c net.Conn, r *bufio.Reader, want string) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: shop\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("got %q, want %q", b, want)
	}
	return nil
}

// httpGet makes one request from ns (a new connection each time).
func httpGet(fromNS, addr string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(_ context.Context, _, a string) (net.Conn, error) { return dialFrom(fromNS, a) }}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + ":8080/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// shopTraffic makes the shop's usual requests once: orders to payments
// and inventory, inventory to Redis, and the outside client to orders.
func shopTraffic(n *shopNet) error {
	if _, err := httpGet(n.ns["orders"], n.ip["payments"]); err != nil {
		return fmt.Errorf("orders -> payments: %w", err)
	}
	if _, err := httpGet(n.ns["orders"], n.ip["inventory"]); err != nil {
		return fmt.Errorf("orders -> inventory: %w", err)
	}
	if err := redisPing(n.ns["inventory"], n.ip["redis"]); err != nil {
		return fmt.Errorf("inventory -> redis: %w", err)
	}
	if _, err := httpGet(n.ns["client"], n.ip["orders"]); err != nil {
		return fmt.Errorf("client -> orders: %w", err)
	}
	return nil
}

// learnedRules lists the controller's learned rules: network rules as
// "FROM->TO" to "PORTS APPS", and process rules as "GROUP PATH" to whether
// the rule is a learned allow.
func learnedRules(cli func(args ...string) string) (map[string]string, map[string]bool, error) {
	var rules policyapi.RuleList
	if err := json.Unmarshal([]byte(cli("rule", "list", "--learned", "-o", "json")), &rules); err != nil {
		return nil, nil, err
	}
	network, procs := map[string]string{}, map[string]bool{}
	for _, r := range rules.Items {
		if r.Kind == policy.KindProcessRule {
			procs[r.Group+" "+r.Path] = r.Source == "learned" && r.Action == "allow"
			continue
		}
		network[r.From+"->"+r.To] = r.Ports + " " + strings.Join(r.Applications, ",")
	}
	return network, procs, nil
}

// checkLearned says whether the learned network rules got are exactly the
// pairs of want, each with want's application.
func checkLearned(got, want map[string]string) error {
	for pair, app := range want {
		if g, ok := got[pair]; !ok || !strings.Contains(strings.ToLower(g), app) {
			return fmt.Errorf("rule %s: got %q, want app %s (all: %v)", pair, g, app, got)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("learned %d rules, want %d: %v", len(got), len(want), got)
	}
	return nil
}

// serveShop starts the shop's HTTP servers in their namespaces and Redis
// in its own, and waits for Redis to answer from inventory; it skips the
// test when redis-server is not installed.
func serveShop(t *testing.T, dir string, n *shopNet) {
	t.Helper()
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (scripts/deps.sh)")
	}
	for _, role := range []string{"orders", "payments", "inventory"} {
		httpServe(t, n.ns[role], n.ip[role], role)
	}
	redis := exec.Command("ip", "netns", "exec", n.ns["redis"], redisBin, "--port", "6379", "--bind", n.ip["redis"],
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no")
	redisLog, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	redis.Stdout, redis.Stderr = redisLog, redisLog
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Process.Kill(); redis.Wait(); redisLog.Close() })
	harness.Eventually(t, 10*time.Second, "redis answers", func() error { return redisPing(n.ns["inventory"], n.ip["redis"]) })
}

// redisPing sends PING from ns to the Redis server.
func redisPing(fromNS, addr string) error {
	c, err := dialFrom(fromNS, addr+":6379")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// cgroupRoot is where this project's nodes mount cgroup v2.
const cgroupRoot = "/sys/fs/cgroup/unified"

// shopCgroups creates a cgroup v2 directory per role under one parent and
// returns the parent's path relative to the cgroup root. The cleanup
// removes them once their processes are gone.
func shopCgroups(t *testing.T, roles []string) string {
	t.Helper()
	rel := fmt.Sprintf("/palisade-e2e-%d", os.Getpid())
	parent := filepath.Join(cgroupRoot, rel)
	os.Remove(parent) // left over from a killed run, when empty
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatalf("create cgroup %s: %v", parent, err)
	}
	t.Cleanup(func() {
		for _, d := range append(slices.Clone(roles), "") {
			p := filepath.Join(parent, d)
			for i := 0; ; i++ {
				err := os.Remove(p)
				if err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				if i == 100 {
					t.Errorf("remove cgroup %s: %v", p, err)
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	for _, r := range roles {
		if err := os.Mkdir(filepath.Join(parent, r), 0o755); err != nil {
			t.Fatalf("create cgroup: %v", err)
		}
	}
	return rel
}

// inCgroup returns a command that starts inside the cgroup (relative to
// the cgroup root) and the directory fd to close after Start.
func inCgroup(t *testing.T, cg string, name string, args ...string) (*exec.Cmd, func()) {
	t.Helper()
	fd, err := unix.Open(filepath.Join(cgroupRoot, cg), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup %s: %v", cg, err)
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	return cmd, func() { unix.Close(fd) }
}

// runInCgroup runs a command to its end inside a cgroup.
func runInCgroup(t *testing.T, cg, name string, args ...string) error {
	t.Helper()
	cmd, done := inCgroup(t, cg, name, args...)
	defer done()
	return cmd.Run()
}

// TestAgentCoffeeShop runs a real controller and a real agent enforcing in
// network namespaces: in Discover the controller learns the shop's flows
// with their applications and the executable the orders workload runs; in
// Protect those flows still work, payments -> orders is dropped and
// reported, a shell exec in orders is denied before it runs and reported
// while the learned executable still runs, a blocking file rule denies
// the orders workload (only) the opens of its file and reports them, and a
// restarted agent keeps enforcing: while it is stopped the kernel's exec
// fallback kills the shell in orders, reported once the agent is back.
func TestAgentCoffeeShop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and eBPF")
	}
	dir := t.TempDir()
	n := newShopNet(t, "pal-e2e", "pe", 231, shopRoles()...)
	serveShop(t, dir, n)

	ac := startAgentCluster(t, dir, "agt", "admin-password-1")
	c, mustCLI, agentAddr, token := ac.ctl, ac.cli, ac.agentAddr, ac.token

	roles := []string{"orders", "payments", "inventory", "redis"}
	cgParent := shopCgroups(t, roles)
	cgOf := func(role string) string { return cgParent + "/" + role }
	var wl strings.Builder
	for _, role := range roles {
		fmt.Fprintf(&wl, "- {name: %s, namespace: shop, netns: %s, cgroup: %s, labels: {app: %s}}\n", role, n.ns[role], cgOf(role), role)
	}
	wlFile := writeFile(t, dir, "workloads.yaml", wl.String())
	pinDir := fmt.Sprintf("/sys/fs/bpf/pal-e2e-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	agent := harness.Start(t, bin, dir, "agent", "agent", "--controller", agentAddr, "--token", token, "--node", "node1",
		"--data-dir", filepath.Join(dir, "agent"), "--workloads", wlFile, "--host-netns", n.node, "--pin-dir", pinDir, "--log-level", "debug")
	ready := regexp.MustCompile(`msg="agent ready"`)
	agent.WaitLog(ready, 1, 20*time.Second)
	agent.WaitLog(regexp.MustCompile(`msg="workload attached"`), 4, 20*time.Second)

	// A long-lived worker in the orders workload (its cgroup and netns)
	// is learned in Discover.
	worker := filepath.Join(dir, "orders-worker")
	sleepBin, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(worker, sleepBin, 0o755); err != nil {
		t.Fatal(err)
	}
	if worker, err = filepath.EvalSymlinks(worker); err != nil {
		t.Fatal(err)
	}
	agent.WaitLog(regexp.MustCompile(`msg="workload process policy" workload=shop/orders mode=discover`), 1, 20*time.Second)
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	workerCmd, workerStarted := inCgroup(t, cgOf("orders"), ipBin, "netns", "exec", n.ns["orders"], worker, "600")
	if err := workerCmd.Start(); err != nil {
		t.Fatalf("start orders worker: %v", err)
	}
	workerStarted()
	t.Cleanup(func() { workerCmd.Process.Kill(); workerCmd.Wait() })

	// Discover: the shop's traffic is learned.
	traffic := func() error { return shopTraffic(n) }
	want := map[string]string{
		"learned.orders.shop->learned.payments.shop":  "http",
		"learned.orders.shop->learned.inventory.shop": "http",
		"learned.inventory.shop->learned.redis.shop":  "redis",
		"external->learned.orders.shop":               "http",
	}
	harness.Eventually(t, 30*time.Second, "learned rules", func() error {
		if err := traffic(); err != nil {
			return err
		}
		got, procs, err := learnedRules(mustCLI)
		if err != nil {
			return err
		}
		if !procs["learned.orders.shop "+worker] {
			return fmt.Errorf("no learned process rule for %s in learned.orders.shop: %v", worker, procs)
		}
		return checkLearned(got, want)
	})
	var flows agents.FlowList
	if err := json.Unmarshal([]byte(mustCLI("flow", "list", "--group", "learned.orders.shop", "-o", "json")), &flows); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, f := range flows.Items {
		seen = append(seen, fmt.Sprintf("%s->%s/%d/%s", f.Client, f.Server, f.Port, f.App))
	}
	for _, w := range []string{"shop/orders->shop/payments/8080/http", "shop/orders->shop/inventory/8080/http", n.ip["client"] + "->shop/orders/8080/http"} {
		if !slices.Contains(seen, w) {
			t.Errorf("flow list --group learned.orders.shop lacks %s: %v", w, seen)
		}
	}

	// Protect: learned flows pass, payments -> orders is dropped and
	// reported, a shell in orders is denied before it runs.
	// The process mode first: the network checks below then run on a
	// policy that no longer changes.
	mustCLI("mode", "set", "--all", "--process", "protect")
	mustCLI("mode", "set", "--all", "protect")
	blocked := func() error {
		if _, err := httpGet(n.ns["payments"], n.ip["orders"]); err == nil {
			return fmt.Errorf("payments -> orders still passes")
		}
		return nil
	}
	harness.Eventually(t, 20*time.Second, "payments -> orders dropped", blocked)
	if err := traffic(); err != nil {
		t.Fatalf("learned flows in Protect: %v", err)
	}
	harness.Eventually(t, 10*time.Second, "violation event", func() error {
		var evs agents.EventList
		if err := json.Unmarshal([]byte(mustCLI("event", "list", "-o", "json")), &evs); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Kind == "network-violation" && e.Action == "deny" && e.Client == "shop/payments" && e.Server == "shop/orders" && e.Port == 8080 {
				return nil
			}
		}
		return fmt.Errorf("no deny event for payments -> orders in %d events", len(evs.Items))
	})

	agent.WaitLog(regexp.MustCompile(`msg="workload process policy" workload=shop/orders mode=protect`), 1, 20*time.Second)
	agent.WaitLog(regexp.MustCompile(`msg="process guard armed"`), 1, 10*time.Second)
	if err := runInCgroup(t, cgOf("orders"), "/bin/sh", "-c", "true"); !errors.Is(err, unix.EPERM) {
		t.Fatalf("shell in protected orders: got %v, want EPERM", err)
	}
	if err := runInCgroup(t, cgOf("orders"), worker, "0"); err != nil {
		t.Fatalf("learned worker in protected orders: %v", err)
	}
	if err := runInCgroup(t, cgOf("payments"), "/bin/sh", "-c", "true"); !errors.Is(err, unix.EPERM) {
		t.Fatalf("shell in protected payments: got %v, want EPERM", err)
	}
	if err := exec.Command("/bin/sh", "-c", "true").Run(); err != nil {
		t.Fatalf("shell outside the workloads: %v", err)
	}
	shell, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, "process violation event", func() error {
		var evs agents.EventList
		if err := json.Unmarshal([]byte(mustCLI("event", "list", "-o", "json")), &evs); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Kind == "process-denied" && e.Action == "deny" && e.Workload == "shop/orders" && e.Path == shell {
				return nil
			}
		}
		return fmt.Errorf("no process-denied event for %s in shop/orders in %d events", shell, len(evs.Items))
	})

	// File rules: a blocking rule of the orders group on a file of a
	// tmpfs denies its opens to orders' processes (dd, allowed to run by a
	// process rule) and reports them, while the same opens from outside the
	// workload pass.
	fileStart := time.Now()
	secret, secretRule := shopFileRule(t, dir, mustCLI)
	agent.WaitLog(regexp.MustCompile(`msg="workload process policy" workload=shop/orders mode=protect rules=\d+ files=1`), 1, 20*time.Second)
	agent.WaitLog(regexp.MustCompile(`msg="file guard marked"`), 1, 10*time.Second)
	if m := regexp.MustCompile(`workload=shop/(payments|inventory|redis) mode=\w+ rules=\d+ files=[1-9]`).FindString(agent.Log()); m != "" {
		t.Fatalf("file rule of orders reached another workload: %s", m)
	}
	checkFileRule(t, cgOf("orders"), secret)
	harness.Eventually(t, 10*time.Second, "file-denied event", func() error {
		var evs agents.EventList
		if err := json.Unmarshal([]byte(mustCLI("event", "list", "-o", "json")), &evs); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Kind == "file-denied" && e.Action == "deny" && e.Workload == "shop/orders" && e.Path == secret && e.RuleName == secretRule {
				return nil
			}
		}
		return fmt.Errorf("no file-denied event for %s in shop/orders under %s in %d events", secret, secretRule, len(evs.Items))
	})
	t.Logf("file rule checks took %s", time.Since(fileStart).Round(time.Millisecond))

	// The controller is gone: the agent keeps enforcing, and reconnects
	// when the controller is back.
	connected := regexp.MustCompile(`msg="agent connected"`)
	c.Stop()
	if err := blocked(); err != nil {
		t.Fatalf("controller stopped: %v", err)
	}
	if err := traffic(); err != nil {
		t.Fatalf("controller stopped, learned flows: %v", err)
	}
	c.Restart()
	c.WaitLog(harness.ReadyRE, 2, 30*time.Second)
	c.WaitLog(connected, 2, 30*time.Second)
	if err := blocked(); err != nil {
		t.Fatalf("controller restarted: %v", err)
	}

	// The agent is gone: enforcement stays; back again: still enforced,
	// and a connection established before the restart carries on.
	held, err := dialFrom(n.ns["orders"], n.ip["payments"]+":8080")
	if err != nil {
		t.Fatalf("orders -> payments, held connection: %v", err)
	}
	defer held.Close()
	heldBuf := bufio.NewReader(held)
	if err := keepAliveGet(held, heldBuf, "payments"); err != nil {
		t.Fatalf("held connection, before the agent restart: %v", err)
	}
	agent.WaitLog(regexp.MustCompile(`msg="exec fallback guards workload" workload=shop/orders mode=protect`), 1, 20*time.Second)
	// The agent dies (SIGKILL: no clean exit): its end, seen by the
	// kernel, hands execs to the fallback at once.
	agentStopped := time.Now()
	agent.Kill()
	if err := blocked(); err != nil {
		t.Fatalf("agent stopped: %v", err)
	}
	// The kernel's exec fallback keeps the shell out of orders: killed
	// before it runs (it would leave a file), while the learned worker
	// still runs.
	ranFile := filepath.Join(dir, "shell-ran-while-agent-stopped")
	shellCmd, shellDone := inCgroup(t, cgOf("orders"), "/bin/sh", "-c", "echo ran > "+ranFile)
	err = shellCmd.Run()
	shellDone()
	if ws, ok := shellCmd.ProcessState.Sys().(syscall.WaitStatus); err == nil || !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("agent stopped, shell in orders: got %v, want killed by SIGKILL", err)
	}
	if _, err := os.Stat(ranFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("agent stopped, shell in orders ran: %s: %v", ranFile, err)
	}
	if err := runInCgroup(t, cgOf("orders"), worker, "0"); err != nil {
		t.Fatalf("agent stopped, learned worker: %v", err)
	}
	if err := traffic(); err != nil {
		t.Fatalf("agent stopped, learned flows: %v", err)
	}
	if err := keepAliveGet(held, heldBuf, "payments"); err != nil {
		t.Fatalf("held connection, agent stopped: %v", err)
	}
	agent.Restart()
	agent.WaitLog(ready, 2, 20*time.Second)
	if err := keepAliveGet(held, heldBuf, "payments"); err != nil {
		t.Fatalf("held connection, agent restarted: %v", err)
	}
	if err := blocked(); err != nil {
		t.Fatalf("agent restarted: %v", err)
	}
	if err := traffic(); err != nil {
		t.Fatalf("agent restarted, learned flows: %v", err)
	}
	agent.WaitLog(regexp.MustCompile(`msg="process guard armed"`), 2, 20*time.Second)
	if err := runInCgroup(t, cgOf("orders"), "/bin/sh", "-c", "true"); !errors.Is(err, unix.EPERM) {
		t.Fatalf("agent restarted, shell in orders: got %v, want EPERM", err)
	}
	waitEvent(t, mustCLI, "process-denied event of the exec fallback for "+shell+" in shop/orders", func(e agentproto.Event) bool {
		return e.Kind == agentproto.EventExecDenied && e.Action == "deny" && e.Workload == "shop/orders" && e.Path == shell &&
			strings.Contains(e.Message, "guard was not running") && e.Time.After(agentStopped)
	})
	if err := runInCgroup(t, cgOf("orders"), worker, "0"); err != nil {
		t.Fatalf("agent restarted, learned worker: %v", err)
	}
	agent.WaitLog(regexp.MustCompile(`msg="file guard marked"`), 2, 20*time.Second)
	checkFileRule(t, cgOf("orders"), secret)
}

// shopFileRule mounts a tmpfs holding the orders workload's secret file
// and applies a blocking file rule on it for a group of the orders
// workload, with a process rule letting it run dd (the group's process
// mode is the default, and the workload keeps the Protect of its learned
// group). It returns the file and the rule's name.
func shopFileRule(t *testing.T, dir string, cli func(...string) string) (secret, rule string) {
	t.Helper()
	mnt := fmt.Sprintf("/run/pal-e2e-shop-%d", os.Getpid())
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
		os.Remove(mnt)
	})
	secret = filepath.Join(mnt, "orders", "secret.conf")
	if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("db-password\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dd := ddPath(t)
	doc := fmt.Sprintf(`apiVersion: palisade.dev/v1
kind: SecurityRule
metadata: {name: orders-files, namespace: shop}
spec:
  target:
    selector:
      name: orders-files
      criteria: [{key: app, op: "=", value: orders}]
  process:
  - {name: dd, path: %s, action: allow}
  file:
  - {filter: %s, behavior: blockAccess}
`, dd, secret)
	cli("policy", "apply", "-f", writeFile(t, dir, "orders-files.yaml", doc))
	return secret, "orders-files:" + secret
}

// ddPath returns dd's path as the node sees it.
func ddPath(t *testing.T) string {
	t.Helper()
	dd, err := exec.LookPath("dd")
	if err != nil {
		t.Fatal(err)
	}
	if dd, err = filepath.EvalSymlinks(dd); err != nil {
		t.Fatal(err)
	}
	return dd
}

// checkFileRule checks that dd in the cgroup can neither read nor write
// secret while dd outside the workloads can read it.
func checkFileRule(t *testing.T, cg, secret string) {
	t.Helper()
	dd := ddPath(t)
	for _, args := range [][]string{
		{"if=" + secret, "of=/dev/null", "status=none"},
		{"if=/dev/null", "of=" + secret, "conv=notrunc", "status=none"},
	} {
		cmd, done := inCgroup(t, cg, dd, args...)
		out, err := cmd.CombinedOutput()
		done()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.Contains(string(out), "Operation not permitted") {
			t.Fatalf("dd %s in %s: got %v (%q), want a denied open", strings.Join(args, " "), cg, err, out)
		}
	}
	out, err := exec.Command(dd, "if="+secret, "status=none").Output()
	if err != nil || string(out) != "db-password\n" {
		t.Fatalf("dd if=%s outside the workloads: got %q, %v", secret, out, err)
	}
}
