package console

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestNetworkMapLargeGraph opens the network page on flows joining 2,000
// groups in headless Chromium and uses the map: a blocked connection is
// drawn in red and its flows are listed when it is clicked, and a group
// found by name is selected.
func TestNetworkMapLargeGraph(t *testing.T) {
	const nodes = 2000
	hs := httptest.NewServer(syntheticAPI(t, 3, nodes))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(headless(t), 90*time.Second)
	defer cancel()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Steps(actions...)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	run("open the network page", chromedp.Navigate(hs.URL+"/ui/#/network"), chromedp.WaitVisible(chromedp.CSS(`#netmap[data-state="settled"]`)))
	info, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#netmap-info")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info, "2000 groups, 3998 connections, 42 with violations") {
		t.Errorf("map summary %q, want 2000 groups, 3998 connections, 42 with violations", info)
	}
	// grp-0001 -> grp-0000 is the first synthetic flow, blocked.
	type point struct {
		X, Y float64
		RGB  []int
	}
	p, err := chromedp.Run(ctx, chromedp.Evaluate[point](`(() => {
		const c = document.querySelector("#netmap"), m = c.netmap;
		m.focus("grp-0001"); m.select(null);
		const p = m.edgePoint("grp-0001", "grp-0000"), r = c.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
		const px = c.getContext("2d").getImageData(Math.round((p.x - r.left) * dpr), Math.round((p.y - r.top) * dpr), 1, 1).data;
		return {x: p.x, y: p.y, rgb: [px[0], px[1], px[2]]};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if p.RGB[0] < 150 || p.RGB[1] > 110 || p.RGB[2] > 110 {
		t.Errorf("the blocked edge grp-0001 -> grp-0000 is painted %v, want red", p.RGB)
	}
	run("click the blocked edge",
		chromedp.MouseClickXY(p.X, p.Y),
		chromedp.WaitVisible(chromedp.CSS(`#netmap-panel[data-selected="grp-0001>grp-0000"] #edge-flows`)),
	)
	panel, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#edge-flows")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(panel, "blocked 3") || !strings.Contains(panel, "ns1/w1") {
		t.Errorf("edge panel %q, want the blocked flow from ns1/w1", panel)
	}
	run("find a group",
		chromedp.SetValue(chromedp.CSS("#netmap-find"), "grp-1500"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#netmap-find").dispatchEvent(new Event("change"))`),
		chromedp.WaitVisible(chromedp.CSS(`#netmap-panel[data-selected="grp-1500"]`)),
	)
	// Zoomed out to the whole map, the map paints every node but only a
	// few names.
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(() => { const m = document.querySelector("#netmap").netmap; m.reset(); return +m.canvas.dataset.visibleNodes; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if shown != nodes {
		t.Errorf("fitted map paints %d nodes, want %d", shown, nodes)
	}
}
