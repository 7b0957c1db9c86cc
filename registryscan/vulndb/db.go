package vulndb

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/palisade-sec/palisade/registryscan/version"
)

// maxRecordSize bounds one advisory file.
const maxRecordSize = 16 << 20

// DB is an immutable, indexed set of advisories. It is safe for concurrent
// use; a feed update builds a new DB.
type DB struct {
	// index: base ecosystem -> normalised package name -> entries.
	index    map[version.Ecosystem]map[string][]entry
	count    int
	digest   string
	problems []string
}

// entry is one affected package of one advisory.
type entry struct {
	adv *Advisory
	aff *Affected
	// release is the ecosystem's release suffix ("12" of "Debian:12").
	release string
	// ranges are the ECOSYSTEM and SEMVER ranges with events sorted in
	// the ecosystem's order, done once at build time.
	ranges [][]Event
	// versions is the affected entry's explicit version list as a set.
	versions map[string]bool
	// severity, computed once.
	rating, vector string
	score          float64
}

// Builder collects advisories into a DB. Records that cannot be used are
// kept as problems (Problems), not failures: one bad record does not stop a
// feed of thousands.
type Builder struct {
	advs     []*Advisory
	problems []string
}

// Add adds advisories.
func (b *Builder) Add(advs ...*Advisory) { b.advs = append(b.advs, advs...) }

// AddFile parses one file by its name: *.json is OSV JSON; *.yaml/*.yml
// is an Alpine secdb document or OSV YAML. Other names are ignored.
func (b *Builder) AddFile(name string, data []byte) {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".json"):
		a, err := ParseOSVJSON(data)
		if err != nil {
			b.problems = append(b.problems, fmt.Sprintf("%s: %v", name, err))
			return
		}
		b.advs = append(b.advs, a)
	case strings.HasSuffix(lower, ".yaml") || strings.HasSuffix(lower, ".yml"):
		if isSecDB(data) {
			advs, err := ParseSecDB(data)
			if err != nil {
				b.problems = append(b.problems, fmt.Sprintf("%s: %v", name, err))
				return
			}
			b.advs = append(b.advs, advs...)
			return
		}
		a, err := ParseOSVYAML(data)
		if err != nil {
			b.problems = append(b.problems, fmt.Sprintf("%s: %v", name, err))
			return
		}
		b.advs = append(b.advs, a)
	}
}

// AddDir adds every advisory file under dir, recursively.
func (b *Builder) AddDir(ctx context.Context, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read feed directory: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		lower := strings.ToLower(p)
		if !strings.HasSuffix(lower, ".json") && !strings.HasSuffix(lower, ".yaml") && !strings.HasSuffix(lower, ".yml") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("read feed directory: %w", err)
		}
		if info.Size() > maxRecordSize {
			b.problems = append(b.problems, fmt.Sprintf("%s: %d bytes, over the %d-byte record limit", p, info.Size(), maxRecordSize))
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read feed file: %w", err)
		}
		b.AddFile(p, data)
		return nil
	})
}

// AddZip adds every OSV JSON record in a zip file (the OSV export's
// ECOSYSTEM/all.zip).
func (b *Builder) AddZip(ctx context.Context, r io.ReaderAt, size int64, name string) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return fmt.Errorf("open feed zip %s: %w", name, err)
	}
	for _, f := range zr.File {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !strings.HasSuffix(strings.ToLower(f.Name), ".json") {
			continue
		}
		if f.UncompressedSize64 > maxRecordSize {
			b.problems = append(b.problems, fmt.Sprintf("%s!%s: over the %d-byte record limit", name, f.Name, maxRecordSize))
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("feed zip %s: %s: %w", name, f.Name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxRecordSize+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("feed zip %s: %s: %w", name, f.Name, err)
		}
		b.AddFile(name+"!"+f.Name, data)
	}
	return nil
}

// Build indexes the advisories collected so far.
func (b *Builder) Build() *DB {
	db := &DB{index: map[version.Ecosystem]map[string][]entry{}, problems: append([]string(nil), b.problems...)}
	h := sha256.New()
	advs := append([]*Advisory(nil), b.advs...)
	first := func(a *Advisory) string {
		if len(a.Affected) == 0 {
			return ""
		}
		return a.Affected[0].Package.Ecosystem + "\x00" + a.Affected[0].Package.Name
	}
	sort.SliceStable(advs, func(i, j int) bool {
		if advs[i].ID != advs[j].ID {
			return advs[i].ID < advs[j].ID
		}
		return first(advs[i]) < first(advs[j])
	})
	for _, a := range advs {
		if a.Withdrawn != "" {
			continue
		}
		db.count++
		fmt.Fprintf(h, "%s\x00%s\x00", a.ID, a.Modified)
		for i := range a.Affected {
			af := &a.Affected[i]
			if af.Package.Ecosystem == "" {
				continue
			}
			fmt.Fprintf(h, "%s\x00%s\x00%v\x00", af.Package.Ecosystem, af.Package.Name, af.Ranges)
			base := version.Base(af.Package.Ecosystem)
			_, release, _ := strings.Cut(af.Package.Ecosystem, ":")
			m := db.index[base]
			if m == nil {
				m = map[string][]entry{}
				db.index[base] = m
			}
			n := normaliseName(base, af.Package.Name)
			e := entry{adv: a, aff: af, release: release}
			e.rating, e.score, e.vector = rate(a, af)
			if len(af.Versions) > 0 {
				e.versions = make(map[string]bool, len(af.Versions))
				for _, v := range af.Versions {
					e.versions[v] = true
				}
			}
			if cmp, err := version.Comparer(base); err == nil {
				e.ranges = sortedRanges(cmp, af)
			}
			m[n] = append(m[n], e)
		}
	}
	db.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return db
}

// Len is the number of advisories (withdrawn ones excluded).
func (db *DB) Len() int { return db.count }

// Digest identifies the feed's content: two DBs with the same advisories
// have the same digest.
func (db *DB) Digest() string { return db.digest }

// Problems lists records that were skipped, each naming its file.
func (db *DB) Problems() []string { return db.problems }

// LoadDir builds a DB from every advisory file under dir.
func LoadDir(ctx context.Context, dir string) (*DB, error) {
	var b Builder
	if err := b.AddDir(ctx, dir); err != nil {
		return nil, err
	}
	return b.Build(), nil
}

// normaliseName applies an ecosystem's name rules: PyPI names per PEP 503,
// Maven and npm case as written, distribution packages lower-case.
func normaliseName(eco version.Ecosystem, name string) string {
	switch eco {
	case version.PyPI:
		name = strings.ToLower(name)
		var b strings.Builder
		dash := false
		for _, r := range name {
			if r == '-' || r == '_' || r == '.' {
				if !dash {
					b.WriteByte('-')
				}
				dash = true
				continue
			}
			dash = false
			b.WriteRune(r)
		}
		return b.String()
	case version.Debian, version.Ubuntu, version.Alpine:
		return strings.ToLower(name)
	}
	return name
}

// Source produces a fresh DB; the updater calls it on a schedule.
type Source interface {
	Load(ctx context.Context) (*DB, error)
}

// DirSource loads every advisory file under a directory.
type DirSource struct {
	Dir string
}

// Load implements Source.
func (s DirSource) Load(ctx context.Context) (*DB, error) { return LoadDir(ctx, s.Dir) }

// ExportSource downloads the OSV export's per-ecosystem zip files,
// BaseURL/ECOSYSTEM/all.zip, and also reads Dirs, if any.
type ExportSource struct {
	// BaseURL is the export's root, e.g. the public OSV bucket's URL.
	BaseURL string
	// Ecosystems lists the ecosystems to fetch, e.g. "Go", "PyPI", "Debian".
	Ecosystems []string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
	// MaxZipSize bounds one downloaded zip; zero means 1 GiB.
	MaxZipSize int64
	// Dirs are local directories added to the downloaded feed.
	Dirs []string
}

// Load implements Source.
func (s ExportSource) Load(ctx context.Context) (*DB, error) {
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	limit := s.MaxZipSize
	if limit <= 0 {
		limit = 1 << 30
	}
	var b Builder
	for _, eco := range s.Ecosystems {
		u := strings.TrimSuffix(s.BaseURL, "/") + "/" + eco + "/all.zip"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("feed %s: %w", eco, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("feed %s: %w", eco, err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("feed %s: %w", eco, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("feed %s: GET %s: %s", eco, u, resp.Status)
		}
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("feed %s: zip over %d bytes", eco, limit)
		}
		if err := b.AddZip(ctx, readerAt(data), int64(len(data)), eco+"/all.zip"); err != nil {
			return nil, err
		}
	}
	for _, d := range s.Dirs {
		if err := b.AddDir(ctx, d); err != nil {
			return nil, err
		}
	}
	return b.Build(), nil
}

type readerAt []byte

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(r)) {
		return 0, fmt.Errorf("vulndb: read at %d out of range", off)
	}
	n := copy(p, r[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
