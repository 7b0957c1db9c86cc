package digest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry runs a real in-process registry holding one image at
// HOST/app:1 and counts manifest requests.
func testRegistry(t *testing.T) (host, digest string, manifestCalls *atomic.Int64) {
	t.Helper()
	calls := &atomic.Int64{}
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			calls.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/app:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	calls.Store(0)
	return host, d.String(), calls
}

func newResolver(t *testing.T) *Resolver {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Insecure = true
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolve(t *testing.T) {
	host, want, calls := testRegistry(t)
	pinned := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name, image, want string
		err               error
	}{
		{"tag", host + "/app:1", want, nil},
		{"pinned", "nginx@" + pinned, pinned, nil},
		{"tag and digest", "nginx:1.25@" + pinned, pinned, nil},
		{"unknown tag", host + "/app:2", "", ErrUnresolved},
		{"unknown repository", host + "/nothing", "", ErrUnresolved},
		{"short digest", "nginx@sha256:abc", "", ErrBadReference},
		{"other algorithm", "nginx@md5:" + strings.Repeat("a", 32), "", ErrBadReference},
		{"upper-case digest", "nginx@sha256:" + strings.Repeat("AB", 32), "", ErrBadReference},
		{"spaces", "ngi nx", "", ErrBadReference},
		{"upper-case repository", host + "/App:1", "", ErrBadReference},
		{"empty", "", "", ErrBadReference},
		{"only colon", ":", "", ErrBadReference},
	}
	r := newResolver(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), tt.image)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.image, got, err, tt.want, tt.err)
			}
		})
	}
	// Asking again is answered from the cache, failures included.
	before := calls.Load()
	for _, img := range []string{host + "/app:1", host + "/app:2"} {
		if _, err := r.Resolve(context.Background(), img); err != nil && !errors.Is(err, ErrUnresolved) {
			t.Fatal(err)
		}
	}
	if n := calls.Load() - before; n != 0 {
		t.Errorf("%d registry calls for cached answers, want 0", n)
	}
}

func TestResolveExpiry(t *testing.T) {
	host, want, calls := testRegistry(t)
	r := newResolver(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	for _, step := range []struct {
		after     time.Duration
		wantCalls int64
	}{{0, 1}, {time.Minute, 1}, {r.cfg.TTL, 2}} {
		now = now.Add(step.after)
		if got, err := r.Resolve(context.Background(), host+"/app:1"); got != want || err != nil {
			t.Fatalf("Resolve = %q, %v", got, err)
		}
		if calls.Load() != step.wantCalls {
			t.Errorf("after %v: %d registry calls, want %d", step.after, calls.Load(), step.wantCalls)
		}
	}
}

// TestResolveShared checks that concurrent requests for one tag make one
// registry call, and that a waiter gives up when its own context ends.
func TestResolveShared(t *testing.T) {
	r := newResolver(t)
	release := make(chan struct{})
	var calls atomic.Int64
	r.head = func(ctx context.Context, ref name.Reference) (string, error) {
		calls.Add(1)
		<-release
		return "sha256:" + strings.Repeat("0", 64), nil
	}
	var wg sync.WaitGroup
	results := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := r.Resolve(context.Background(), "reg.example/app:1")
			results <- err
		})
	}
	// A waiter with a short deadline gives up without the answer.
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	_, err := r.Resolve(ctx, "reg.example/app:1")
	cancel()
	if !errors.Is(err, ErrUnresolved) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter past its deadline: %v", err)
	}
	close(release)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("shared resolve: %v", err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("%d registry calls, want 1", calls.Load())
	}
}

func TestCacheBound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEntries = 3
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.head = func(ctx context.Context, ref name.Reference) (string, error) {
		return "sha256:" + strings.Repeat("1", 64), nil
	}
	for i := range 10 {
		if _, err := r.Resolve(context.Background(), "reg.example/app:"+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.cache) > cfg.MaxEntries {
		t.Errorf("cache holds %d entries, limit %d", len(r.cache), cfg.MaxEntries)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.TTL = 0 },
		func(c *Config) { c.NegativeTTL = -1 },
		func(c *Config) { c.Timeout = 0 },
		func(c *Config) { c.MaxEntries = 0 },
	} {
		c := DefaultConfig()
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

func FuzzPinned(f *testing.F) {
	for _, s := range []string{"nginx", "a@sha256:" + strings.Repeat("0", 64), "a@", "@@", "a@sha256:zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, image string) {
		d, err := Pinned(image)
		if err == nil && d != "" && (len(d) != 71 || !strings.HasSuffix(image, d)) {
			t.Fatalf("Pinned(%q) = %q", image, d)
		}
	})
}
