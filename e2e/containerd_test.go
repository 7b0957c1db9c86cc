package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
// Discover and an unlearned flow is dropped in Protect; a stopped
// container's workload disappears.
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
	ref, digest := map[string]string{}, map[string]string{}
	for _, role := range roles {
		ref[role] = "palisade.test/shop/" + role + ":1"
		var archive string
		archive, digest[role] = serverImage(t, dir, server, ref[role], role)
		ctrd.importImage(archive)
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

	// A stopped container's workload disappears from the agent and the
	// controller.
	ctrd.stop("inventory")
	agent.WaitLog(regexp.MustCompile(`msg="workload removed" workload=shop/`+pod["inventory"]), 1, 20*time.Second)
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

func slicesOfKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
