package scan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/report"
)

// Cache stores layer inventories by layer digest and reports by image
// digest, so that a digest is pulled and analysed once. Implementations
// must be safe for concurrent use and must return values the caller may
// keep (copies, or values never changed after Put).
type Cache interface {
	Layer(ctx context.Context, digest string) (*inventory.Layer, bool, error)
	PutLayer(ctx context.Context, l *inventory.Layer) error
	Report(ctx context.Context, digest string) (*report.Report, bool, error)
	PutReport(ctx context.Context, r *report.Report) error
	// ReportDigests lists the image digests with a stored report.
	ReportDigests(ctx context.Context) ([]string, error)
}

// ErrBadDigest is returned for a digest that is not algorithm:hex.
var ErrBadDigest = errors.New("scan: malformed digest")

var digestRE = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)

func checkDigest(d string) error {
	if !digestRE.MatchString(d) {
		return fmt.Errorf("%w %q", ErrBadDigest, d)
	}
	return nil
}

// MemCache is an in-memory Cache.
type MemCache struct {
	mu      sync.RWMutex
	layers  map[string]*inventory.Layer
	reports map[string]*report.Report
}

// NewMemCache returns an empty MemCache.
func NewMemCache() *MemCache {
	return &MemCache{layers: map[string]*inventory.Layer{}, reports: map[string]*report.Report{}}
}

// Layer implements Cache.
func (c *MemCache) Layer(_ context.Context, digest string) (*inventory.Layer, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	l, ok := c.layers[digest]
	return l, ok, nil
}

// PutLayer implements Cache. The layer must not be changed afterwards.
func (c *MemCache) PutLayer(_ context.Context, l *inventory.Layer) error {
	if err := checkDigest(l.Digest); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.layers[l.Digest] = l
	return nil
}

// Report implements Cache; it returns a shallow copy.
func (c *MemCache) Report(_ context.Context, digest string) (*report.Report, bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.reports[digest]
	if !ok {
		return nil, false, nil
	}
	cp := *r
	return &cp, true, nil
}

// PutReport implements Cache; it stores a shallow copy.
func (c *MemCache) PutReport(_ context.Context, r *report.Report) error {
	if err := checkDigest(r.Digest); err != nil {
		return err
	}
	cp := *r
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reports[r.Digest] = &cp
	return nil
}

// ReportDigests implements Cache.
func (c *MemCache) ReportDigests(context.Context) ([]string, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.reports))
	for d := range c.reports {
		out = append(out, d)
	}
	sort.Strings(out)
	return out, nil
}

// DirCache is a Cache of JSON files under a directory:
// DIR/layers/ALG-HEX.json and DIR/images/ALG-HEX.json, each written to a
// temporary file and renamed into place. Digests are checked before they
// become file names, so nothing is written outside DIR.
type DirCache struct {
	dir string
}

// NewDirCache creates dir (and its subdirectories) if needed.
func NewDirCache(dir string) (*DirCache, error) {
	if dir == "" {
		return nil, errors.New("scan: cache directory not set")
	}
	for _, sub := range []string{"layers", "images"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("create cache: %w", err)
		}
	}
	return &DirCache{dir: dir}, nil
}

func (c *DirCache) file(kind, digest string) (string, error) {
	if err := checkDigest(digest); err != nil {
		return "", err
	}
	return filepath.Join(c.dir, kind, strings.Replace(digest, ":", "-", 1)+".json"), nil
}

func (c *DirCache) get(kind, digest string, v any) (bool, error) {
	p, err := c.file(kind, digest)
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read cache: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		// A damaged entry is a miss; the next Put replaces it.
		return false, nil
	}
	return true, nil
}

func (c *DirCache) put(kind, digest string, v any) error {
	p, err := c.file(kind, digest)
	if err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode cache entry: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write cache: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write cache: %w", err)
	}
	return nil
}

// Layer implements Cache.
func (c *DirCache) Layer(_ context.Context, digest string) (*inventory.Layer, bool, error) {
	var l inventory.Layer
	ok, err := c.get("layers", digest, &l)
	if !ok || err != nil {
		return nil, false, err
	}
	return &l, true, nil
}

// PutLayer implements Cache.
func (c *DirCache) PutLayer(_ context.Context, l *inventory.Layer) error {
	return c.put("layers", l.Digest, l)
}

// Report implements Cache.
func (c *DirCache) Report(_ context.Context, digest string) (*report.Report, bool, error) {
	var r report.Report
	ok, err := c.get("images", digest, &r)
	if !ok || err != nil {
		return nil, false, err
	}
	return &r, true, nil
}

// PutReport implements Cache.
func (c *DirCache) PutReport(_ context.Context, r *report.Report) error {
	return c.put("images", r.Digest, r)
}

// ReportDigests implements Cache.
func (c *DirCache) ReportDigests(context.Context) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(c.dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("list cache: %w", err)
	}
	var out []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		d := strings.Replace(name, "-", ":", 1)
		if checkDigest(d) == nil {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out, nil
}
