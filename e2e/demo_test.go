package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoSetUpAndTearDown runs make demo's script end to end with
// PALISADE_DEMO_EXIT=1 (set everything up, then clean up) and checks that
// it showed the fleet working and left no namespace, pinned eBPF object,
// process or temporary directory behind.
func TestDemoSetUpAndTearDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the demo needs root for network namespaces and eBPF")
	}
	for _, tool := range []string{"redis-server", "curl", "python3", "ip", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs it)", tool)
		}
	}
	root, _ := filepath.Abs("..")
	before, _ := filepath.Glob("/tmp/palisade-demo.*")
	// The demo builds the Palisade image (make image): a static build of
	// the binary the first time.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PALISADE_DEMO_EXIT=1", "PALISADE_DEMO_PORT_BASE=27400")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"Cluster hq is now the primary",
		"Joined primary hq as east",
		"Joined primary hq as west",
		"phase done",
		"Source:     federated",
		"inventory -> redis: +PONG",
		"learned.orders.shop     learned.payments.shop",
		"payments -> orders (never seen before): 000",
		"deny    protect   shop/payments   shop/orders",
		"Admin password:",
		"pushed 127.0.0.1:27490/palisade:",
		"-- hq, the Palisade image",
		"Ref:        127.0.0.1:27490/palisade:",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Nothing left behind.
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), "pal-demo-") {
		t.Errorf("network namespaces left behind:\n%s", ns)
	}
	if _, err := os.Stat("/sys/fs/bpf/palisade/pal-demo-node"); err == nil {
		t.Error("pinned eBPF objects left in /sys/fs/bpf/palisade/pal-demo-node")
	}
	if ps, _ := exec.Command("pgrep", "-af", "palisade-demo").Output(); len(strings.TrimSpace(string(ps))) > 0 {
		t.Errorf("processes left behind:\n%s", ps)
	}
	after, _ := filepath.Glob("/tmp/palisade-demo.*")
	if len(after) > len(before) {
		t.Errorf("temporary directories left behind: %v", after)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", text)
	}
}
