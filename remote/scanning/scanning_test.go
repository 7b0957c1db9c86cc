package scanning

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/palisade-sec/palisade/registryscan/scan"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/scanning/scanningtest"
	"github.com/palisade-sec/palisade/shared/store"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the registry clients.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		// memberlist lets a probe started before Shutdown wait out its
		// timeout after a replica of the 3-replica test is closed.
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		// hashicorp/raft does not wait for the connection handlers of its
		// TCP transport; they end when the peer's side closes.
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"),
	)
}

func vulndata(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "vulndata"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("shared vulndata missing: %v", err)
	}
	return dir
}

// openStore starts a real single-replica store on loopback.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	return storetest.Open(t, "s1")
}

func testConfig(t testing.TB, st *store.Store, cacheDir string) Config {
	cfg := DefaultConfig()
	cfg.Store = st
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.CacheDir = cacheDir
	cfg.Feed = vulndb.DirSource{Dir: filepath.Join(vulndata(t), "alpine-secdb")}
	cfg.Tick = 20 * time.Millisecond
	cfg.MinInterval = time.Second
	cfg.RetryBase = 20 * time.Millisecond
	cfg.RetryMax = 100 * time.Millisecond
	return cfg
}

// runModule runs a module until the test ends.
func runModule(t testing.TB, cfg Config) *Module {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return m
}

func putRegistry(t testing.TB, st *store.Store, reg Registry) {
	t.Helper()
	b, err := json.Marshal(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), PrefixRegistries+reg.Name, b); err != nil {
		t.Fatal(err)
	}
}

func getJSON(t testing.TB, st *store.Store, key string, v any) bool {
	t.Helper()
	kv, ok, _ := st.Get(key)
	if !ok {
		return false
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return true
}

func waitStatus(t testing.TB, st *store.Store, name string, done func(Status) bool) Status {
	t.Helper()
	var got Status
	scanningtest.WaitFor(t, 30*time.Second, "registry "+name+" scanned", func() error {
		if !getJSON(t, st, PrefixStatus+name, &got) || got.Finished.IsZero() || !done(got) {
			return fmt.Errorf("status %+v", got)
		}
		return nil
	})
	return got
}

// TestScheduleScanIndexAndNoSecondPull scans a registry on the leader: the
// result is stored as admission's verdict with the feed's CVEs, the ref
// index points at it, a second scan pulls nothing, and a restarted replica
// with a fresh store but the same cache dir pulls no layer either.
func TestScheduleScanIndexAndNoSecondPull(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	img := scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "one")
	digest := reg.Push(t, "apps/web:1.0", img)
	reg.Push(t, "other/db:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.3-r0", "two"))
	layers := scanningtest.LayerDigests(t, img)

	st := openStore(t)
	cacheDir := t.TempDir()
	cfg := testConfig(t, st, cacheDir)
	runModule(t, cfg)
	putRegistry(t, st, Registry{Name: "local", URL: "http://" + reg.Host, Filter: filter(t, "apps/*"), Interval: Duration(time.Hour)})

	s := waitStatus(t, st, "local", func(s Status) bool { return s.Scanned+s.Skipped+s.Failed == s.Images })
	if s.Images != 1 || s.Scanned != 1 || s.Error != "" {
		t.Fatalf("status %+v, want 1 image scanned", s)
	}
	kv, ok, _ := st.Get(PrefixResults + digest)
	if !ok {
		t.Fatalf("no result at %s", PrefixResults+digest)
	}
	v, err := verdict.Decode(kv.Value)
	if err != nil {
		t.Fatalf("admission cannot read the stored result: %v", err)
	}
	for _, cve := range []string{"CVE-2019-14904", "CVE-2019-14905"} {
		if !slices.Contains(v.CVEs, cve) {
			t.Errorf("verdict CVEs %v, want %s", v.CVEs, cve)
		}
	}
	var e RefEntry
	if !getJSON(t, st, PrefixRefs+reg.Host+"/apps/web:1.0", &e) || e.Digest != digest || e.Registry != "local" {
		t.Fatalf("ref index entry %+v, want digest %s", e, digest)
	}
	for _, l := range layers {
		if n := reg.BlobGets(l); n != 1 {
			t.Errorf("layer %s pulled %d times, want 1", l, n)
		}
	}

	// Scan now: the digest has a result, nothing is pulled.
	before := reg.TotalBlobGets()
	if _, err := st.Put(context.Background(), PrefixRequests+"local", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, st, "local", func(s2 Status) bool { return s2.Started.After(s.Started) && s2.Skipped == 1 })
	if got := reg.TotalBlobGets(); got != before {
		t.Errorf("a second scan downloaded %d blobs", got-before)
	}

	// A replica with a fresh store but the same cache dir pulls no layer.
	st2 := openStore(t)
	runModule(t, testConfig(t, st2, cacheDir))
	putRegistry(t, st2, Registry{Name: "local", URL: reg.Host, Insecure: true, Filter: filter(t, "apps/*"), Interval: Duration(time.Hour)})
	waitStatus(t, st2, "local", func(s Status) bool { return s.Scanned == 1 })
	for _, l := range layers {
		if n := reg.BlobGets(l); n != 1 {
			t.Errorf("after a restart layer %s pulled %d times, want 1", l, n)
		}
	}
	if _, ok, _ := st2.Get(PrefixResults + digest); !ok {
		t.Fatal("restarted replica stored no result")
	}
}

func filter(t testing.TB, s string) scan.Filter {
	t.Helper()
	f, err := ParseFilter(s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSkipFederatedDigests: a digest the primary already sent is never
// scanned here, and the ref index still resolves the tag.
func TestSkipFederatedDigests(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	digest := reg.Push(t, "apps/web:1.0", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "fed"))
	st := openStore(t)
	fedVerdict, _ := json.Marshal(verdict.Verdict{Digest: digest, Ref: "elsewhere/web:1.0", High: 2, ScannedAt: time.Now().UTC()})
	if _, err := st.Put(context.Background(), PrefixFederated+digest, fedVerdict); err != nil {
		t.Fatal(err)
	}
	m := runModule(t, testConfig(t, st, t.TempDir()))
	putRegistry(t, st, Registry{Name: "local", URL: reg.Host, Insecure: true, Interval: Duration(time.Hour)})
	s := waitStatus(t, st, "local", func(s Status) bool { return s.Images == 1 })
	if s.Skipped != 1 || s.Scanned != 0 {
		t.Fatalf("status %+v, want the image skipped", s)
	}
	if n := reg.TotalBlobGets(); n != 0 {
		t.Fatalf("%d blobs downloaded for a federated digest", n)
	}
	if _, ok, _ := st.Get(PrefixResults + digest); ok {
		t.Fatal("a local result was written for a federated digest")
	}
	if d, ok := m.ResolveRef(reg.Host + "/apps/web:1.0"); !ok || d != digest {
		t.Fatalf("ResolveRef = %q, %v; want %s", d, ok, digest)
	}
	rs := m.Results()
	if len(rs) != 1 || rs[0].Source != SourceFederated || rs[0].High != 2 {
		t.Fatalf("results %+v, want the federated verdict", rs)
	}
}

// TestRetryWithBackoff: an image whose manifest fails twice is retried,
// its failure recorded meanwhile, and scanned on the third attempt; an
// image that always fails is given up after MaxAttempts.
func TestRetryWithBackoff(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	flaky := reg.Push(t, "apps/flaky:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "flaky"))
	reg.Push(t, "apps/broken:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "broken"))
	// HEAD and GET both count: the flaky image's first three manifest
	// requests fail, so only a retry scans it.
	reg.FailManifests("apps/flaky", 3)
	reg.FailManifests("apps/broken", 1000)
	st := openStore(t)
	cfg := testConfig(t, st, t.TempDir())
	cfg.MaxAttempts = 3
	runModule(t, cfg)
	putRegistry(t, st, Registry{Name: "r", URL: reg.Host, Insecure: true, Interval: Duration(time.Hour)})
	s := waitStatus(t, st, "r", func(s Status) bool { return s.Scanned+s.Failed == 2 })
	if s.Scanned != 1 || s.Failed != 1 {
		t.Fatalf("status %+v, want 1 scanned and 1 failed", s)
	}
	if _, ok, _ := st.Get(PrefixResults + flaky); !ok {
		t.Fatal("the flaky image has no result")
	}
	var f Failure
	if getJSON(t, st, PrefixFailures+reg.Host+"/apps/flaky:1", &f) {
		t.Errorf("failure of the flaky image still recorded after success: %+v", f)
	}
	if !getJSON(t, st, PrefixFailures+reg.Host+"/apps/broken:1", &f) {
		t.Fatal("no failure recorded for the broken image")
	}
	if f.Attempts != 3 || !f.RetryAt.IsZero() || !strings.Contains(f.Error, "403") {
		t.Fatalf("failure %+v, want 3 attempts, no retry, the server's error", f)
	}
}

// TestFederatedRegistryNeedsPrimary: on a standalone cluster a federated
// registry is not scanned and says why.
func TestFederatedRegistryNeedsPrimary(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	reg.Push(t, "apps/web:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "x"))
	st := openStore(t)
	runModule(t, testConfig(t, st, t.TempDir()))
	putRegistry(t, st, Registry{Name: "f", URL: reg.Host, Insecure: true, Federated: true, Interval: Duration(time.Hour)})
	s := waitStatus(t, st, "f", func(Status) bool { return true })
	if !strings.Contains(s.Error, "primary") || reg.ManifestGets() != 0 {
		t.Fatalf("status %+v (manifest GETs %d), want a primary-only error and no traffic", s, reg.ManifestGets())
	}
}

func TestDispatchLeastLoaded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		slots []int
		loads []int
		n     int
		want  []int
	}{
		// Loads 2,0,1 -> 2,1,1 -> 2,2,1 -> 2,2,2 -> 3,2,2: ties go to
		// the first worker.
		{"one slot each", []int{1, 1, 1}, []int{2, 0, 1}, 5, []int{1, 1, 2, 0, 1}},
		// A remote worker with 4 slots takes 4 tasks for each one of an
		// in-process worker.
		{"load relative to slots", []int{1, 4}, []int{0, 0}, 6, []int{0, 1, 1, 1, 1, 0}},
		{"no worker", nil, nil, 2, []int{-1, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scheduler{}
			for i, n := range tc.slots {
				s.workers = append(s.workers, &slot{name: fmt.Sprint(i), slots: n, load: tc.loads[i], q: newQueue()})
			}
			var got []int
			for range tc.n {
				tk := &task{}
				s.dispatch(tk)
				got = append(got, slices.Index(s.workers, tk.worker))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("workers %v, want %v", got, tc.want)
			}
			if tc.slots == nil && len(s.pending) != tc.n {
				t.Fatalf("%d pending, want %d", len(s.pending), tc.n)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	c := Config{RetryBase: time.Second, RetryMax: 10 * time.Second}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second}, {5, 10 * time.Second}, {50, 10 * time.Second}} {
		if got := c.backoff(tc.n); got != tc.want {
			t.Errorf("backoff(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
}

// TestResultWriterBatches: results handed over together are written in as
// few revisions as ResultBatch allows, and nothing handed over is lost when
// the writer stops.
func TestResultWriterBatches(t *testing.T) {
	st := openStore(t)
	for _, tc := range []struct {
		name      string
		batch     int
		writes    int
		wantRevs  int
		flushWait time.Duration
	}{
		{"one batch", 300, 10, 1, time.Hour},
		{"split by size", 4, 8, 4, time.Hour}, // 2 ops per write, 4 ops per txn
		{"flushed by time", 300, 3, 1, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, st, t.TempDir())
			cfg.ResultBatch, cfg.ResultFlush = tc.batch, tc.flushWait
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			s := newScheduler(m)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.writeResults(ctx)
			}()
			prefix := "test/" + strings.ReplaceAll(tc.name, " ", "-") + "/"
			for i := range tc.writes {
				s.writes <- write{ops: []store.Op{
					{Type: store.OpPut, Key: fmt.Sprintf("%s%02d/a", prefix, i), Value: []byte("x")},
					{Type: store.OpPut, Key: fmt.Sprintf("%s%02d/b", prefix, i), Value: []byte("x")},
				}}
			}
			if tc.flushWait < time.Second {
				scanningtest.WaitFor(t, 10*time.Second, "flush by time", func() error {
					if kvs, _ := st.List(prefix); len(kvs) != 2*tc.writes {
						return fmt.Errorf("%d keys", len(kvs))
					}
					return nil
				})
			}
			cancel()
			<-done
			kvs, _ := st.List(prefix)
			revs := map[uint64]bool{}
			for _, kv := range kvs {
				revs[kv.ModRevision] = true
			}
			if len(kvs) != 2*tc.writes || len(revs) != tc.wantRevs {
				t.Fatalf("%d keys in %d revisions, want %d in %d", len(kvs), len(revs), 2*tc.writes, tc.wantRevs)
			}
		})
	}
}

// TestFeedUpdateRewritesResults: a feed that gains advisories re-matches
// the stored inventory and rewrites the image's result, pulling nothing.
func TestFeedUpdateRewritesResults(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	digest := reg.Push(t, "apps/web:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "feed"))
	feedDir := t.TempDir()
	// A first feed that says nothing about ansible.
	if err := os.WriteFile(filepath.Join(feedDir, "main.yaml"), []byte("distroversion: v3.11\nreponame: main\npackages: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	cfg := testConfig(t, st, t.TempDir())
	cfg.Feed = vulndb.DirSource{Dir: feedDir}
	m := runModule(t, cfg)
	putRegistry(t, st, Registry{Name: "r", URL: reg.Host, Insecure: true, Interval: Duration(time.Hour)})
	waitStatus(t, st, "r", func(s Status) bool { return s.Scanned == 1 })
	var v verdict.Verdict
	if !getJSON(t, st, PrefixResults+digest, &v) || len(v.CVEs) != 0 {
		t.Fatalf("result before the update %+v, want no advisories", v)
	}
	pulled := reg.TotalBlobGets()
	secdb, err := os.ReadFile(filepath.Join(vulndata(t), "alpine-secdb", "v3.11", "main.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(feedDir, "main.yaml"), secdb, 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := m.updater.Refresh(context.Background())
	if err != nil || !u.Changed || len(u.Changes) != 1 {
		t.Fatalf("refresh: %+v, %v; want one changed image", u, err)
	}
	scanningtest.WaitFor(t, 10*time.Second, "result rewritten", func() error {
		if !getJSON(t, st, PrefixResults+digest, &v) || !slices.Contains(v.CVEs, "CVE-2019-14904") {
			return fmt.Errorf("result %+v", v)
		}
		return nil
	})
	if got := reg.TotalBlobGets(); got != pulled {
		t.Fatalf("the feed update downloaded %d blobs", got-pulled)
	}
}

// TestNewLeaderResumesSchedule: a replica that starts leading keeps the
// previous leader's schedule: a registry scanned recently waits for its
// interval, one whose pass was cut short is scanned at once.
func TestNewLeaderResumesSchedule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		finished bool
		wantScan bool
	}{
		{"finished recently", true, false},
		{"cut short", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := scanningtest.NewRegistry(t)
			reg.Push(t, "apps/web:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", tc.name))
			st := openStore(t)
			putRegistry(t, st, Registry{Name: "r", URL: reg.Host, Insecure: true, Interval: Duration(time.Hour)})
			prev := Status{Started: time.Now().UTC().Add(-time.Minute), Replica: "old-leader"}
			if tc.finished {
				prev.Finished = prev.Started.Add(time.Second)
			}
			b, _ := json.Marshal(prev)
			if _, err := st.Put(context.Background(), PrefixStatus+"r", b); err != nil {
				t.Fatal(err)
			}
			runModule(t, testConfig(t, st, t.TempDir()))
			if tc.wantScan {
				waitStatus(t, st, "r", func(s Status) bool { return s.Replica == "s1" && s.Scanned == 1 })
				return
			}
			// Many scheduler ticks later, nothing was fetched.
			time.Sleep(time.Second)
			if n := reg.ManifestGets(); n != 0 {
				t.Fatalf("a registry scanned a minute ago was fetched %d times", n)
			}
		})
	}
}

// TestOnlyTheLeaderScans runs the module on every replica of a 3-replica
// store: only the leader scans; when it goes away, the new leader takes
// over the schedule and scans what is new.
func TestOnlyTheLeaderScans(t *testing.T) {
	reg := scanningtest.NewRegistry(t)
	reg.Push(t, "apps/a:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "a"))
	base := t.TempDir()
	var gossip0 string
	stores := make([]*store.Store, 3)
	for i := range stores {
		cfg := store.DefaultConfig()
		cfg.Name = fmt.Sprintf("s%d", i)
		cfg.DataDir = filepath.Join(base, cfg.Name)
		cfg.RaftAddr, cfg.GossipAddr, cfg.APIAddr = storetest.FreeAddr(t), storetest.FreeAddr(t), "127.0.0.1:1"
		cfg.BootstrapExpect = 3
		if i == 0 {
			gossip0 = cfg.GossipAddr
		} else {
			cfg.Join = []string{gossip0}
		}
		st, err := store.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = st
		t.Cleanup(func() { st.Close() })
	}
	leader := func(skip *store.Store) *store.Store {
		var l *store.Store
		scanningtest.WaitFor(t, 30*time.Second, "a leader", func() error {
			for _, st := range stores {
				if st != skip && st.IsLeader() {
					l = st
					return nil
				}
			}
			return fmt.Errorf("none")
		})
		return l
	}
	first := leader(nil)
	// Start scanning once every replica follows the same leader, so that
	// the first scan is not cut short by an election.
	scanningtest.WaitFor(t, 30*time.Second, "replicas agree on the leader", func() error {
		for _, st := range stores {
			if n, _ := st.Leader(); n != first.Name() {
				return fmt.Errorf("%s follows %q, not %s", st.Name(), n, first.Name())
			}
		}
		return nil
	})
	mods := map[*store.Store]*Module{}
	for _, st := range stores {
		mods[st] = runModule(t, testConfig(t, st, filepath.Join(base, st.Name()+"-cache")))
	}
	putRegistry(t, first, Registry{Name: "r", URL: reg.Host, Insecure: true, Interval: Duration(time.Hour)})
	s := waitStatus(t, first, "r", func(s Status) bool { return s.Scanned == 1 })
	// Leadership may move while the cluster settles; whichever replica
	// scanned, it is the only one that pulled anything.
	for st, m := range mods {
		if got := m.Stats().LayersPulled; (st.Name() == s.Replica) != (got > 0) {
			t.Errorf("replica %s pulled %d layers, but %s scanned", st.Name(), got, s.Replica)
		}
	}

	first = leader(nil)
	first.Close()
	next := leader(first)
	reg.Push(t, "apps/b:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "b"))
	if _, err := next.Put(context.Background(), PrefixRequests+"r", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	s2 := waitStatus(t, next, "r", func(s2 Status) bool { return s2.Started.After(s.Started) && s2.Images == 2 })
	if s2.Replica == first.Name() || s2.Scanned != 1 || s2.Skipped != 1 {
		t.Fatalf("after failover: status %+v, want a replica other than %s to scan the new image and skip the old", s2, first.Name())
	}
}
