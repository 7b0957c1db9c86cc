package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/agents"
)

// shop is the coffee shop of TestAgentCoffeeShop with its controller and a
// real agent enforcing in its network namespaces.
type shop struct {
	net    *shopNet
	ctl    *harness.Controller
	cli    func(args ...string) string
	pw     string
	agents string
}

// startShop builds the shop's namespaces, servers and Redis, and starts a
// controller and an agent for it; the shop's traffic is learned in
// Discover before it returns.
func startShop(t *testing.T, dir, password string) *shop {
	t.Helper()
	n := newShopNet(t, "pal-ui", "pu", 233, shopRoles()...)
	serveShop(t, dir, n)

	ac := startAgentCluster(t, dir, "shop", password)
	c, cli, agentAddr, token := ac.ctl, ac.cli, ac.agentAddr, ac.token
	var wl strings.Builder
	for _, role := range []string{"orders", "payments", "inventory", "redis"} {
		fmt.Fprintf(&wl, "- {name: %s, namespace: shop, netns: %s, labels: {app: %s}}\n", role, n.ns[role], role)
	}
	wlFile := writeFile(t, dir, "workloads.yaml", wl.String())
	pinDir := fmt.Sprintf("/sys/fs/bpf/pal-e2e-console-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	agent := harness.Start(t, bin, dir, "agent", "agent", "--controller", agentAddr, "--token", token, "--node", "node1",
		"--data-dir", filepath.Join(dir, "agent"), "--workloads", wlFile, "--host-netns", n.node, "--pin-dir", pinDir)
	agent.WaitLog(regexp.MustCompile(`msg="agent ready"`), 1, 20*time.Second)
	agent.WaitLog(regexp.MustCompile(`msg="workload attached"`), 4, 20*time.Second)
	s := &shop{net: n, ctl: c, cli: cli, pw: password}
	harness.Eventually(t, 30*time.Second, "the shop's flows learned", func() error {
		if err := s.traffic(); err != nil {
			return err
		}
		var rules struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal([]byte(cli("rule", "list", "--learned", "-o", "json")), &rules); err != nil {
			return err
		}
		if len(rules.Items) < 4 {
			return fmt.Errorf("%d learned rules, want 4", len(rules.Items))
		}
		return nil
	})
	return s
}

// traffic makes the shop's usual requests once.
func (s *shop) traffic() error { return shopTraffic(s.net) }

// blockedFlow waits until the controller lists a flow from client to
// server with dropped connections.
func (s *shop) blockedFlow(t *testing.T, from, to string, poke func()) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, "a blocked flow "+from+" -> "+to, func() error {
		poke()
		var flows agents.FlowList
		if err := json.Unmarshal([]byte(s.cli("flow", "list", "-o", "json")), &flows); err != nil {
			return err
		}
		for _, f := range flows.Items {
			if f.Client == from && f.Server == to && f.Dropped > 0 {
				return nil
			}
		}
		return fmt.Errorf("no dropped flow %s -> %s among %d flows", from, to, len(flows.Items))
	})
}

// TestPrivilegedConsoleNetworkMap runs the coffee shop with a real agent
// and reads it in the console: the network map draws the shop's learned
// flows, and payments -> orders, blocked in Protect, as a red edge whose
// flows are listed when it is clicked; the events page finds the denial
// by filters and shows a new one without being reloaded.
func TestPrivilegedConsoleNetworkMap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and eBPF")
	}
	ctx := browser(t)
	dir := t.TempDir()
	s := startShop(t, dir, "shop-admin-password")
	n := s.net
	s.cli("mode", "set", "--all", "protect")
	s.blockedFlow(t, "shop/payments", "shop/orders", func() { httpGet(n.ns["payments"], n.ip["orders"]) })
	if err := s.traffic(); err != nil {
		t.Fatalf("learned flows in Protect: %v", err)
	}

	base := s.ctl.API
	run(t, ctx, "sign in", chromedp.Navigate(base+"/ui/#/login"), chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SetValue(chromedp.CSS("#username"), "admin"), chromedp.SetValue(chromedp.CSS("#password"), "shop-admin-password"),
		chromedp.Click(chromedp.CSS("#login")), chromedp.WaitVisible(chromedp.CSS(`#main[data-page="fleet"]`)))
	run(t, ctx, "network page", chromedp.Navigate(base+"/ui/#/network"), chromedp.WaitVisible(chromedp.CSS(`#netmap[data-state="settled"]`)))

	// The blocked connection is an edge drawn in red.
	type edgeInfo struct {
		From, To  string
		Violation bool
		X, Y      float64
		Red       []int
		// LearnedRed is whether orders -> payments, learned in
		// Discover and allowed, is drawn as a violation.
		LearnedRed bool
	}
	edge := get(t, ctx, "the payments -> orders edge", chromedp.Evaluate[edgeInfo](`(() => {
		const c = document.querySelector("#netmap"), m = c.netmap, g = m.g;
		const e = g.edges.find(e => g.nodes[e.s].name.includes("payments") && g.nodes[e.t].name.includes("orders") && e.records.some(f => f.client === "shop/payments" && f.server === "shop/orders"));
		if (!e) return {};
		const from = g.nodes[e.s].name, to = g.nodes[e.t].name, p = m.edgePoint(from, to), r = c.getBoundingClientRect();
		const dpr = window.devicePixelRatio || 1;
		const px = c.getContext("2d").getImageData(Math.round((p.x - r.left) * dpr), Math.round((p.y - r.top) * dpr), 1, 1).data;
		const learned = g.edges.find(e => e.records.some(f => f.client === "shop/orders" && f.server === "shop/payments"));
		return {from, to, violation: e.violation, x: p.x, y: p.y, red: [px[0], px[1], px[2]], learnedRed: !!learned?.violation};
	})()`))
	if edge.From == "" {
		t.Fatalf("the map has no edge for payments -> orders")
	}
	if !edge.Violation {
		t.Errorf("edge %s -> %s is not marked as a violation", edge.From, edge.To)
	}
	if len(edge.Red) != 3 || edge.Red[0] < 150 || edge.Red[1] > 110 || edge.Red[2] > 110 {
		t.Errorf("edge %s -> %s is painted %v at its middle, want red", edge.From, edge.To, edge.Red)
	}
	if edge.LearnedRed {
		t.Errorf("the learned, allowed orders -> payments edge is drawn as a violation; flows:\n%s\nevents:\n%s",
			s.cli("flow", "list", "-o", "json"), s.cli("event", "list", "-o", "json"))
	}
	info := get(t, ctx, "map summary", chromedp.Text(chromedp.CSS("#netmap-info")))
	if !strings.Contains(info, "with violations") || strings.Contains(info, " 0 with violations") {
		t.Errorf("map summary %q, want violations counted", info)
	}
	screenshot(t, ctx, "console-network-shop")

	// Clicking the edge lists its flows.
	run(t, ctx, "click the red edge",
		chromedp.MouseClickXY(edge.X, edge.Y),
		chromedp.WaitVisible(chromedp.CSS(`#netmap-panel[data-selected="`+edge.From+`>`+edge.To+`"]`)),
		waitText("#edge-flows", "shop/payments"),
		waitText("#edge-flows", "blocked"),
	)
	panel := get(t, ctx, "edge panel", chromedp.Text(chromedp.CSS("#netmap-panel")))
	for _, want := range []string{"shop/orders", "8080", "protect"} {
		if !strings.Contains(panel, want) {
			t.Errorf("edge panel lacks %q:\n%s", want, panel)
		}
	}
	screenshot(t, ctx, "console-network-edge")

	// The events page finds the denial by kind, group and verdict.
	run(t, ctx, "events page",
		chromedp.Navigate(base+"/ui/#/events"),
		chromedp.WaitVisible(chromedp.CSS("#ev-list")),
		chromedp.SetValue(chromedp.CSS("#ev-verdict"), "denied"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#ev-verdict").dispatchEvent(new Event("change"))`),
		chromedp.SetValue(chromedp.CSS("#ev-kind"), "network-violation"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#ev-kind").dispatchEvent(new Event("change"))`),
		chromedp.SendKeys(chromedp.CSS("#ev-text"), "payments"),
		waitText("#ev-list", "shop/payments → shop/orders"),
	)
	verdicts := get(t, ctx, "verdicts shown", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#ev-list li[data-verdict]")].map(li => li.dataset.verdict)`))
	for _, v := range verdicts {
		if v != "denied" {
			t.Errorf("filtered to denied, the page shows a %s event", v)
		}
	}
	// A new denial appears while the page stays open.
	run(t, ctx, "clear the group filter and mark the page",
		chromedp.SetValue(chromedp.CSS("#ev-text"), "inventory"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#ev-text").dispatchEvent(new Event("input")); document.querySelector("#ev-list").dataset.marker = "same page"`),
	)
	harness.Eventually(t, 30*time.Second, "payments -> inventory denied", func() error {
		if _, err := httpGet(n.ns["payments"], n.ip["inventory"]); err == nil {
			return fmt.Errorf("payments -> inventory passes in Protect")
		}
		return nil
	})
	run(t, ctx, "live update", waitText("#ev-list", "shop/payments → shop/inventory"))
	marker := get(t, ctx, "page not rebuilt", chromedp.Evaluate[string](`document.querySelector("#ev-list").dataset.marker || ""`))
	if marker != "same page" {
		t.Errorf("the events list was rebuilt by a navigation, not updated in place")
	}
	screenshot(t, ctx, "console-events-live")
}
