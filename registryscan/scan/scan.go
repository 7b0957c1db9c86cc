// Package scan scans container images for vulnerable packages and secrets:
// one image by reference or from a tarball, or every image of a registry
// whose repository and tag match a filter. Registries and images are read
// only through go-containerregistry; layers are streamed, never written to
// disk. Layer inventories are cached by layer digest and reports by image
// digest, so an unchanged digest is never pulled twice, and a feed update
// re-matches stored inventories without pulling anything.
package scan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

// Log field names.
const (
	logRef    = "ref"
	logDigest = "digest"
	logLayer  = "layer"
)

// Errors.
var (
	ErrIndexTooDeep  = errors.New("scan: image index nesting too deep")
	ErrNoPlatform    = errors.New("scan: no image for the platform in the index")
	ErrNotAnImage    = errors.New("scan: manifest is neither an image nor an index")
	ErrTooManyLayers = errors.New("scan: too many layers")
)

// Config configures a Scanner.
type Config struct {
	// Inventory bounds the analysis of each layer.
	Inventory inventory.Config
	// Insecure allows plain-HTTP (and self-signed) registries.
	Insecure bool
	// Keychain resolves registry credentials (basic or token auth); nil
	// means anonymous access.
	Keychain authn.Keychain
	// Transport is the HTTP transport for registries; nil means
	// remote.DefaultTransport.
	Transport http.RoundTripper
	// Platform picks the image from a multi-platform index ("linux/amd64").
	Platform string
	// AllPlatforms scans every image of an index instead of Platform's.
	AllPlatforms bool
	// MaxIndexDepth is how deep indexes may nest (an index of indexes).
	MaxIndexDepth int
	// MaxLayers is the most layers one image may have.
	MaxLayers int
	// ImageTimeout bounds the scan of one image.
	ImageTimeout time.Duration
	// Workers is how many images a registry scan analyses at once.
	Workers int
}

// DefaultConfig scans linux/amd64, allows two levels of index nesting, 256
// layers and 10 minutes per image, two images at a time.
func DefaultConfig() Config {
	return Config{Inventory: inventory.DefaultConfig(), Platform: "linux/amd64", MaxIndexDepth: 2,
		MaxLayers: 256, ImageTimeout: 10 * time.Minute, Workers: 2}
}

// Validate reports a setting out of range.
func (c Config) Validate() error {
	if err := c.Inventory.Validate(); err != nil {
		return err
	}
	if _, err := v1.ParsePlatform(c.Platform); err != nil || c.Platform == "" {
		return fmt.Errorf("scan: Platform %q: want os/arch[/variant]", c.Platform)
	}
	switch {
	case c.MaxIndexDepth < 1:
		return fmt.Errorf("scan: MaxIndexDepth %d must be at least 1", c.MaxIndexDepth)
	case c.MaxLayers < 1:
		return fmt.Errorf("scan: MaxLayers %d must be at least 1", c.MaxLayers)
	case c.ImageTimeout <= 0:
		return fmt.Errorf("scan: ImageTimeout %v must be positive", c.ImageTimeout)
	case c.Workers < 1:
		return fmt.Errorf("scan: Workers %d must be at least 1", c.Workers)
	}
	return nil
}

// Stats count what scans did; they only grow.
type Stats struct {
	// LayersPulled counts layers fetched and analysed; LayerBytes the
	// uncompressed bytes read from them.
	LayersPulled, LayerBytes int64
	// LayerCacheHits and ImageCacheHits count answers from the cache.
	LayerCacheHits, ImageCacheHits int64
}

// Scanner scans images. It is safe for concurrent use.
type Scanner struct {
	cfg      Config
	log      *slog.Logger
	cache    Cache
	analyzer *inventory.Analyzer
	platform *v1.Platform
	db       atomic.Pointer[vulndb.DB]
	// flights makes concurrent scans of one layer share one pull.
	mu      sync.Mutex
	flights map[string]*flight

	layersPulled, layerBytes, layerHits, imageHits atomic.Int64
}

type flight struct {
	done chan struct{}
	l    *inventory.Layer
	err  error
}

// New builds a Scanner that matches against db (which may be nil: no
// vulnerabilities until SetDB) and caches in cache (nil: a MemCache).
func New(cfg Config, db *vulndb.DB, cache Cache, log *slog.Logger) (*Scanner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	an, err := inventory.NewAnalyzer(cfg.Inventory)
	if err != nil {
		return nil, err
	}
	p, _ := v1.ParsePlatform(cfg.Platform)
	if cache == nil {
		cache = NewMemCache()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Scanner{cfg: cfg, log: log, cache: cache, analyzer: an, platform: p, flights: map[string]*flight{}}
	s.db.Store(db)
	return s, nil
}

// SetDB replaces the feed used for matching from now on.
func (s *Scanner) SetDB(db *vulndb.DB) { s.db.Store(db) }

// DB returns the feed in use.
func (s *Scanner) DB() *vulndb.DB { return s.db.Load() }

// Stats returns the counters.
func (s *Scanner) Stats() Stats {
	return Stats{LayersPulled: s.layersPulled.Load(), LayerBytes: s.layerBytes.Load(),
		LayerCacheHits: s.layerHits.Load(), ImageCacheHits: s.imageHits.Load()}
}

func (s *Scanner) nameOpts() []name.Option {
	if s.cfg.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

func (s *Scanner) remoteOpts(ctx context.Context) []remote.Option {
	return s.remoteOptsAuth(ctx, nil)
}

// remoteOptsAuth is remoteOpts with auth in place of the Keychain when
// auth is not nil.
func (s *Scanner) remoteOptsAuth(ctx context.Context, auth authn.Authenticator) []remote.Option {
	return RemoteOptions(ctx, s.cfg, auth)
}

// RemoteOptions are the go-containerregistry options of one registry
// access under cfg: auth when not nil, else cfg's Keychain, and cfg's
// Transport.
func RemoteOptions(ctx context.Context, cfg Config, auth authn.Authenticator) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx)}
	if auth != nil {
		opts = append(opts, remote.WithAuth(auth))
	} else if cfg.Keychain != nil {
		opts = append(opts, remote.WithAuthFromKeychain(cfg.Keychain))
	}
	if cfg.Transport != nil {
		opts = append(opts, remote.WithTransport(cfg.Transport))
	}
	return opts
}

// ScanImage scans the image ref names. For a multi-platform index it scans
// the configured platform's image, or with AllPlatforms every image, and
// returns one report per image.
func (s *Scanner) ScanImage(ctx context.Context, ref string) ([]*report.Report, error) {
	return s.ScanImageAuth(ctx, ref, nil)
}

// ScanImageAuth is ScanImage with credentials for this one scan (a
// registry's basic or bearer credentials) in place of the configured
// Keychain; nil auth uses the Keychain.
func (s *Scanner) ScanImageAuth(ctx context.Context, ref string, auth authn.Authenticator) ([]*report.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ImageTimeout)
	defer cancel()
	r, err := name.ParseReference(ref, s.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", ref, err)
	}
	desc, err := remote.Get(r, s.remoteOptsAuth(ctx, auth)...)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return s.scanDescriptor(ctx, ref, r.Context(), desc, 0, auth)
}

func (s *Scanner) scanDescriptor(ctx context.Context, ref string, repo name.Repository, desc *remote.Descriptor, depth int, auth authn.Authenticator) ([]*report.Report, error) {
	switch {
	case desc.MediaType.IsIndex():
		if depth >= s.cfg.MaxIndexDepth {
			return nil, fmt.Errorf("image %s: %w (more than %d levels at %s)", ref, ErrIndexTooDeep, s.cfg.MaxIndexDepth, desc.Digest)
		}
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("image %s: index %s: %w", ref, desc.Digest, err)
		}
		var out []*report.Report
		for _, m := range im.Manifests {
			if m.Digest == desc.Digest {
				return nil, fmt.Errorf("image %s: index %s lists itself", ref, desc.Digest)
			}
			if !m.MediaType.IsIndex() && !m.MediaType.IsImage() {
				continue // attestations, signatures and other artefacts
			}
			if m.MediaType.IsImage() && !s.cfg.AllPlatforms && (m.Platform == nil || !m.Platform.Satisfies(*s.platform)) {
				continue
			}
			child := repo.Digest(m.Digest.String())
			cd, err := remote.Get(child, s.remoteOptsAuth(ctx, auth)...)
			if err != nil {
				return nil, fmt.Errorf("image %s: manifest %s: %w", ref, m.Digest, err)
			}
			reps, err := s.scanDescriptor(ctx, ref, repo, cd, depth+1, auth)
			if err != nil {
				return nil, err
			}
			for _, r := range reps {
				if r.IndexDigest == "" {
					r.IndexDigest = desc.Digest.String()
				}
			}
			out = append(out, reps...)
			if !s.cfg.AllPlatforms && len(out) > 0 {
				break
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("image %s: %w %s (%s)", ref, ErrNoPlatform, desc.Digest, s.cfg.Platform)
		}
		return out, nil
	case desc.MediaType.IsImage():
		if r, ok := s.cached(ctx, desc.Digest.String(), ref); ok {
			return []*report.Report{r}, nil
		}
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		r, err := s.scan(ctx, ref, desc.Digest.String(), img)
		if err != nil {
			return nil, err
		}
		return []*report.Report{r}, nil
	}
	return nil, fmt.Errorf("image %s: %w (media type %q)", ref, ErrNotAnImage, desc.MediaType)
}

// ScanTarball scans an image saved with "docker save" (or crane/ko
// tarball output). tag picks an image from a multi-image tarball; "" takes
// the only one.
func (s *Scanner) ScanTarball(ctx context.Context, path, tag string) (*report.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ImageTimeout)
	defer cancel()
	var t *name.Tag
	if tag != "" {
		tt, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("tarball %s: %w", path, err)
		}
		t = &tt
	}
	img, err := tarball.ImageFromPath(path, t)
	if err != nil {
		return nil, fmt.Errorf("tarball %s: %w", path, err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("tarball %s: %w", path, err)
	}
	if r, ok := s.cached(ctx, d.String(), path); ok {
		return r, nil
	}
	return s.scan(ctx, path, d.String(), img)
}

// ScanImageValue scans an image already at hand (from a layout, a daemon,
// or built in memory) under the name ref.
func (s *Scanner) ScanImageValue(ctx context.Context, ref string, img v1.Image) (*report.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ImageTimeout)
	defer cancel()
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if r, ok := s.cached(ctx, d.String(), ref); ok {
		return r, nil
	}
	return s.scan(ctx, ref, d.String(), img)
}

// cached returns the stored report of digest, re-matched if the feed has
// changed since it was matched.
func (s *Scanner) cached(ctx context.Context, digest, ref string) (*report.Report, bool) {
	r, ok, err := s.cache.Report(ctx, digest)
	if err != nil {
		s.log.Warn("read report cache", logDigest, digest, "err", err)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	s.imageHits.Add(1)
	r.Ref = ref
	if db := s.db.Load(); db != nil && db.Digest() != r.FeedDigest {
		s.match(r)
		if err := s.cache.PutReport(ctx, r); err != nil {
			s.log.Warn("write report cache", logDigest, digest, "err", err)
		}
	}
	return r, true
}

func (s *Scanner) match(r *report.Report) {
	db := s.db.Load()
	r.MatchedAt = time.Now().UTC()
	if db == nil {
		r.Vulnerabilities, r.FeedDigest = []vulndb.Finding{}, ""
		return
	}
	r.Vulnerabilities = db.MatchPackages(r.OS, r.Packages)
	r.FeedDigest = db.Digest()
}

func (s *Scanner) scan(ctx context.Context, ref, digest string, img v1.Image) (*report.Report, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	if len(layers) > s.cfg.MaxLayers {
		return nil, fmt.Errorf("image %s: %w (%d, limit %d)", ref, ErrTooManyLayers, len(layers), s.cfg.MaxLayers)
	}
	r := &report.Report{Digest: digest, Ref: ref, ScannedAt: time.Now().UTC()}
	if cf, err := img.ConfigFile(); err == nil && cf != nil {
		r.Platform = cf.OS + "/" + cf.Architecture
		if cf.Variant != "" {
			r.Platform += "/" + cf.Variant
		}
	}
	invs := make([]*inventory.Layer, 0, len(layers))
	for _, l := range layers {
		inv, err := s.layer(ctx, l)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		invs = append(invs, inv)
		r.Layers = append(r.Layers, inv.Digest)
	}
	im := inventory.Merge(invs)
	r.OS, r.Packages, r.Secrets, r.Notes = im.OS, im.Packages, im.Secrets, im.Notes
	s.match(r)
	if err := s.cache.PutReport(ctx, r); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	s.log.Info("scanned image", logRef, ref, logDigest, digest, "packages", len(r.Packages), "vulnerabilities", len(r.Vulnerabilities))
	cp := *r
	return &cp, nil
}

// layer returns the inventory of one layer, from the cache or by pulling
// and analysing it; concurrent requests for one digest share one pull.
func (s *Scanner) layer(ctx context.Context, l v1.Layer) (*inventory.Layer, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, fmt.Errorf("layer digest: %w", err)
	}
	digest := d.String()
	if inv, ok, err := s.cache.Layer(ctx, digest); err == nil && ok {
		s.layerHits.Add(1)
		return inv, nil
	}
	s.mu.Lock()
	if f, ok := s.flights[digest]; ok {
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.l, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	s.flights[digest] = f
	s.mu.Unlock()
	f.l, f.err = s.pull(ctx, digest, l)
	s.mu.Lock()
	delete(s.flights, digest)
	s.mu.Unlock()
	close(f.done)
	return f.l, f.err
}

func (s *Scanner) pull(ctx context.Context, digest string, l v1.Layer) (*inventory.Layer, error) {
	mt, err := l.MediaType()
	if err == nil && !isLayerMediaType(mt) {
		return nil, fmt.Errorf("layer %s: unsupported media type %q", digest, mt)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	defer rc.Close()
	ur, closeFn, err := decompress(rc)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	defer closeFn()
	cr := &countReader{r: ur}
	s.layersPulled.Add(1)
	inv, err := s.analyzer.Layer(ctx, digest, cr)
	s.layerBytes.Add(cr.n)
	if err != nil {
		return nil, err
	}
	s.log.Debug("analysed layer", logLayer, digest, "bytes", cr.n, "packages", len(inv.Packages))
	if err := s.cache.PutLayer(ctx, inv); err != nil {
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	return inv, nil
}

// decompress sniffs the blob's compression (gzip, zstd or none) and
// returns a reader of the tar stream. It uses klauspost/compress, about
// twice as fast as the standard library's gzip on layer blobs.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, nil, fmt.Errorf("read blob: %w", err)
	}
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := kgzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

func isLayerMediaType(mt types.MediaType) bool {
	switch mt {
	case types.DockerLayer, types.DockerForeignLayer, types.DockerUncompressedLayer,
		types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer,
		types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return true
	}
	return false
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
