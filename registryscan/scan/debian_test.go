package scan

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/palisade-sec/palisade/registryscan/inventory"
)

// debianRootfs returns a Debian bookworm minbase tree made by debootstrap,
// building it once under the development cache (outside the repository)
// when it is not there yet.
func debianRootfs(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("PALISADE_CACHE_DIR")
	if cache == "" {
		cache = "/var/cache/palisade-dev"
	}
	dir := filepath.Join(cache, "bookworm-minbase")
	if _, err := os.Stat(filepath.Join(dir, "var", "lib", "dpkg", "status")); err == nil {
		return dir
	}
	if os.Geteuid() != 0 {
		t.Skip("building the Debian image needs root (debootstrap)")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Fatalf("debootstrap not installed (scripts/deps.sh installs it): %v", err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(cache, "bookworm-minbase.tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("building Debian bookworm minbase in %s", tmp)
	out, err := exec.Command("debootstrap", "--variant=minbase", "bookworm", tmp, "http://deb.debian.org/debian").CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("debootstrap: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(dir); serr != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dirTar makes an uncompressed layer tar of a directory tree: regular
// files, dirs, symlinks; device nodes and sockets are left out.
func dirTar(t testing.TB, root string, w io.Writer) {
	t.Helper()
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.Mode().IsRegular(), info.IsDir():
		default:
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// rawLayerBytes is an uncompressed layer held in memory: the registry
// stores it as is and the scanner reads it without inflating, which keeps
// the Debian test fast under the race detector.
type rawLayerBytes struct {
	data []byte
	hash v1.Hash
}

func newRawLayer(data []byte) *rawLayerBytes {
	h, _, _ := v1.SHA256(bytes.NewReader(data))
	return &rawLayerBytes{data: data, hash: h}
}

func (l *rawLayerBytes) Digest() (v1.Hash, error) { return l.hash, nil }
func (l *rawLayerBytes) DiffID() (v1.Hash, error) { return l.hash, nil }
func (l *rawLayerBytes) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *rawLayerBytes) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *rawLayerBytes) Size() (int64, error) { return int64(len(l.data)), nil }
func (l *rawLayerBytes) MediaType() (types.MediaType, error) {
	return types.DockerUncompressedLayer, nil
}

var (
	debianOnce   sync.Once
	debianTar    []byte
	debianGzOnce sync.Once
	debianGzPath string
)

// debianImageOf returns the Debian image: with gz, its layer gzipped as
// registries serve it (kept in the development cache after the first
// build); without, uncompressed.
func debianImageOf(t testing.TB, gz bool) (v1.Image, string) {
	t.Helper()
	root := debianRootfs(t)
	var l v1.Layer
	if !gz {
		debianOnce.Do(func() {
			p := root + ".layer.tar"
			if _, err := os.Stat(p); err != nil {
				f, err := os.Create(p + ".tmp")
				if err != nil {
					t.Fatal(err)
				}
				bw := bufio.NewWriterSize(f, 1<<20)
				dirTar(t, root, bw)
				if err := bw.Flush(); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(p+".tmp", p); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if debianTar, err = os.ReadFile(p); err != nil {
				t.Fatal(err)
			}
		})
		l = newRawLayer(debianTar)
	} else {
		debianGzOnce.Do(func() {
			p := root + ".layer.tar.gz"
			if _, err := os.Stat(p); err != nil {
				tmp := p + ".tmp"
				f, err := os.Create(tmp)
				if err != nil {
					t.Fatal(err)
				}
				zw := gzip.NewWriter(f)
				dirTar(t, root, zw)
				if err := zw.Close(); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, p); err != nil {
					t.Fatal(err)
				}
			}
			debianGzPath = p
		})
		var err error
		if l, err = tarball.LayerFromFile(debianGzPath); err != nil {
			t.Fatal(err)
		}
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img, root
}

// testRegistry is go-containerregistry's registry on loopback, counting
// blob downloads.
type testRegistry struct {
	srv       *httptest.Server
	blobGets  atomic.Int64
	blobBytes atomic.Int64
	// truncate, if set, cuts the named blob's body short.
	truncate atomic.Value
	// blobs is the registry's blob store, for seeding large blobs
	// without an HTTP upload.
	blobs registry.BlobHandler
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.ResponseWriter.Write(p)
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	tr.truncate.Store("")
	tr.blobs = registry.NewInMemoryBlobHandler()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithBlobHandler(tr.blobs))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			tr.blobGets.Add(1)
			if d := tr.truncate.Load().(string); d != "" && strings.HasSuffix(r.URL.Path, d) {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				w.WriteHeader(http.StatusOK)
				w.Write(body[:len(body)/2])
				return
			}
			w = countingWriter{ResponseWriter: w, n: &tr.blobBytes}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	return tr
}

func (tr *testRegistry) host() string { return strings.TrimPrefix(tr.srv.URL, "http://") }

// seed stores the image's layers in the registry directly; a push then
// only uploads the config and manifest. This keeps the 204 MB Debian layer
// off the (race-instrumented) upload path.
func (tr *testRegistry) seed(t testing.TB, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	put := tr.blobs.(registry.BlobPutHandler)
	for _, l := range layers {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if err := put.Put(context.Background(), "", d, rc); err != nil {
			t.Fatal(err)
		}
	}
}

func (tr *testRegistry) push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(tr.host()+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func (tr *testRegistry) pushIndex(t testing.TB, ref string, idx v1.ImageIndex) {
	t.Helper()
	r, err := name.ParseReference(tr.host()+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
}

type dpkgRow struct{ name, version, source, sourceVersion string }

// dpkgQuery asks dpkg itself what the tree has installed.
func dpkgQuery(t testing.TB, root string) []dpkgRow {
	t.Helper()
	out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W",
		"-f=${db:Status-Status}\t${Package}\t${Version}\t${source:Package}\t${source:Version}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	var rows []dpkgRow
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			t.Fatalf("dpkg-query line %q", line)
		}
		if f[0] != "installed" {
			continue
		}
		rows = append(rows, dpkgRow{f[1], f[2], f[3], f[4]})
	}
	return rows
}

func TestDebianImageThroughRegistry(t *testing.T) {
	start := time.Now()
	img, root := debianImageOf(t, false)
	want := dpkgQuery(t, root)
	t.Logf("image built in %v", time.Since(start))
	reg := newTestRegistry(t)
	reg.seed(t, img)
	reg.push(t, "debian/minbase:bookworm", img)
	t.Logf("pushed at %v", time.Since(start))
	defer func() { t.Logf("done at %v", time.Since(start)) }()
	wantDigest, _ := img.Digest()

	cfg := DefaultConfig()
	cfg.Insecure = true
	s, err := New(cfg, nil, NewMemCache(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg.blobGets.Store(0)
	reps, err := s.ScanImage(ctx, reg.host()+"/debian/minbase:bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].Digest != wantDigest.String() {
		t.Fatalf("got %d reports (digest %v), want one for %s", len(reps), reps, wantDigest)
	}
	r := reps[0]
	t.Logf("scanned at %v", time.Since(start))
	if r.OS == nil || r.OS.ID != "debian" || r.OS.VersionID != "12" {
		t.Errorf("OS = %+v, want debian 12", r.OS)
	}
	got := map[string]inventory.Package{}
	for _, p := range r.Packages {
		if p.Type == inventory.Deb {
			if _, dup := got[p.Name]; dup {
				t.Errorf("package %s listed twice", p.Name)
			}
			got[p.Name] = p
		}
	}
	if len(got) != len(want) {
		t.Errorf("found %d dpkg packages, dpkg-query says %d", len(got), len(want))
	}
	t.Logf("dpkg-query lists %d installed packages", len(want))
	for _, w := range want {
		p, ok := got[w.name]
		if !ok {
			t.Errorf("package %s %s not found", w.name, w.version)
			continue
		}
		if p.Version != w.version || p.SourceName != w.source || p.SourceVersion != w.sourceVersion {
			t.Errorf("package %s = %s (source %s %s), want %s (source %s %s)",
				w.name, p.Version, p.SourceName, p.SourceVersion, w.version, w.source, w.sourceVersion)
		}
		if p.Path != "var/lib/dpkg/status" || p.Layer != r.Layers[0] {
			t.Errorf("package %s from %s in %s, want var/lib/dpkg/status in %s", w.name, p.Path, p.Layer, r.Layers[0])
		}
	}
	if st := s.Stats(); st.LayersPulled != 1 || reg.blobGets.Load() == 0 {
		t.Errorf("first scan: %d layers pulled, %d blob requests; want 1 and some", st.LayersPulled, reg.blobGets.Load())
	}

	// A re-scan of the unchanged digest pulls nothing.
	reg.blobGets.Store(0)
	reg.blobBytes.Store(0)
	again, err := s.ScanImage(ctx, reg.host()+"/debian/minbase:bookworm")
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || len(again[0].Packages) != len(r.Packages) {
		t.Fatalf("re-scan gave %d reports", len(again))
	}
	if n, b := reg.blobGets.Load(), reg.blobBytes.Load(); n != 0 || b != 0 {
		t.Errorf("re-scan made %d blob requests (%d bytes), want 0", n, b)
	}
	if st := s.Stats(); st.LayersPulled != 1 || st.ImageCacheHits != 1 {
		t.Errorf("after re-scan: stats %+v, want 1 layer pulled and 1 image cache hit", st)
	}

	// The same layer under another image (another tag with a different
	// config) is analysed once.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Author = "another"
	img2, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "debian/other:1", img2)
	if _, err := s.ScanImage(ctx, reg.host()+"/debian/other:1"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.LayersPulled != 1 || st.LayerCacheHits != 1 {
		t.Errorf("shared layer: stats %+v, want 1 layer pulled and 1 layer cache hit", st)
	}
}
