package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/fedserver/fedservertest"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/fedclient"
	"github.com/palisade-sec/palisade/remote/scanning"
	"github.com/palisade-sec/palisade/remote/scanning/scanningtest"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

// startScanCluster is startFedCluster of one replica with extra
// controller flags.
func startScanCluster(t *testing.T, dir, name, pw string, extra ...string) *fedCluster {
	t.Helper()
	// Its own admission webhook port: the admission module serves results
	// by digest from what it reads in the store.
	extra = append(extra, "--admission-addr", ports.Next(t))
	reps := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: name, Replicas: 1, PasswordFile: pw, Extra: extra})
	fc := &fedCluster{t: t, name: name, reps: reps, env: []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, name+".session")}}
	fc.cli(0, "login", "--api", reps[0].API, "--ca-file", reps[0].CAFile(), "--password-file", pw)
	fc.token = login(t, reps[0], "admin", "scan-admin-password")
	return fc
}

// scanResult runs `palisade scan result REF -o json` and decodes it; an
// error while the result has not arrived yet.
func (fc *fedCluster) scanResult(ref string) (scanning.Result, error) {
	args := []string{"scan", "result", ref, "-o", "json", "--api", fc.live().API, "--ca-file", fc.live().CAFile()}
	out, errOut, code := harness.CLI(fc.t, bin, fc.env, args...)
	if code != 0 {
		return scanning.Result{}, fmt.Errorf("exit %d: %s", code, strings.TrimSpace(errOut))
	}
	var r scanning.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return scanning.Result{}, fmt.Errorf("decode %q: %v", out, err)
	}
	return r, nil
}

func (fc *fedCluster) registryStatus(name string) (*scanning.Status, error) {
	var l scanning.RegistryList
	if err := fc.do("GET", "/v1/registries", nil, &l); err != nil {
		return nil, err
	}
	for _, r := range l.Items {
		if r.Name == name {
			if r.Status == nil || r.Status.Finished.IsZero() {
				return nil, fmt.Errorf("registry %s: no finished scan yet (%+v)", name, r.Status)
			}
			return r.Status, nil
		}
	}
	return nil, fmt.Errorf("no registry %s", name)
}

// alpineSecDB is the shared Alpine advisory data the scanning tests give
// the controller's --vulndb.
func alpineSecDB(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "shared", "vulndata", "alpine-secdb"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("shared vulndata missing: %v", err)
	}
	return dir
}

// TestFederatedRegistryScan runs a primary and two remotes as real
// processes and a real registry in this process: a federated registry is
// scanned once by the primary, both remotes get the result by digest with
// the federated stream, every layer is pulled exactly once, and a remote
// that configures the same registry itself pulls nothing.
func TestFederatedRegistryScan(t *testing.T) {
	vulnDir := alpineSecDB(t)
	reg := scanningtest.NewRegistry(t)
	img := scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "e2e")
	digest := reg.Push(t, "apps/web:1.0", img)
	reg.Push(t, "infra/skipped:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.3-r0", "filtered out"))
	layers := scanningtest.LayerDigests(t, img)
	ref := reg.Host + "/apps/web:1.0"

	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "scan-admin-password")
	hq := startScanCluster(t, dir, "hq", pw, "--vulndb", vulnDir)
	east := startScanCluster(t, dir, "east", pw, "--vulndb", vulnDir)
	west := startScanCluster(t, dir, "west", pw, "--vulndb", vulnDir)

	// A federated registry on a standalone cluster is refused.
	_, errOut := hq.cli(1, "registry", "add", "hub", "http://"+reg.Host, "--fed")
	if !strings.Contains(errOut, "not a primary") {
		t.Fatalf("federated registry on a standalone cluster: %q", errOut)
	}

	hq.cli(0, "fed", "promote")
	tok, _ := hq.cli(0, "fed", "token", "create", "--ttl", "10m")
	tok = strings.TrimSpace(tok)
	east.cli(0, "fed", "join", "--token", tok)
	west.cli(0, "fed", "join", "--token", tok)
	harness.Eventually(t, 30*time.Second, "both remotes connected", func() error {
		st := hq.status()
		if len(st.Remotes) != 2 || !st.Remotes[0].Connected || !st.Remotes[1].Connected {
			return fmt.Errorf("remotes %+v", st.Remotes)
		}
		return nil
	})

	hq.cli(0, "registry", "add", "hub", "http://"+reg.Host, "--filter", "apps/*", "--fed", "--interval", "1h")
	for _, fc := range []*fedCluster{east, west} {
		var got scanning.Result
		harness.Eventually(t, 60*time.Second, fc.name+" has the federated result", func() error {
			r, err := fc.scanResult(ref)
			got = r
			return err
		})
		if got.Digest != digest || got.Source != scanning.SourceFederated {
			t.Fatalf("%s: result %+v, want digest %s from the primary", fc.name, got, digest)
		}
		for _, cve := range []string{"CVE-2019-14904", "CVE-2019-14905"} {
			if !slices.Contains(got.CVEs, cve) {
				t.Errorf("%s: advisories %v, want %s", fc.name, got.CVEs, cve)
			}
		}
		// By digest too, through the CLI and GET /v1/scan/results/DIGEST.
		if r, err := fc.scanResult(digest); err != nil || r.Digest != digest {
			t.Errorf("%s: scan result by digest: %+v, %v", fc.name, r, err)
		}
		var v struct {
			Digest string   `json:"digest"`
			CVEs   []string `json:"cves"`
		}
		// The admission module serves it from its index, which follows
		// the store.
		harness.Eventually(t, 15*time.Second, fc.name+" serves the result by digest", func() error {
			if err := fc.do("GET", "/v1/scan/results/"+digest, nil, &v); err != nil {
				return err
			}
			if v.Digest != digest || !slices.Contains(v.CVEs, "CVE-2019-14904") {
				return fmt.Errorf("got %+v", v)
			}
			return nil
		})
	}
	st, err := hq.registryStatus("hub")
	if err != nil {
		t.Fatal(err)
	}
	if st.Images != 1 || st.Scanned != 1 {
		t.Fatalf("primary's scan status %+v, want one image scanned", st)
	}
	out, _ := hq.cli(0, "scan", "result", ref)
	if !strings.Contains(out, digest) || !strings.Contains(out, "CVE-2019-14904") {
		t.Fatalf("primary's scan result:\n%s", out)
	}
	// The primary scanned it, so it has the full report; a remote has the
	// verdict only.
	out, _ = hq.cli(0, "scan", "result", ref, "--full")
	if !strings.Contains(out, "ansible") || !strings.Contains(out, "2.9.3-r0") {
		t.Fatalf("primary's full report:\n%s", out)
	}
	if _, errOut := east.cli(1, "scan", "result", ref, "--full"); !strings.Contains(errOut, "verdict only") {
		t.Fatalf("full report on a remote: %q", errOut)
	}
	for _, l := range layers {
		if n := reg.BlobGets(l); n != 1 {
			t.Errorf("layer %s pulled %d times, want 1", l, n)
		}
	}
	pulled := reg.TotalBlobGets()

	// A remote that configures the same registry itself skips the digest
	// the primary sent, and a scan now on the primary pulls nothing.
	east.cli(0, "registry", "add", "mirror", reg.Host, "--insecure", "--filter", "apps/*:1.*")
	harness.Eventually(t, 60*time.Second, "east scanned its registry", func() error {
		st, err := east.registryStatus("mirror")
		if err != nil {
			return err
		}
		if st.Images != 1 || st.Skipped != 1 {
			return fmt.Errorf("status %+v, want the one image skipped", st)
		}
		return nil
	})
	hq.cli(0, "registry", "scan", "hub")
	harness.Eventually(t, 60*time.Second, "hq scanned again", func() error {
		st2, err := hq.registryStatus("hub")
		if err != nil {
			return err
		}
		if !st2.Started.After(st.Started) || st2.Skipped != 1 {
			return fmt.Errorf("status %+v", st2)
		}
		return nil
	})
	if got := reg.TotalBlobGets(); got != pulled {
		t.Fatalf("blobs downloaded after the first scan: %d, want 0", got-pulled)
	}
	out, _ = east.cli(0, "registry", "list")
	if !strings.Contains(out, "mirror") || !strings.Contains(out, "local") {
		t.Fatalf("registry list on east:\n%s", out)
	}
	east.cli(0, "registry", "delete", "mirror")
	_, errOut = east.cli(1, "registry", "scan", "mirror")
	if !strings.Contains(errOut, "no registry") {
		t.Fatalf("scan of a deleted registry: %q", errOut)
	}

	// Deleting the federated registry withdraws its results from the
	// stream: both remotes drop them; the primary keeps its own verdict.
	hq.cli(0, "registry", "delete", "hub")
	for _, fc := range []*fedCluster{east, west} {
		harness.Eventually(t, 30*time.Second, fc.name+" dropped the withdrawn result", func() error {
			r, err := fc.scanResult(digest)
			if err == nil {
				return fmt.Errorf("still has %+v", r)
			}
			if !strings.Contains(err.Error(), "no scan result") {
				return err
			}
			return nil
		})
	}
	if r, err := hq.scanResult(digest); err != nil || r.Source != scanning.SourceLocal {
		t.Fatalf("primary's own result after the delete: %+v, %v", r, err)
	}
}

// resultApplier is a simulated remote's applier: it decodes every
// federated scan result as admission's index would and counts the digests
// it holds, in memory (a real remote writes them to its Raft store). With
// decode false it only counts keys, to tell the transport's cost from the
// remotes' decoding.
type resultApplier struct {
	mu      sync.Mutex
	applied uint64
	have    map[string]bool
	want    int
	decode  bool
	done    chan struct{}
	bad     error
}

func newResultApplier(want int, decode bool) *resultApplier {
	return &resultApplier{have: map[string]bool{}, want: want, decode: decode, done: make(chan struct{})}
}

func (a *resultApplier) put(key string, value []byte) {
	if !strings.HasPrefix(key, "scan/") {
		return
	}
	if a.decode {
		if _, err := verdict.Decode(value); err != nil && a.bad == nil {
			a.bad = fmt.Errorf("%s: %w", key, err)
		}
	}
	a.have[key] = true
	if len(a.have) == a.want {
		close(a.done)
	}
}

func (a *resultApplier) Apply(_ context.Context, d fedproto.Delta) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d.Revision <= a.applied {
		return nil
	}
	for _, op := range d.Ops {
		if op.Kind == fedproto.OpPut && !a.have[op.Key] {
			a.put(op.Key, op.Value)
		}
	}
	a.applied = d.Revision
	return nil
}

func (a *resultApplier) ApplySnapshot(_ context.Context, s fedproto.Snapshot) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, o := range s.Objects {
		if !a.have[o.Key] {
			a.put(o.Key, o.Value)
		}
	}
	a.applied = s.Revision
	return nil
}

func (a *resultApplier) Applied() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

// benchVerdict is the stored result of a scanned image with a typical
// handful of findings.
func benchVerdict(i int) (string, []byte) {
	sum := sha256.Sum256([]byte(fmt.Sprint("image ", i)))
	d := "sha256:" + hex.EncodeToString(sum[:])
	v := verdict.Verdict{Digest: d, Ref: fmt.Sprintf("registry.example.com/team%d/app:%d", i%50, i), High: 2, HighWithFix: 2, Medium: 3, Low: 1,
		CVEs: []string{"CVE-2019-14904", "CVE-2019-14905", "CVE-2020-1733", "CVE-2020-1735", "CVE-2020-1739", "GHSA-xxxx-yyyy-zzzz"}, ScannedAt: time.Now().UTC()}
	b, _ := json.Marshal(v)
	return d, b
}

// BenchmarkScanResultsToRemotes measures the distribution of 10,000
// federated scan results to 100 remotes: a real federation server (QUIC,
// mutual TLS, in-memory log) and 100 real federation clients in this
// process. The primary commits the results batch at a time: batch=75 is
// what the scanning scheduler commits when results come faster than its
// flush interval (ResultBatch 300 operations, four per federated image),
// batch=1 one revision per image. The figure is the time from the first
// commit until every remote holds every result.
func BenchmarkScanResultsToRemotes(b *testing.B) {
	for _, batch := range []int{1, 75} {
		for _, decode := range []bool{true, false} {
			b.Run(fmt.Sprintf("batch=%d/decode=%v", batch, decode), func(b *testing.B) { benchResultsToRemotes(b, batch, decode) })
		}
	}
}

func benchResultsToRemotes(b *testing.B, batch int, decode bool) {
	const results, remotes = 10000, 100
	ca, err := pki.NewCA("bench primary ca", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	key, err := jointoken.NewKey()
	if err != nil {
		b.Fatal(err)
	}
	log, members := fedservertest.NewLog(), fedservertest.NewMembers()
	scfg := fedserver.DefaultConfig()
	scfg.Addr, scfg.CA, scfg.ServerNames = "127.0.0.1:0", ca, []string{"127.0.0.1"}
	scfg.TokenKey, scfg.Tokens, scfg.Members, scfg.Log = key.Public(), fedservertest.NewTokens(), members, log
	srv, err := fedserver.New(scfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := srv.Run(ctx); err != nil {
			b.Errorf("server: %v", err)
		}
	})
	for srv.Addr() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	// Each iteration distributes a fresh set of results, so every remote
	// needs a new applier per iteration; they are swapped in through one
	// level of indirection.
	appliers := make([]*resultApplier, remotes)
	var swap sync.Mutex
	for i := range remotes {
		name := fmt.Sprintf("r%03d", i)
		k, keyPEM, err := pki.NewKey()
		if err != nil {
			b.Fatal(err)
		}
		leaf, err := ca.Issue(pki.LeafRequest{CommonName: name, Organization: "remote", Client: true, Validity: time.Hour, PublicKey: k.Public()})
		if err != nil {
			b.Fatal(err)
		}
		if err := members.Add(ctx, fedserver.Member{Name: name, CertFingerprint: pki.Fingerprint(leaf.Cert)}); err != nil {
			b.Fatal(err)
		}
		appliers[i] = newResultApplier(1, decode)
		ccfg := fedclient.DefaultConfig()
		ccfg.Identity = &fedclient.Identity{Name: name, CertPEM: leaf.CertPEM, KeyPEM: keyPEM, CAPEM: ca.CertPEM, Addrs: []string{srv.Addr().String()}}
		ccfg.Applier = &swappable{mu: &swap, a: &appliers[i]}
		c, err := fedclient.New(ccfg)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { c.Run(ctx) })
	}
	// Every remote connected and holding the seed.
	log.Put("scan/seed", mustJSON(verdict.Verdict{Digest: "sha256:" + strings.Repeat("0", 64)}))
	waitAll(b, appliers, time.Minute)

	var total time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		swap.Lock()
		for i := range appliers {
			old := appliers[i]
			appliers[i] = newResultApplier(results, decode)
			appliers[i].applied = old.Applied()
		}
		swap.Unlock()
		ops := make([]fedproto.Op, results)
		for i := range ops {
			d, v := benchVerdict(n*results + i)
			ops[i] = fedproto.Op{Kind: fedproto.OpPut, Key: "scan/" + d, Value: v}
		}
		b.StartTimer()
		t0 := time.Now()
		for i := 0; i < len(ops); i += batch {
			log.Commit(ops[i:min(i+batch, len(ops))]...)
		}
		waitAll(b, appliers, 5*time.Minute)
		total += time.Since(t0)
	}
	b.StopTimer()
	for _, a := range appliers {
		if a.bad != nil {
			b.Fatalf("a remote could not decode a result: %v", a.bad)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-all-remotes")
	b.ReportMetric(float64(results*remotes)*float64(b.N)/total.Seconds(), "results/s")
	b.ReportMetric(0, "ns/op")
}

// swappable lets the benchmark replace a client's applier between
// iterations.
type swappable struct {
	mu *sync.Mutex
	a  **resultApplier
}

func (s *swappable) cur() *resultApplier {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.a
}

func (s *swappable) Apply(ctx context.Context, d fedproto.Delta) error { return s.cur().Apply(ctx, d) }
func (s *swappable) ApplySnapshot(ctx context.Context, snap fedproto.Snapshot) error {
	return s.cur().ApplySnapshot(ctx, snap)
}
func (s *swappable) Applied() uint64 { return s.cur().Applied() }

func waitAll(b *testing.B, as []*resultApplier, timeout time.Duration) {
	b.Helper()
	deadline := time.After(timeout)
	for i, a := range as {
		select {
		case <-a.done:
		case <-deadline:
			a.mu.Lock()
			n := len(a.have)
			a.mu.Unlock()
			b.Fatalf("remote %d holds %d of %d results after %s", i, n, a.want, timeout)
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// TestScannerWorkers runs a controller with no in-process scan workers
// and two `palisade scanner` processes against a registry served by this
// test: the images are spread over both workers, a worker killed in the
// middle of an image is restarted and the job it held is retried, every
// result is queryable with `palisade scan result`, and the controller
// itself never pulled a layer.
func TestScannerWorkers(t *testing.T) {
	vulnDir := alpineSecDB(t)
	reg := scanningtest.NewRegistry(t)
	refs := map[string]string{}
	for _, repo := range []string{"apps/a", "apps/b", "apps/c", "apps/held"} {
		refs[reg.Host+"/"+repo+":1"] = reg.Push(t, repo+":1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", repo))
	}
	release := reg.Hold("apps/held")
	defer release()

	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "scan-admin-password")
	fc := startScanCluster(t, dir, "solo", pw, "--vulndb", vulnDir, "--scan-workers", "0")
	tok, _ := fc.cli(0, "scanner", "token", "create", "--ttl", "10m")
	tok = strings.TrimSpace(tok)
	host := strings.TrimPrefix(fc.reps[0].API, "https://")
	workers := map[string]*harness.Proc{}
	for _, n := range []string{"scanner-a", "scanner-b"} {
		workers[n] = harness.Start(t, bin, dir, n, "scanner", "--controller", host, "--token", tok, "--workers", "1",
			"--name", n, "--data-dir", filepath.Join(dir, n))
	}
	harness.Eventually(t, 30*time.Second, "both scanner workers connected", func() error {
		out, errOut, code := harness.CLI(t, bin, fc.env, "scanner", "list", "-o", "json")
		if code != 0 {
			return fmt.Errorf("exit %d: %s", code, errOut)
		}
		var l scanning.WorkerList
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return err
		}
		n := 0
		for _, w := range l.Items {
			if w.Remote && w.Connected && !w.LastContact.IsZero() {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("workers %+v", l.Items)
		}
		return nil
	})

	fc.cli(0, "registry", "add", "local", "http://"+reg.Host, "--interval", "1h")
	// One worker is now stuck in the middle of apps/held; kill it there.
	var holder string
	harness.Eventually(t, 30*time.Second, "a worker is pulling apps/held", func() error {
		if reg.Holding() == 0 {
			return fmt.Errorf("no held download")
		}
		for n, p := range workers {
			if strings.Contains(p.Log(), "apps/held:1") {
				holder = n
				return nil
			}
		}
		return fmt.Errorf("no worker log names apps/held")
	})
	workers[holder].Kill()
	release()
	workers[holder].Restart()

	harness.Eventually(t, 90*time.Second, "every image scanned", func() error {
		st, err := fc.registryStatus("local")
		if err != nil {
			return err
		}
		if st.Images != 4 || st.Scanned != 4 || st.Failed != 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if !regexp.MustCompile(`job lost by scanner worker.*` + holder + `.*apps/held:1`).MatchString(fc.reps[0].Log()) {
		t.Errorf("the controller did not count %s's job as lost:\n%s", holder, fc.reps[0].Log())
	}
	for n, p := range workers {
		if !strings.Contains(p.Log(), "scanned image") {
			t.Errorf("%s scanned no image: the jobs were not spread", n)
		}
	}
	for ref, digest := range refs {
		r, err := fc.scanResult(ref)
		if err != nil || r.Digest != digest || r.Source != scanning.SourceLocal || !slices.Contains(r.CVEs, "CVE-2019-14904") {
			t.Errorf("scan result %s: %+v, %v; want %s with the controller feed's CVE-2019-14904", ref, r, err, digest)
		}
	}
	// Workers return inventories; the controller keeps reports, no layer.
	layers, err := os.ReadDir(filepath.Join(fc.reps[0].DataDir, "scancache", "layers"))
	if err != nil || len(layers) != 0 {
		t.Errorf("controller layer cache: %d entries, %v; want none", len(layers), err)
	}
	out, _ := fc.cli(0, "scanner", "list")
	if !strings.Contains(out, "scanner-a") || !strings.Contains(out, "scanner-b") || !strings.Contains(out, "remote") {
		t.Errorf("scanner list:\n%s", out)
	}
}

// TestScannerWorkerFollowsLeader runs a three-replica controller cluster
// with no in-process scan workers and one `palisade scanner` given every
// replica, a follower first: its jobs reach the leader through the
// follower; when the leader is killed, the worker goes on with the new
// leader's scheduler, which scans a new image and skips the known one.
func TestScannerWorkerFollowsLeader(t *testing.T) {
	vulnDir := alpineSecDB(t)
	reg := scanningtest.NewRegistry(t)
	reg.Push(t, "apps/one:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "one"))
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "scan-admin-password")
	reps := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: "ha", Replicas: 3, PasswordFile: pw,
		Extra: []string{"--vulndb", vulnDir, "--scan-workers", "0"}})
	fc := &fedCluster{t: t, name: "ha", reps: reps, env: []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, "ha.session")}}
	fc.cli(0, "login", "--api", reps[0].API, "--ca-file", reps[0].CAFile(), "--password-file", pw)
	fc.token = login(t, reps[0], "admin", "scan-admin-password")
	leader := func() (*harness.Controller, error) {
		var cl api.Cluster
		if err := fc.do("GET", "/v1/cluster", nil, &cl); err != nil {
			return nil, err
		}
		for _, r := range reps {
			if exited, _ := r.Exited(); r.Name == cl.Leader && !exited {
				return r, nil
			}
		}
		return nil, fmt.Errorf("no running leader (cluster says %q)", cl.Leader)
	}
	var lead *harness.Controller
	harness.Eventually(t, 30*time.Second, "a leader", func() (err error) { lead, err = leader(); return err })
	var hosts []string
	for _, r := range reps {
		if r != lead {
			hosts = append(hosts, strings.TrimPrefix(r.API, "https://"))
		}
	}
	hosts = append(hosts, strings.TrimPrefix(lead.API, "https://"))
	tok, _ := fc.cli(0, "scanner", "token", "create")
	w := harness.Start(t, bin, dir, "scanner", "scanner", "--controller", strings.Join(hosts, ","), "--token", strings.TrimSpace(tok),
		"--name", "scanner", "--data-dir", filepath.Join(dir, "scanner"))

	fc.cli(0, "registry", "add", "local", "http://"+reg.Host, "--interval", "1h")
	var first *scanning.Status
	harness.Eventually(t, 60*time.Second, "the first image scanned through a follower", func() (err error) {
		if first, err = fc.registryStatus("local"); err == nil && first.Scanned != 1 {
			err = fmt.Errorf("status %+v", first)
		}
		return err
	})
	if first.Replica != lead.Name {
		t.Fatalf("pass run by %s, want the leader %s", first.Replica, lead.Name)
	}

	lead.Kill()
	reg.Push(t, "apps/two:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "two"))
	requested := false
	var second *scanning.Status
	harness.Eventually(t, 90*time.Second, "the new leader's scheduler scans with the same worker", func() error {
		if !requested {
			// A new leader keeps the previous one's schedule: ask for a
			// pass (refused while the election runs).
			if _, errOut, code := harness.CLI(t, bin, fc.env, "registry", "scan", "local", "--api", fc.live().API, "--ca-file", fc.live().CAFile()); code != 0 {
				return fmt.Errorf("registry scan: %s", errOut)
			}
			requested = true
		}
		st, err := fc.registryStatus("local")
		if err != nil {
			return err
		}
		if !st.Started.After(first.Started) || st.Images != 2 {
			return fmt.Errorf("no new pass yet (last %+v)", st)
		}
		second = st
		return nil
	})
	if second.Scanned != 1 || second.Skipped != 1 || second.Replica == lead.Name {
		t.Fatalf("pass after the failover %+v, want the new image scanned and the known one skipped by a new leader", second)
	}
	if _, err := fc.scanResult(reg.Host + "/apps/two:1"); err != nil {
		t.Fatalf("result of the image scanned after the failover: %v", err)
	}
	if n := strings.Count(w.Log(), "scanned image"); n != 2 {
		t.Errorf("the worker scanned %d images, want 2:\n%s", n, w.Log())
	}
}
