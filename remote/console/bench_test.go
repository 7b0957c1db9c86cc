package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// syntheticAPI answers the reads the fleet page makes, as a primary with n
// remotes, and serves the console for everything else.
func syntheticAPI(b *testing.B, n int) http.Handler {
	c, err := New(DefaultConfig())
	if err != nil {
		b.Fatal(err)
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
	mux.Handle("/", c)
	return mux
}

// BenchmarkFleetFirstPaint measures, in headless Chromium, the time from
// navigating to the console until the fleet table of a primary with 1,000
// remotes is on screen.
func BenchmarkFleetFirstPaint(b *testing.B) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		b.Skip("chromium is not installed")
	}
	const clusters = 1000
	hs := httptest.NewServer(syntheticAPI(b, clusters))
	defer hs.Close()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.UserDataDir(b.TempDir()), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1400, 900))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
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
