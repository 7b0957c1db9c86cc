package admission

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/remote/admission/audit"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
)

// benchRules writes n admission rules of mixed criteria, none of which
// matches the benchmark's pod, so every request evaluates all of them.
func benchRules(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: palisade.dev/v1\nkind: AdmissionRule\nmetadata: {name: bench}\nspec:\n  rules:\n")
	for i := range n {
		var crit string
		switch i % 8 {
		case 0:
			crit = fmt.Sprintf(`[{name: namespace, op: "=", value: "team-%d"}, {name: cveCriticalCount, op: ">", value: "0"}]`, i)
		case 1:
			crit = fmt.Sprintf(`[{name: image, op: containsAny, value: "registry.example/team-%d/*"}]`, i)
		case 2:
			crit = fmt.Sprintf(`[{name: labels, op: containsAny, value: "team=t%d,tier=forbidden-%d"}]`, i, i)
		case 3:
			crit = fmt.Sprintf(`[{name: cveHighCount, op: ">", value: "%d"}]`, 50+i)
		case 4:
			crit = fmt.Sprintf(`[{name: cveNames, op: containsAny, value: "CVE-2099-%d"}]`, i)
		case 5:
			crit = fmt.Sprintf(`[{name: imageRegistry, op: "=", value: "blocked-%d.example"}]`, i)
		case 6:
			crit = fmt.Sprintf(`[{name: namespace, op: regex, value: "^forbidden-%d-.*$"}, {name: runAsRoot, op: "=", value: "true"}]`, i)
		case 7:
			crit = fmt.Sprintf(`[{name: annotations, op: containsAny, value: "audit-%d"}, {name: envVarSecrets, op: "=", value: "true"}]`, i)
		}
		fmt.Fprintf(&b, "  - name: rule-%03d\n    action: deny\n    criteria: %s\n", i, crit)
	}
	return b.String()
}

// BenchmarkWebhookLatency offers AdmissionReviews at a fixed rate over
// HTTPS on loopback (open loop: each request is sent at its scheduled time
// whatever the previous ones did, and latency counts from that time) to a
// webhook with 200 rules, and reports p50/p99/max latency. Run with
// -benchtime 1x; each rate runs for benchDuration.
func BenchmarkWebhookLatency(b *testing.B) {
	const benchDuration = 10 * time.Second
	for _, rate := range []int{100, 500} {
		b.Run(fmt.Sprintf("rules=200/rate=%d", rate), func(b *testing.B) {
			e := startBench(b)
			body := podReview("bench", "shop", `{"containers":[{"name":"app","image":"`+cleanImage+`","env":[{"name":"MODE","value":"prod"}]},`+
				`{"name":"sidecar","image":"`+vulnImage+`","securityContext":{"runAsUser":1000}}],"initContainers":[{"name":"init","image":"`+cleanImage+`"}]}`)
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool()}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}}
			send := func() error {
				resp, err := client.Post(e.url, "application/json", strings.NewReader(body))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || !strings.Contains(string(raw), `"allowed":true`) {
					return fmt.Errorf("status %d: %s", resp.StatusCode, raw)
				}
				return nil
			}
			// Warm up connections and caches.
			for range 50 {
				if err := send(); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				n := int(benchDuration.Seconds()) * rate
				interval := time.Second / time.Duration(rate)
				lat := make([]time.Duration, n)
				var wg sync.WaitGroup
				var errMu sync.Mutex
				var firstErr error
				start := time.Now()
				for i := range n {
					at := start.Add(time.Duration(i) * interval)
					time.Sleep(time.Until(at))
					wg.Go(func() {
						if err := send(); err != nil {
							errMu.Lock()
							firstErr = err
							errMu.Unlock()
						}
						lat[i] = time.Since(at)
					})
				}
				wg.Wait()
				if firstErr != nil {
					b.Fatal(firstErr)
				}
				slices.Sort(lat)
				q := func(p float64) float64 { return float64(lat[int(float64(n-1)*p)].Microseconds()) / 1000 }
				b.ReportMetric(q(0.50), "p50-ms")
				b.ReportMetric(q(0.99), "p99-ms")
				b.ReportMetric(q(1), "max-ms")
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
				// The webhook's own view: from reading the request to the
				// answer, as recorded in the audit events.
				evs, err := e.w.audit.List(audit.Filter{Since: start, Limit: audit.MaxLimit})
				if err != nil || len(evs) == 0 {
					b.Fatalf("audit events: %d, %v", len(evs), err)
				}
				srv := make([]int64, len(evs))
				for i, ev := range evs {
					srv[i] = ev.LatencyMicros
				}
				slices.Sort(srv)
				b.ReportMetric(float64(srv[len(srv)/2])/1000, "server-p50-ms")
				b.ReportMetric(float64(srv[(len(srv)-1)*99/100])/1000, "server-p99-ms")
			}
		})
	}
}

// startBench is start for benchmarks: same webhook, 200 rules, verdicts.
func startBench(b *testing.B) *env {
	e := startTB(b, nil)
	e.putVerdict(verdict.Verdict{Digest: vulnDigest, Critical: 0, High: 3, CVEs: []string{"CVE-2024-3094"}})
	e.putVerdict(verdict.Verdict{Digest: cleanDigest})
	e.putRules(PrefixRules, "bench", benchRules(200))
	if r := e.w.rules.Load(); r.Count != 200 {
		b.Fatalf("%d rules loaded (problems %v), want 200", r.Count, r.Problems)
	}
	return e
}

// BenchmarkHandler measures the CPU cost of one decision with 200 rules,
// without the network: decode, evaluate, audit, encode.
func BenchmarkHandler(b *testing.B) {
	e := startBench(b)
	h := e.w.Handler()
	body := podReview("bench", "shop", `{"containers":[{"name":"app","image":"`+cleanImage+`"},{"name":"sidecar","image":"`+vulnImage+`"}],"initContainers":[{"name":"init","image":"`+cleanImage+`"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathValidate, strings.NewReader(body)))
		if rec.Code != 200 {
			b.Fatal(rec.Body.String())
		}
	}
}
