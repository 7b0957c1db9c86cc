package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// syntheticAPI answers the reads the fleet and network pages make, as a
// primary with n remotes whose agents saw flows between nodes groups, and
// serves the console for everything else.
func syntheticAPI(tb testing.TB, n, nodes int) http.Handler {
	c, err := New(DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	remotes := make([]map[string]any, n)
	for i := range remotes {
		remotes[i] = map[string]any{"name": fmt.Sprintf("cluster-%04d", i), "labels": map[string]string{"env": "prod", "region": fmt.Sprintf("r%d", i%7)},
			"connected": i%50 != 0, "healthy": i%50 != 0, "ackedRevision": 1000 - i%3, "lag": i % 3, "lastContact": now, "joinedAt": now}
	}
	status, _ := json.Marshal(map[string]any{"role": "primary", "name": "hq", "revision": 1000, "remotes": remotes})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/auth/whoami", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"user":"admin","role":"admin"}`))
	})
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"name":"hq","role":"primary","leader":"hq1","replicas":[],"revision":1000}`))
	})
	mux.HandleFunc("GET /v1/fed/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(status)
	})
	flows := syntheticFlows(nodes)
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) {
		limit, offset := 100, 0
		fmt.Sscan(r.URL.Query().Get("limit"), &limit)
		fmt.Sscan(r.URL.Query().Get("offset"), &offset)
		end := min(len(flows), offset+limit)
		page := []map[string]any{}
		if offset < len(flows) {
			page = flows[offset:end]
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"items": page, "total": len(flows), "limit": limit, "offset": offset})
	})
	mux.Handle("/", c)
	return mux
}

// syntheticFlows returns flow records between nodes groups: each group
// talks to a parent (a tree of services) and to one other group, and every
// 97th connection is blocked.
func syntheticFlows(nodes int) []map[string]any {
	var out []map[string]any
	now := time.Now().UTC()
	add := func(i, j int) {
		f := map[string]any{"client": fmt.Sprintf("ns%d/w%d", i%40, i), "server": fmt.Sprintf("ns%d/w%d", j%40, j),
			"clientGroups": []string{fmt.Sprintf("grp-%04d", i)}, "serverGroups": []string{fmt.Sprintf("grp-%04d", j)},
			"proto": 6, "port": 8080 + j%5, "app": "http", "mode": "protect", "flows": 1 + (i*j)%40, "node": "node1", "firstSeen": now, "lastSeen": now}
		if len(out)%97 == 0 {
			f["dropped"] = 3
		}
		out = append(out, f)
	}
	for i := 1; i < nodes; i++ {
		add(i, (i-1)/3)
		if j := (i*7 + 11) % nodes; j != i {
			add(i, j)
		}
	}
	return out
}

// headless starts a headless Chromium for tb, or skips when there is none.
func headless(tb testing.TB) context.Context {
	tb.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		tb.Skip("chromium is not installed")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.UserDataDir(tb.TempDir()), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 900))
	ctx, cancel := chromedp.NewContext(alloc)
	tb.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// BenchmarkFleetFirstPaint measures, in headless Chromium, the time from
// navigating to the console until the fleet table of a primary with 1,000
// remotes is on screen.
func BenchmarkFleetFirstPaint(b *testing.B) {
	const clusters = 1000
	hs := httptest.NewServer(syntheticAPI(b, clusters, 10))
	defer hs.Close()
	ctx := headless(b)
	if err := chromedp.Do(ctx, chromedp.Navigate(hs.URL+"/ui/")); err != nil {
		b.Fatal(err)
	}
	sel := chromedp.CSS(fmt.Sprintf(`#main[data-page="fleet"] table[data-rows="%d"]`, clusters+1))
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(hs.URL+"/ui/#/fleet"), chromedp.WaitVisible(sel))
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/visible")
	// The last navigation's own figures, from its start: the first rows of
	// the table in the page, and every row in it.
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.querySelector("table[data-complete]") !== null`)); err != nil {
		b.Fatal(err)
	}
	first, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("palisade-page-fleet")[0].startTime`))
	if err != nil {
		b.Fatal(err)
	}
	all, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("palisade-table-complete").pop().startTime`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(first, "ms/first-rows")
	b.ReportMetric(all, "ms/all-rows")
	if testing.Verbose() {
		entries, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(performance.getEntries().map(e => [e.name.replace(location.origin, ""), Math.round(e.startTime), Math.round(e.duration)]))`))
		b.Logf("timeline (name, start ms, duration ms): %s", entries)
	}
	text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#main")))
	if !strings.Contains(text, "cluster-0999") {
		b.Fatalf("fleet page lacks the last cluster")
	}
}

// BenchmarkNetworkMapFirstPaint measures, in headless Chromium, the network
// page of a cluster whose flows join 2,000 groups: from the start of the
// navigation to the map's first paint (flows read, graph built, laid out
// for a first frame and drawn), to a settled layout, and the cost of one
// redraw (what a pan or zoom step costs) and of one hit test (a click).
func BenchmarkNetworkMapFirstPaint(b *testing.B) {
	const nodes = 2000
	hs := httptest.NewServer(syntheticAPI(b, 3, nodes))
	defer hs.Close()
	ctx := headless(b)
	if err := chromedp.Do(ctx, chromedp.Navigate(hs.URL+"/ui/")); err != nil {
		b.Fatal(err)
	}
	drawn := chromedp.CSS(`#main[data-page="network"] canvas#netmap[data-state]`)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(hs.URL+"/ui/#/network"), chromedp.WaitVisible(drawn))
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/visible")
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.querySelector("#netmap[data-state=settled]") !== null`)); err != nil {
		b.Fatal(err)
	}
	mark := func(name string) float64 {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByName("`+name+`").pop().startTime`))
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return v
	}
	b.ReportMetric(mark("palisade-netmap-first-paint"), "ms/first-paint")
	b.ReportMetric(mark("palisade-netmap-settled"), "ms/settled")
	redraw, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => { const m = document.querySelector("#netmap").netmap;
		const t = performance.now(); for (let i = 0; i < 20; i++) { m.tx += 3; m.draw(); } return (performance.now() - t) / 20; })()`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(redraw, "ms/redraw")
	hit, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => { const m = document.querySelector("#netmap").netmap;
		const t = performance.now(); for (let i = 0; i < 20; i++) m.hit(100 + i * 30, 200 + i * 10); return (performance.now() - t) / 20; })()`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(hit, "ms/hit-test")
	info, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#netmap-info")))
	if !strings.Contains(info, fmt.Sprintf("%d groups", nodes)) {
		b.Fatalf("network page says %q, want %d groups", info, nodes)
	}
	if testing.Verbose() {
		entries, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(performance.getEntries().filter(e => e.entryType !== "resource" || e.name.includes("/ui/")).map(e => [e.name.replace(location.origin, ""), Math.round(e.startTime), Math.round(e.duration)]))`))
		b.Logf("timeline (name, start ms, duration ms): %s", entries)
		if dir := os.Getenv("PALISADE_BENCH_SHOTS"); dir != "" {
			if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
				os.WriteFile(filepath.Join(dir, "netmap-2000.png"), png, 0o644)
			}
		}
	}
}
