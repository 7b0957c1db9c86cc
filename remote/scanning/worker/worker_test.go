package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/goleak"

	"github.com/palisade-sec/palisade/registryscan/vulndb"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/scanning"
	"github.com/palisade-sec/palisade/remote/scanning/scanningtest"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"),
	)
}

// controller is a single-replica scanning module with no in-process
// workers, serving its API over TLS from a test CA.
type controller struct {
	m    *scanning.Module
	st   *store.Store
	ca   *pki.CA
	addr string
	srv  *httptest.Server
}

func startController(t testing.TB) *controller {
	return startControllerWith(t, 0)
}

// startControllerWith runs the controller with workers in-process scan
// workers.
func startControllerWith(t testing.TB, workers int) *controller {
	t.Helper()
	gin.SetMode(gin.TestMode)
	vulnDir, err := filepath.Abs(filepath.Join("..", "..", "..", "..", "shared", "vulndata", "alpine-secdb"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vulnDir); err != nil {
		t.Fatalf("shared vulndata missing: %v", err)
	}
	ca, err := pki.NewCA("test cluster CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st := storetest.Open(t, "s1")
	cfg := scanning.DefaultConfig()
	cfg.Store, cfg.Logger, cfg.CacheDir = st, slog.New(slog.DiscardHandler), t.TempDir()
	cfg.Feed = vulndb.DirSource{Dir: vulnDir}
	cfg.CA = func() *pki.CA { return ca }
	cfg.Workers = workers
	cfg.Tick, cfg.MinInterval = 20*time.Millisecond, time.Second
	cfg.RetryBase, cfg.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	cfg.PollWait, cfg.WorkerTimeout = 300*time.Millisecond, time.Second
	m, err := scanning.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	e := gin.New()
	m.WithWorkerRoutes().Routes(scanningtest.Router{E: e})
	srv := httptest.NewUnstartedServer(e)
	leaf, err := ca.Issue(pki.LeafRequest{CommonName: "controller", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLSCertificate(ca)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("module: %v", err)
		}
	})
	return &controller{m: m, st: st, ca: ca, addr: srv.Listener.Addr().String(), srv: srv}
}

func (c *controller) token(t testing.TB) string {
	t.Helper()
	tok, err := c.m.CreateWorkerToken(context.Background(), time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// runWorker runs a worker until the returned stop is called (or the test
// ends).
func runWorker(t testing.TB, c *controller, name, token string, slots int, dataDir string) (*Worker, func() error) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Controllers, cfg.Token, cfg.Name, cfg.Slots, cfg.DataDir = []string{c.addr}, token, name, slots, dataDir
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.RetryMin, cfg.Heartbeat = 20*time.Millisecond, 200*time.Millisecond
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stopped := false
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	return w, stop
}

func putRegistry(t testing.TB, st *store.Store, reg scanning.Registry) {
	t.Helper()
	b, _ := json.Marshal(reg)
	if _, err := st.Put(context.Background(), scanning.PrefixRegistries+reg.Name, b); err != nil {
		t.Fatal(err)
	}
}

func waitStatus(t testing.TB, st *store.Store, name string, done func(scanning.Status) bool) scanning.Status {
	t.Helper()
	var got scanning.Status
	scanningtest.WaitFor(t, 30*time.Second, "registry "+name+" scanned", func() error {
		kv, ok, _ := st.Get(scanning.PrefixStatus + name)
		if !ok {
			return fmt.Errorf("no status")
		}
		if err := json.Unmarshal(kv.Value, &got); err != nil {
			return err
		}
		if got.Finished.IsZero() || !done(got) {
			return fmt.Errorf("status %+v", got)
		}
		return nil
	})
	return got
}

func connected(c *controller, names ...string) error {
	l := c.m.Workers()
	for _, n := range names {
		i := slices.IndexFunc(l, func(w scanning.WorkerInfo) bool { return w.Name == n })
		if i < 0 || !l[i].Connected || l[i].LastContact.IsZero() {
			return fmt.Errorf("worker %s not connected: %+v", n, l)
		}
	}
	return nil
}

// TestWorkersScanForTheController: a controller with no in-process worker
// and two remote workers (one slot each) scans a registry that needs
// basic auth: the credentials reach the workers with their jobs, the
// images are spread over both, the workers pull every layer and the
// controller none, the controller matches the inventories against its own
// feed and keeps the full reports, and a second pass pulls nothing.
func TestWorkersScanForTheController(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	var digests []string
	for i := range 4 {
		digests = append(digests, reg.Push(t, fmt.Sprintf("apps/app%d:1", i), scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", fmt.Sprint(i))))
	}
	reg.RequireBasicAuth("robot", "pw")
	c := startController(t)
	tok := c.token(t)
	dir := t.TempDir()
	w1, _ := runWorker(t, c, "w1", tok, 1, filepath.Join(dir, "w1"))
	w2, _ := runWorker(t, c, "w2", tok, 1, "")
	scanningtest.WaitFor(t, 10*time.Second, "both workers connected", func() error { return connected(c, "w1", "w2") })

	putRegistry(t, c.st, scanning.Registry{Name: "private", URL: "http://" + reg.Host, Auth: scanning.AuthBasic, Interval: scanning.Duration(time.Hour)})
	body, _ := json.Marshal(scanning.Credentials{Username: "robot", Password: "pw"})
	req, _ := http.NewRequest(http.MethodPut, "https://"+c.addr+"/v1/registries/private/credentials", bytes.NewReader(body))
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT credentials: %s", resp.Status)
	}
	s := waitStatus(t, c.st, "private", func(s scanning.Status) bool { return s.Scanned+s.Failed+s.Skipped == 4 && s.Images == 4 })
	if s.Scanned != 4 {
		t.Fatalf("status %+v, want 4 images scanned", s)
	}
	for _, d := range digests {
		kv, ok, _ := c.st.Get(scanning.PrefixResults + d)
		if !ok {
			t.Fatalf("no result for %s", d)
		}
		v, err := verdict.Decode(kv.Value)
		if err != nil || !slices.Contains(v.CVEs, "CVE-2019-14904") {
			t.Errorf("verdict of %s: %+v, %v; want the controller feed's CVE-2019-14904", d, v, err)
		}
	}
	if got := c.m.Stats().LayersPulled; got != 0 {
		t.Errorf("the controller pulled %d layers", got)
	}
	a, b := w1.Stats().LayersPulled, w2.Stats().LayersPulled
	if a+b != 4 || a == 0 || b == 0 {
		t.Errorf("workers pulled %d and %d layers, want 4 spread over both", a, b)
	}
	if got := reg.TotalBlobGets(); got > 4*2 {
		t.Errorf("%d blob downloads for 4 one-layer images", got)
	}
	// The full report is kept by the controller, matched there.
	req, _ = http.NewRequest(http.MethodGet, "https://"+c.addr+"/v1/scan/reports/"+digests[0], nil)
	resp, err = c.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Packages        []json.RawMessage `json:"packages"`
		Vulnerabilities []json.RawMessage `json:"vulnerabilities"`
	}
	json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(rep.Packages) != 1 || len(rep.Vulnerabilities) == 0 {
		t.Errorf("GET report: %s, %d packages, %d vulnerabilities", resp.Status, len(rep.Packages), len(rep.Vulnerabilities))
	}
	for _, wi := range c.m.Workers() {
		if !wi.Remote || !wi.Connected || wi.Slots != 1 || wi.ID == "" || wi.Enrolled.IsZero() {
			t.Errorf("worker %+v, want two connected remote workers with one slot", wi)
		}
	}

	// Scan again: every digest has a result, the workers pull nothing.
	before := reg.TotalBlobGets()
	if _, err := c.st.Put(context.Background(), scanning.PrefixRequests+"private", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c.st, "private", func(s2 scanning.Status) bool { return s2.Started.After(s.Started) && s2.Skipped == 4 })
	if got := reg.TotalBlobGets(); got != before {
		t.Errorf("a second pass downloaded %d blobs", got-before)
	}
	// The identity is kept: w1 restarts without a token.
	if _, err := os.Stat(filepath.Join(dir, "w1", "scanner.json")); err != nil {
		t.Errorf("identity not kept: %v", err)
	}
}

// TestLostWorkersJobIsRetriedElsewhere: a worker that takes a job and
// stops polling is counted as lost after the worker timeout; the job is
// retried on another worker and the registry is scanned.
func TestLostWorkersJobIsRetriedElsewhere(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	reg.Push(t, "apps/web:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "lost"))
	c := startController(t)
	tok := c.token(t)
	// A worker that enrols, takes one job and dies.
	e, err := c.m.Enroll(context.Background(), scanning.EnrollRequest{Token: tok, Name: "dies"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	putRegistry(t, c.st, scanning.Registry{Name: "r", URL: reg.Host, Insecure: true, Interval: scanning.Duration(time.Hour)})
	var taken scanning.PollResponse
	scanningtest.WaitFor(t, 10*time.Second, "the dying worker takes the list job", func() error {
		body, _ := json.Marshal(scanning.PollRequest{Slots: 1, Free: 1})
		req, _ := http.NewRequest(http.MethodPost, "https://"+c.addr+"/v1/scanners/poll", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.Credential)
		resp, err := c.srv.Client().Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&taken); err != nil {
			return err
		}
		if len(taken.Jobs) != 1 || taken.Jobs[0].Kind != scanning.JobList {
			return fmt.Errorf("%s: jobs %+v", resp.Status, taken.Jobs)
		}
		return nil
	})
	_, stop := runWorker(t, c, "lives", tok, 2, "")
	s := waitStatus(t, c.st, "r", func(s scanning.Status) bool { return s.Images == 1 && s.Scanned == 1 })
	if s.Error != "" {
		t.Fatalf("status %+v", s)
	}
	for _, wi := range c.m.Workers() {
		if wi.Name == "dies" && wi.Connected {
			t.Errorf("the dead worker still counts as connected: %+v", wi)
		}
	}
	// Its credential revoked, a worker stops with ErrRevoked.
	req, _ := http.NewRequest(http.MethodDelete, "https://"+c.addr+"/v1/scanners/lives", nil)
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE worker: %s", resp.Status)
	}
	var runErr error
	scanningtest.WaitFor(t, 10*time.Second, "the revoked worker stops", func() error {
		done := make(chan error, 1)
		go func() { done <- stop() }()
		select {
		case runErr = <-done:
			return nil
		case <-time.After(5 * time.Second):
			return fmt.Errorf("still running")
		}
	})
	if !errors.Is(runErr, ErrRevoked) && runErr != nil {
		t.Errorf("run: %v, want ErrRevoked or a clean stop", runErr)
	}
}

// TestEnrolRefusals: a bad token, a token for another CA, or a bad name
// is refused before anything is stored.
func TestEnrolRefusals(t *testing.T) {
	c := startController(t)
	tok := c.token(t)
	parsed, _ := scanning.ParseWorkerToken(tok)
	wrongSecret := parsed
	wrongSecret.Secret = parsed.ID + parsed.ID + parsed.ID + parsed.ID
	otherCA := parsed
	otherCA.CAFingerprint = parsed.Secret
	for _, tc := range []struct {
		name, token, worker, want string
	}{
		{"wrong secret", wrongSecret.String(), "w", "wrong secret"},
		{"pinned CA differs", otherCA.String(), "w", "does not hold the CA"},
		{"bad name", tok, "Bad Name", "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Controllers, cfg.Token, cfg.Name = []string{c.addr}, tc.token, tc.worker
			cfg.Logger = slog.New(slog.DiscardHandler)
			cfg.RetryMax = cfg.RetryMin
			w, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err = w.Run(ctx)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("run: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if n := len(c.m.Workers()); n != 0 {
		t.Fatalf("%d workers enrolled by refused attempts", n)
	}
}

// BenchmarkPass measures one pass over 20 new one-layer images by the
// controller's two in-process workers, and by one remote worker with two
// slots (poll, resolve, scan, gzip result, match and store on the
// controller): the cost of taking scans out of the controller.
func BenchmarkPass(b *testing.B) {
	for _, remote := range []bool{false, true} {
		b.Run(fmt.Sprintf("remote=%v", remote), func(b *testing.B) {
			var total time.Duration
			for i := range b.N {
				b.StopTimer()
				reg := scanningtest.NewRegistry(b)
				for j := range 20 {
					reg.Push(b, fmt.Sprintf("apps/app%d:1", j), scanningtest.AlpineImage(b, "3.11.6", "ansible", "2.9.2-r0", fmt.Sprint(i, j)))
				}
				workers := 2
				if remote {
					workers = 0
				}
				c := startControllerWith(b, workers)
				if remote {
					runWorker(b, c, "w", c.token(b), 2, "")
					scanningtest.WaitFor(b, 10*time.Second, "worker connected", func() error { return connected(c, "w") })
				}
				b.StartTimer()
				putRegistry(b, c.st, scanning.Registry{Name: "r", URL: reg.Host, Insecure: true, Interval: scanning.Duration(time.Hour)})
				s := waitStatus(b, c.st, "r", func(s scanning.Status) bool { return s.Scanned+s.Failed == 20 })
				b.StopTimer()
				if s.Scanned != 20 {
					b.Fatalf("status %+v", s)
				}
				total += s.Finished.Sub(s.Started)
			}
			// From the pass's start to its end as the status records them,
			// without the test's polling of the status.
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/pass")
		})
	}
}
