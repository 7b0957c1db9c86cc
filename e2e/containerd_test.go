package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/agents"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// TestAgentContainerd runs the shop as real containers of a private
// containerd, from images built here and imported, and a real agent that
// discovers them through containerd's API: the pods appear with their
// names, namespace, labels and image digests; their traffic is learned in
// Discover and an unlearned flow is dropped in Protect; in Protect an
// executable outside a container's learned profile is denied before it
// runs, and a blocking file rule denies a container the open of its own
// file while the same path on the node and in another container stays
// open; a stopped container's workload and file marks disappear.
func TestAgentContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for containerd, network namespaces and eBPF")
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", b)
		}
	}
	dir := t.TempDir()
	roles := []string{"orders", "payments", "inventory"}
	pod := map[string]string{"orders": "orders-7c9f", "payments": "payments-5d2a", "inventory": "inventory-0b41"}
	n := newShopNet(t, "pal-ctr", "pc", 232, roles...)
	ctrd := startContainerd(t, filepath.Join(dir, "ctrd"))
	server := buildCtrServer(t, dir)
	// Every image and the node hold a secret file at the same path, each
	// its own.
	secret := fmt.Sprintf("/srv/pal-e2e-ctr-%d/secret.conf", os.Getpid())
	ref, digest := map[string]string{}, map[string]string{}
	for _, role := range roles {
		ref[role] = "palisade.test/shop/" + role + ":1"
		var archive string
		archive, digest[role] = serverImage(t, dir, server, ref[role], role, map[string]string{secret: role + "-secret\n"})
		ctrd.importImage(archive)
	}
	if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(secret)) })
	if err := os.WriteFile(secret, []byte("node-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ac := startAgentCluster(t, dir, "ctd", "admin-password-1")
	c, mustCLI, agentAddr, token := ac.ctl, ac.cli, ac.agentAddr, ac.token
	apiToken := login(t, c, "admin", "admin-password-1")

	pinDir := fmt.Sprintf("/sys/fs/bpf/pal-e2e-ctr-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	agent := harness.Start(t, bin, dir, "agent", "agent", "--controller", agentAddr, "--token", token, "--node", "node1",
		"--data-dir", filepath.Join(dir, "agent"), "--source", "containerd", "--containerd-socket", ctrd.Sock,
		"--containerd-namespace", ctrNamespace, "--host-netns", n.node, "--pin-dir", pinDir, "--log-level", "debug")
	agent.WaitLog(regexp.MustCompile(`msg="agent ready"`), 1, 20*time.Second)

	// The containers start after the agent: they appear live.
	labels := func(role string) map[string]string {
		return map[string]string{
			"io.kubernetes.pod.name":       pod[role],
			"io.kubernetes.pod.namespace":  "shop",
			"io.kubernetes.pod.uid":        "uid-" + role,
			"io.kubernetes.container.name": role,
			"io.cri-containerd.kind":       "container",
			"app":                          role,
			"service":                      role,
			"tier":                         "backend",
		}
	}
	for _, role := range roles {
		ctrd.run(role, ref[role], n.ns[role], labels(role))
	}
	agent.WaitLog(regexp.MustCompile(`msg="workload attached"`), len(roles), 30*time.Second)

	// Discovery: the controller holds the pods with their labels and
	// addresses; the agent found their images' digests and cgroups.
	workloads := func() (map[string]agentproto.Workload, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var list agents.AgentList
		if err := c.Client(t, apiToken).Do(ctx, "GET", "/v1/agents", nil, &list); err != nil {
			return nil, err
		}
		out := map[string]agentproto.Workload{}
		for _, a := range list.Items {
			if a.Name != "node1" {
				continue
			}
			for _, w := range a.Workloads {
				out[w.ID] = w
			}
		}
		return out, nil
	}
	harness.Eventually(t, 20*time.Second, "workloads at the controller", func() error {
		ws, err := workloads()
		if err != nil {
			return err
		}
		for _, role := range roles {
			id := "shop/" + pod[role]
			w, ok := ws[id]
			if !ok {
				return fmt.Errorf("workload %s missing: %v", id, slicesOfKeys(ws))
			}
			want := map[string]string{"app": role, "service": role, "tier": "backend"}
			if w.Name != pod[role] || w.Namespace != "shop" || !maps.Equal(w.Labels, want) || w.Service != role {
				return fmt.Errorf("workload %s: %+v, want name %s, namespace shop, labels %v", id, w, pod[role], want)
			}
			if len(w.Addresses) != 1 || w.Addresses[0].String() != n.ip[role] {
				return fmt.Errorf("workload %s: addresses %v, want %s", id, w.Addresses, n.ip[role])
			}
			if len(w.Images) != 1 || w.Images[0].Container != role || w.Images[0].Name != ref[role] || w.Images[0].Digest != digest[role] {
				return fmt.Errorf("workload %s: images %+v, want %s=%s@%s", id, w.Images, role, ref[role], digest[role])
			}
		}
		if len(ws) != len(roles) {
			return fmt.Errorf("workloads %v, want %d", slicesOfKeys(ws), len(roles))
		}
		return nil
	})
	for _, role := range roles {
		re := regexp.MustCompile(`msg="container workload added" workload=shop/` + pod[role] + ` .* images="` + role + `=` +
			regexp.QuoteMeta(ref[role]+"@"+digest[role]) + `" cgroup=/` + ctrNamespace + `/` + role + `$`)
		agent.WaitLog(re, 1, 5*time.Second)
	}

	// Discover: the shop's traffic is learned.
	traffic := func() error {
		for _, to := range []string{"payments", "inventory"} {
			got, err := httpGet(n.ns["orders"], n.ip[to])
			if err != nil {
				return fmt.Errorf("orders -> %s: %w", to, err)
			}
			if got != to {
				return fmt.Errorf("orders -> %s answered %q", to, got)
			}
		}
		return nil
	}
	want := map[string]string{
		"learned.orders.shop->learned.payments.shop":  "http",
		"learned.orders.shop->learned.inventory.shop": "http",
	}
	harness.Eventually(t, 30*time.Second, "learned rules", func() error {
		if err := traffic(); err != nil {
			return err
		}
		// The containers' own executables are learned too, as process rules.
		got, _, err := learnedRules(mustCLI)
		if err != nil {
			return err
		}
		return checkLearned(got, want)
	})

	// Protect: learned flows pass, payments -> orders is dropped.
	mustCLI("mode", "set", "--all", "protect")
	harness.Eventually(t, 20*time.Second, "payments -> orders dropped", func() error {
		if _, err := httpGet(n.ns["payments"], n.ip["orders"]); err == nil {
			return fmt.Errorf("payments -> orders still passes")
		}
		return nil
	})
	if err := traffic(); err != nil {
		t.Fatalf("learned flows in Protect: %v", err)
	}
	checkContainerGuard(t, ctrd, agent, mustCLI, dir, secret, pod)

	// A stopped container's workload disappears from the agent and the
	// controller, and so do its file marks; orders' stay.
	ctrd.stop("inventory")
	agent.WaitLog(regexp.MustCompile(`msg="workload removed" workload=shop/`+pod["inventory"]), 1, 20*time.Second)
	agent.WaitLog(regexp.MustCompile(`msg="file guard (unmarked|mark gone with its root)" path=/proc/\d+/root`+regexp.QuoteMeta(filepath.Dir(secret))+` `), 1, 20*time.Second)
	if out, err := ctrd.ctrOut("task", "exec", "--exec-id", "cat-after-stop", "orders", "/server", "cat", secret); err == nil || !strings.Contains(strings.ToLower(out), "operation not permitted") {
		t.Fatalf("orders' open of its secret after inventory stopped: got %q, %v; want EPERM", out, err)
	}
	harness.Eventually(t, 20*time.Second, "inventory gone at the controller", func() error {
		ws, err := workloads()
		if err != nil {
			return err
		}
		if _, ok := ws["shop/"+pod["inventory"]]; ok {
			return fmt.Errorf("workload shop/%s still listed", pod["inventory"])
		}
		if len(ws) != len(roles)-1 {
			return fmt.Errorf("workloads %v, want orders and payments", slicesOfKeys(ws))
		}
		return nil
	})
	if _, err := httpGet(n.ns["orders"], n.ip["payments"]); err != nil {
		t.Fatalf("orders -> payments after inventory stopped: %v", err)
	}
}

// checkContainerGuard checks process and file rules inside the shop's
// containers: once orders and payments learned /server in Discover and
// their process mode is Protect, an executable of orders' image outside
// its learned profile (/tool) is denied with EPERM and reported while the
// learned /server runs; then a blocking file rule on secret for orders
// and inventory denies orders' own open of its secret and reports it,
// while payments' secret, the node's and the node's opened by a process
// of orders' cgroup stay open.
func checkContainerGuard(t *testing.T, ctrd *privateContainerd, agent *harness.Proc, cli func(...string) string, dir, secret string, pod map[string]string) {
	t.Helper()
	orders := "shop/" + pod["orders"]
	exec := func(container, id string, args ...string) (string, error) {
		return ctrd.ctrOut(append([]string{"task", "exec", "--exec-id", id, container}, args...)...)
	}
	// Still in Discover for processes: orders and payments learn /server,
	// run by ctr task exec (the containers' first process ran before the
	// agent knew them).
	harness.Eventually(t, 20*time.Second, "/server learned", func() error {
		for _, role := range []string{"orders", "payments"} {
			if out, err := exec(role, "learn", "/server", "cat", secret); err != nil || out != role+"-secret\n" {
				return fmt.Errorf("/server in %s: %q, %v", role, out, err)
			}
		}
		_, procs, err := learnedRules(cli)
		if err != nil {
			return err
		}
		for _, role := range []string{"orders", "payments"} {
			if !procs["learned."+role+".shop /server"] {
				return fmt.Errorf("learned processes %v, want /server in learned.%s.shop", procs, role)
			}
		}
		return nil
	})
	cli("mode", "set", "--all", "--process", "protect")
	for _, role := range []string{"orders", "payments"} {
		agent.WaitLog(regexp.MustCompile(`msg="workload process policy" workload=shop/`+pod[role]+` mode=protect rules=[1-9]`), 1, 20*time.Second)
	}
	agent.WaitLog(regexp.MustCompile(`msg="process guard marked a workload root"`), 3, 20*time.Second)
	if out, err := exec("orders", "tool", "/tool"); err == nil || !strings.Contains(strings.ToLower(out), "operation not permitted") {
		t.Fatalf("unlearned /tool in protected orders: got %q, %v; want EPERM", out, err)
	}
	if out, err := exec("orders", "cat-1", "/server", "cat", secret); err != nil || out != "orders-secret\n" {
		t.Fatalf("learned /server in protected orders: got %q, %v", out, err)
	}
	waitEvent(t, cli, "process-denied of /tool in orders", func(e agentproto.Event) bool {
		return e.Kind == agentproto.EventExecDenied && e.Action == "deny" && e.Workload == orders && e.Path == "/tool"
	})

	doc := fmt.Sprintf(`apiVersion: palisade.dev/v1
kind: SecurityRule
metadata: {name: shop-secrets, namespace: shop}
spec:
  target:
    selector:
      name: shop-secrets
      criteria: [{key: app, op: "!=", value: payments}]
  file:
  - {filter: %s, behavior: blockAccess}
`, secret)
	cli("policy", "apply", "-f", writeFile(t, dir, "shop-secrets.yaml", doc))
	for _, role := range []string{"orders", "inventory"} {
		agent.WaitLog(regexp.MustCompile(`msg="file guard marked" workload=shop/`+pod[role]+` path=`+regexp.QuoteMeta(filepath.Dir(secret))+
			` root=/proc/\d+/root scope=0`), 1, 20*time.Second)
	}
	if out, err := exec("orders", "cat-2", "/server", "cat", secret); err == nil || !strings.Contains(strings.ToLower(out), "operation not permitted") {
		t.Fatalf("orders' open of its own secret: got %q, %v; want EPERM", out, err)
	}
	if out, err := exec("payments", "cat-3", "/server", "cat", secret); err != nil || out != "payments-secret\n" {
		t.Fatalf("payments' open of its own secret: got %q, %v", out, err)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "node-secret\n" {
		t.Fatalf("the node's open of its secret: got %q, %v", b, err)
	}
	if out, err := catInCgroup(t, dir, "/"+ctrNamespace+"/orders", secret); err != nil || out != "node-secret\n" {
		t.Fatalf("the node's secret opened by a process of orders' cgroup: got %q, %v", out, err)
	}
	waitEvent(t, cli, "file-denied of orders' secret", func(e agentproto.Event) bool {
		return e.Kind == agentproto.EventFileDenied && e.Action == "deny" && e.Workload == orders && e.Path == secret
	})
	var evs agents.EventList
	if err := json.Unmarshal([]byte(cli("event", "list", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if strings.HasPrefix(e.Kind, "file-") && e.Workload != orders {
			t.Errorf("file event outside orders: %+v", e)
		}
	}
}

// catInCgroup runs the node's copy of the images' server, moved into
// cgroup cg once started (an exec inside would meet the workload's
// process profile), to print file.
func catInCgroup(t *testing.T, dir, cg, file string) (string, error) {
	t.Helper()
	server := filepath.Join(dir, "server")
	if _, err := os.Stat(server); err != nil {
		b, err := os.ReadFile(filepath.Join(dir, "ctrserver"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(server, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(server, "cat-after-line", file)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	moved := os.WriteFile(filepath.Join(cgroupRoot, cg, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	in.Write([]byte("\n"))
	in.Close()
	err = cmd.Wait()
	if moved != nil {
		return "", fmt.Errorf("move into %s: %w", cg, moved)
	}
	return out.String(), err
}

// waitEvent waits for an event at the controller that match accepts.
func waitEvent(t *testing.T, cli func(...string) string, what string, match func(agentproto.Event) bool) {
	t.Helper()
	harness.Eventually(t, 20*time.Second, what, func() error {
		var evs agents.EventList
		if err := json.Unmarshal([]byte(cli("event", "list", "-o", "json")), &evs); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if match(e.Event) {
				return nil
			}
		}
		return fmt.Errorf("not among %d events", len(evs.Items))
	})
}

func slicesOfKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
