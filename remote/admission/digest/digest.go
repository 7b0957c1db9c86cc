// Package digest resolves the image references of pod specs to manifest
// digests: a reference that pins a digest gives it at once; a tag is asked of
// its registry (a HEAD request for the manifest) and the answer is cached, so
// a busy webhook asks each registry once per tag per TTL and concurrent
// requests for one tag share one registry call.
package digest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Errors of Resolve.
var (
	// ErrBadReference is returned for a reference that cannot name an image.
	ErrBadReference = errors.New("digest: bad image reference")
	// ErrUnresolved is returned when the registry did not answer (in time).
	ErrUnresolved = errors.New("digest: cannot resolve tag")
)

// Config configures a Resolver.
type Config struct {
	// TTL is how long a resolved tag is trusted.
	TTL time.Duration
	// NegativeTTL is how long a failure is remembered before the registry
	// is asked again.
	NegativeTTL time.Duration
	// Timeout bounds one registry request.
	Timeout time.Duration
	// MaxEntries bounds the cache.
	MaxEntries int
	// Insecure allows plain-HTTP registries (loopback test registries).
	Insecure bool
	// Keychain finds registry credentials; nil is anonymous.
	Keychain authn.Keychain
	// Transport carries registry requests; nil is remote.DefaultTransport.
	Transport http.RoundTripper
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{TTL: 5 * time.Minute, NegativeTTL: 30 * time.Second, Timeout: 2 * time.Second, MaxEntries: 10000}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.TTL <= 0:
		return fmt.Errorf("digest: config: TTL %v must be positive", c.TTL)
	case c.NegativeTTL < 0:
		return fmt.Errorf("digest: config: negative TTL %v", c.NegativeTTL)
	case c.Timeout <= 0:
		return fmt.Errorf("digest: config: timeout %v must be positive", c.Timeout)
	case c.MaxEntries < 1:
		return fmt.Errorf("digest: config: max entries %d must be at least 1", c.MaxEntries)
	}
	return nil
}

// Resolver resolves and caches. It is safe for concurrent use and starts
// no goroutines.
type Resolver struct {
	cfg  Config
	now  func() time.Time
	head func(ctx context.Context, ref name.Reference) (string, error)

	mu      sync.Mutex
	cache   map[string]entry
	flights map[string]*flight
}

type entry struct {
	digest  string
	err     error
	expires time.Time
}

type flight struct {
	done   chan struct{}
	digest string
	err    error
}

// New builds a Resolver.
func New(cfg Config) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{cfg: cfg, now: time.Now, cache: map[string]entry{}, flights: map[string]*flight{}}
	opts := []remote.Option{}
	if cfg.Keychain != nil {
		opts = append(opts, remote.WithAuthFromKeychain(cfg.Keychain))
	}
	if cfg.Transport != nil {
		opts = append(opts, remote.WithTransport(cfg.Transport))
	}
	r.head = func(ctx context.Context, ref name.Reference) (string, error) {
		d, err := remote.Head(ref, append(opts, remote.WithContext(ctx))...)
		if err != nil {
			return "", err
		}
		return d.Digest.String(), nil
	}
	return r, nil
}

// Pinned returns the digest an image reference pins ("repo@sha256:..."),
// or "" when it names a tag only.
func Pinned(image string) (string, error) {
	_, d, ok := strings.Cut(image, "@")
	if !ok {
		return "", nil
	}
	if !strings.HasPrefix(d, "sha256:") || len(d) != 71 || strings.Trim(d[7:], "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: %q: digest is not sha256:<64 lower-case hex>", ErrBadReference, image)
	}
	return d, nil
}

// Resolve returns the digest of image: the pinned one, or the registry's
// answer for its tag (cached). It gives up when ctx ends; the registry call
// itself is bounded by Config.Timeout.
func (r *Resolver) Resolve(ctx context.Context, image string) (string, error) {
	if d, err := Pinned(image); d != "" || err != nil {
		return d, err
	}
	opts := []name.Option{name.StrictValidation}
	if r.cfg.Insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(image, opts...)
	if err != nil {
		// Kubernetes accepts references that are not strictly valid; try
		// the weak form before giving up.
		if ref, err = name.ParseReference(image, opts[1:]...); err != nil {
			return "", fmt.Errorf("%w: %q: %v", ErrBadReference, image, err)
		}
	}
	key := ref.Name()
	r.mu.Lock()
	if e, ok := r.cache[key]; ok && r.now().Before(e.expires) {
		r.mu.Unlock()
		return e.digest, e.err
	}
	if f, ok := r.flights[key]; ok {
		r.mu.Unlock()
		select {
		case <-f.done:
			return f.digest, f.err
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %s: %w", ErrUnresolved, key, ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	r.flights[key] = f
	r.mu.Unlock()

	hctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	d, err := r.head(hctx, ref)
	cancel()
	if err != nil {
		err = fmt.Errorf("%w: %s: %w", ErrUnresolved, key, err)
	}
	f.digest, f.err = d, err

	r.mu.Lock()
	delete(r.flights, key)
	// A caller that gave up says nothing about the registry: remember only
	// answers and registry failures.
	if ctx.Err() == nil {
		ttl := r.cfg.TTL
		if err != nil {
			ttl = r.cfg.NegativeTTL
		}
		r.store(key, entry{digest: d, err: err, expires: r.now().Add(ttl)})
	}
	r.mu.Unlock()
	close(f.done)
	return d, err
}

// store adds an entry, making room first when the cache is full.
func (r *Resolver) store(key string, e entry) {
	if len(r.cache) >= r.cfg.MaxEntries {
		now := r.now()
		for k, old := range r.cache {
			if !now.Before(old.expires) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < r.cfg.MaxEntries {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}

// Forget drops every cached answer (after a registry credential change, or
// in tests).
func (r *Resolver) Forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.cache)
}
