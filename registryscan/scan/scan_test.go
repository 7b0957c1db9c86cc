package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/layer/layertest"
	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

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

var (
	feedMu    sync.Mutex
	feedCache = map[string]*vulndb.DB{}
)

// feed loads parts of the shared feed, once per test binary.
func feed(t testing.TB, subdirs ...string) *vulndb.DB {
	t.Helper()
	key := strings.Join(subdirs, ",")
	feedMu.Lock()
	defer feedMu.Unlock()
	if db, ok := feedCache[key]; ok {
		return db
	}
	var b vulndb.Builder
	for _, s := range subdirs {
		if err := b.AddDir(context.Background(), filepath.Join(vulndata(t), s)); err != nil {
			t.Fatal(err)
		}
	}
	feedCache[key] = b.Build()
	return feedCache[key]
}

type tf struct {
	name, body string
	mode       int64
	typeflag   byte
	link       string
}

func tarLayer(t testing.TB, files ...tf) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		typ := f.typeflag
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: f.name, Typeflag: typ, Mode: mode, Linkname: f.link}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, f.body)
	}
	tw.Close()
	return rawLayer(t, b.Bytes())
}

func rawLayer(t testing.TB, tarData []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarData)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newScanner(t testing.TB, cfg Config, db *vulndb.DB) *Scanner {
	t.Helper()
	s, err := New(cfg, db, NewMemCache(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// buildGoBinary builds a small program that requires golang.org/x/text
// v0.3.2. The module comes from a file-based module proxy made here, with
// a stand-in package under that path: what this proves is that a binary
// whose build information records golang.org/x/text v0.3.2 is matched
// against the real Go advisories, not that the stand-in code is vulnerable.
// The module cache is a temporary directory, so the stand-in never reaches
// the machine's module cache.
func buildGoBinary(t testing.TB) []byte {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain")
	}
	tmp := t.TempDir()
	proxy := filepath.Join(tmp, "proxy", "golang.org", "x", "text", "@v")
	if err := os.MkdirAll(proxy, 0o755); err != nil {
		t.Fatal(err)
	}
	const mod = "module golang.org/x/text\n\ngo 1.18\n"
	os.WriteFile(filepath.Join(proxy, "list"), []byte("v0.3.2\n"), 0o644)
	os.WriteFile(filepath.Join(proxy, "v0.3.2.info"), []byte(`{"Version":"v0.3.2","Time":"2019-04-29T00:00:00Z"}`), 0o644)
	os.WriteFile(filepath.Join(proxy, "v0.3.2.mod"), []byte(mod), 0o644)
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	for name, body := range map[string]string{
		"go.mod":               mod,
		"language/language.go": "package language\n\n// Parse stands in for the real parser.\nfunc Parse(s string) string { return s }\n",
	} {
		w, _ := zw.Create("golang.org/x/text@v0.3.2/" + name)
		io.WriteString(w, body)
	}
	zw.Close()
	os.WriteFile(filepath.Join(proxy, "v0.3.2.zip"), zb.Bytes(), 0o644)

	app := filepath.Join(tmp, "app")
	os.MkdirAll(app, 0o755)
	os.WriteFile(filepath.Join(app, "go.mod"), []byte("module example.com/app\n\ngo 1.22\n\nrequire golang.org/x/text v0.3.2\n"), 0o644)
	os.WriteFile(filepath.Join(app, "main.go"), []byte("package main\n\nimport \"golang.org/x/text/language\"\n\nfunc main() { println(language.Parse(\"en\")) }\n"), 0o644)
	out := filepath.Join(tmp, "app.bin")
	cmd := exec.Command(gobin, "build", "-mod=mod", "-o", out, ".")
	cmd.Dir = app
	cmd.Env = append(os.Environ(), "GOPROXY=file://"+filepath.Join(tmp, "proxy"), "GOSUMDB=off", "GONOSUMDB=*",
		"GOFLAGS=-mod=mod", "GOMODCACHE="+filepath.Join(tmp, "modcache"), "GOTOOLCHAIN=local", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	// The temporary module cache is read-only; make it removable.
	exec.Command("chmod", "-R", "u+w", filepath.Join(tmp, "modcache")).Run()
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestGoAndRustMatchRealAdvisories(t *testing.T) {
	bin := buildGoBinary(t)
	// A Rust binary with a cargo-auditable section: any ELF file with the
	// section added by objcopy (what cargo-auditable itself embeds is the
	// same zlib-compressed JSON).
	auditable := withAuditableSection(t, bin, `{"packages":[{"name":"smallvec","version":"1.6.0","source":"crates.io"}]}`)
	lock := "version = 3\n\n[[package]]\nname = \"openssl\"\nversion = \"0.8.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
	img := imageOf(t,
		tarLayer(t, tf{name: "usr/local/bin/app", body: string(bin), mode: 0o755}),
		tarLayer(t, tf{name: "srv/rust/Cargo.lock", body: lock}, tf{name: "usr/local/bin/rustapp", body: string(auditable), mode: 0o755}),
	)
	s := newScanner(t, DefaultConfig(), feed(t, "go", "rust"))
	r, err := s.ScanImageValue(context.Background(), "test/go-rust", img)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]vulndb.Finding{}
	for _, v := range r.Vulnerabilities {
		found[v.ID+" "+v.Package+" "+v.Path] = v
	}
	tests := []struct{ key, fixed, path string }{
		// golang.org/x/text: GO-2020-0015 fixed in 0.3.3, GO-2021-0113 in 0.3.7.
		{"GO-2020-0015 golang.org/x/text", "0.3.3", "usr/local/bin/app"},
		{"GO-2021-0113 golang.org/x/text", "0.3.7", "usr/local/bin/app"},
		{"GO-2021-0113 golang.org/x/text", "0.3.7", "usr/local/bin/rustapp"},
		// RUSTSEC-2016-0001: openssl crate before 0.9.0.
		{"RUSTSEC-2016-0001 openssl", "0.9.0", "srv/rust/Cargo.lock"},
		// RUSTSEC-2021-0003: smallvec 1.6.0 (fixed in 1.6.1).
		{"RUSTSEC-2021-0003 smallvec", "1.6.1", "usr/local/bin/rustapp"},
	}
	for _, tt := range tests {
		v, ok := found[tt.key+" "+tt.path]
		if !ok {
			t.Errorf("%s not found; got %d findings", tt.key, len(r.Vulnerabilities))
			continue
		}
		if v.FixedVersion != tt.fixed || !v.FixAvailable || v.Path != tt.path {
			t.Errorf("%s: fixed %q at %s, want %q at %s", tt.key, v.FixedVersion, v.Path, tt.fixed, tt.path)
		}
	}
	var stdlib bool
	for _, p := range r.Packages {
		if p.Name == "stdlib" && p.Path == "usr/local/bin/app" {
			stdlib = true
		}
	}
	if !stdlib {
		t.Error("the Go standard library of the binary is not in the inventory")
	}
}

func withAuditableSection(t testing.TB, elf []byte, js string) []byte {
	t.Helper()
	if _, err := exec.LookPath("objcopy"); err != nil {
		t.Skip("objcopy (binutils) not installed")
	}
	tmp := t.TempDir()
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	io.WriteString(zw, js)
	zw.Close()
	os.WriteFile(filepath.Join(tmp, "in"), elf, 0o755)
	os.WriteFile(filepath.Join(tmp, "dep"), z.Bytes(), 0o644)
	if b, err := exec.Command("objcopy", "--add-section", ".dep-v0="+filepath.Join(tmp, "dep"), filepath.Join(tmp, "in"), filepath.Join(tmp, "out")).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, b)
	}
	out, err := os.ReadFile(filepath.Join(tmp, "out"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipBomb(t testing.TB, size int64) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Size: size, Mode: 0o644})
	buf := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(buf)) {
		tw.Write(buf[:min(int64(len(buf)), size-n)])
	}
	tw.Close()
	gz.Close()
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRegistryScanHostileImages pushes good and hostile images to one
// registry and scans it: each hostile image fails with its own clear error,
// the good one is scanned, and nothing is written to the filesystem.
func TestRegistryScanHostileImages(t *testing.T) {
	reg := newTestRegistry(t)
	good := imageOf(t, tarLayer(t, tf{name: "etc/os-release", body: "ID=alpine\nVERSION_ID=3.11.6\n"},
		tf{name: "lib/apk/db/installed", body: "P:ansible\nV:2.9.2-r0\no:ansible\n\n"}))
	reg.push(t, "apps/good:1", good)
	reg.push(t, "apps/traversal:1", imageOf(t, tarLayer(t, tf{name: "../../../tmp/palisade-pwned", body: "x"})))
	reg.push(t, "apps/absolute:1", imageOf(t, tarLayer(t, tf{name: "/tmp/palisade-pwned", body: "x"})))
	reg.push(t, "apps/symlink:1", imageOf(t, tarLayer(t, tf{name: "etc/evil", typeflag: tar.TypeSymlink, link: "../../../../root"})))
	reg.push(t, "apps/hardlink:1", imageOf(t, tarLayer(t, tf{name: "etc/evil", typeflag: tar.TypeLink, link: "../../etc/shadow"})))
	reg.push(t, "apps/bomb:1", imageOf(t, gzipBomb(t, 24<<20)))
	reg.push(t, "apps/sparse:1", imageOf(t, rawLayer(t, layertest.SparseTar("var/lib/dpkg/status", 10<<30))))
	reg.push(t, "apps/baddb:1", imageOf(t, tarLayer(t, tf{name: "var/lib/dpkg/status", body: "Package: x\nStatus: install ok installed\nSource: (\n"})))
	reg.push(t, "other/skipped:1", good)

	cfg := DefaultConfig()
	cfg.Insecure = true
	cfg.Inventory.Limits.MaxBytes = 8 << 20
	s := newScanner(t, cfg, feed(t, "alpine-secdb"))
	res, err := s.ScanRegistry(context.Background(), reg.host(), Filter{Repository: "apps/*", Tag: "1"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // ref suffix -> error substring ("" = success)
		"apps/good:1":      "",
		"apps/traversal:1": "path escapes the root",
		"apps/absolute:1":  "absolute path",
		"apps/symlink:1":   "link target escapes the root",
		"apps/hardlink:1":  "link target escapes the root",
		"apps/bomb:1":      "uncompressed size over the limit",
		"apps/sparse:1":    "",
		"apps/baddb:1":     "",
	}
	if len(res) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(res), len(want), res)
	}
	for _, r := range res {
		suffix := strings.TrimPrefix(r.Ref, reg.host()+"/")
		w, ok := want[suffix]
		if !ok {
			t.Errorf("unexpected image %s", r.Ref)
			continue
		}
		if w == "" {
			if r.Error != "" || len(r.Reports) != 1 {
				t.Errorf("%s: error %q, %d reports; want success", suffix, r.Error, len(r.Reports))
			}
			continue
		}
		if !strings.Contains(r.Error, w) || !strings.Contains(r.Error, suffix) {
			t.Errorf("%s: error %q, want one naming the image and %q", suffix, r.Error, w)
		}
	}
	for _, r := range res {
		switch strings.TrimPrefix(r.Ref, reg.host()+"/") {
		case "apps/good:1":
			if v := r.Reports[0].Vulnerabilities; len(v) == 0 || v[0].Ecosystem != "Alpine:v3.11" {
				t.Errorf("good image: vulnerabilities %+v, want Alpine v3.11 secdb findings", v)
			}
		case "apps/sparse:1", "apps/baddb:1":
			if n := r.Reports[0].Notes; len(n) != 1 {
				t.Errorf("%s: notes %q, want one naming the skipped database", r.Ref, n)
			}
		}
	}
	if _, err := os.Stat("/tmp/palisade-pwned"); err == nil {
		t.Fatal("a hostile layer wrote /tmp/palisade-pwned")
	}
}

func TestTruncatedBlob(t *testing.T) {
	reg := newTestRegistry(t)
	l := gzipBomb(t, 1<<20)
	img := imageOf(t, l)
	reg.push(t, "apps/trunc:1", img)
	d, _ := l.Digest()
	reg.truncate.Store(d.Hex)
	cfg := DefaultConfig()
	cfg.Insecure = true
	s := newScanner(t, cfg, nil)
	_, err := s.ScanImage(context.Background(), reg.host()+"/apps/trunc:1")
	if err == nil || !strings.Contains(err.Error(), "apps/trunc:1") {
		t.Fatalf("truncated blob: err = %v, want an error naming the image", err)
	}
	t.Logf("truncated blob: %v", err)
}

func TestNestedIndexes(t *testing.T) {
	reg := newTestRegistry(t)
	img := imageOf(t, tarLayer(t, tf{name: "etc/os-release", body: "ID=debian\nVERSION_ID=12\n"}))
	var idx v1.ImageIndex = mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	reg.pushIndex(t, "multi/ok:1", idx)
	for i := 0; i < 4; i++ {
		idx = mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: idx})
	}
	reg.pushIndex(t, "multi/deep:1", idx)
	cfg := DefaultConfig()
	cfg.Insecure = true
	s := newScanner(t, cfg, nil)
	reps, err := s.ScanImage(context.Background(), reg.host()+"/multi/ok:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].IndexDigest == "" || reps[0].OS == nil || reps[0].OS.ID != "debian" {
		t.Fatalf("index scan: %+v", reps)
	}
	if _, err := s.ScanImage(context.Background(), reg.host()+"/multi/deep:1"); !errors.Is(err, ErrIndexTooDeep) {
		t.Fatalf("deep index: err = %v, want ErrIndexTooDeep", err)
	}
	cfg.Platform = "linux/s390x"
	s = newScanner(t, cfg, nil)
	if _, err := s.ScanImage(context.Background(), reg.host()+"/multi/ok:1"); !errors.Is(err, ErrNoPlatform) {
		t.Fatalf("missing platform: err = %v, want ErrNoPlatform", err)
	}
}

func TestUnsupportedLayerMediaType(t *testing.T) {
	img := imageOf(t, static.NewLayer([]byte("not a tar"), types.MediaType("application/vnd.example.blob")))
	s := newScanner(t, DefaultConfig(), nil)
	if _, err := s.ScanImageValue(context.Background(), "x", img); err == nil || !strings.Contains(err.Error(), "unsupported media type") {
		t.Fatalf("err = %v", err)
	}
}

func TestDirCacheAndRematch(t *testing.T) {
	dir := t.TempDir()
	c, err := NewDirCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	img := imageOf(t, tarLayer(t, tf{name: "etc/os-release", body: "ID=alpine\nVERSION_ID=3.11.2\n"},
		tf{name: "lib/apk/db/installed", body: "P:ansible\nV:2.9.2-r0\no:ansible\n\n"}))
	s, err := New(DefaultConfig(), nil, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := s.ScanImageValue(ctx, "alpine-app", img)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Vulnerabilities) != 0 {
		t.Fatalf("no feed yet, got %d vulnerabilities", len(r.Vulnerabilities))
	}
	// A new scanner on the same cache directory: nothing is pulled.
	s2, _ := New(DefaultConfig(), nil, c, nil)
	if _, err := s2.ScanImageValue(ctx, "alpine-app", img); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.LayersPulled != 0 || st.ImageCacheHits != 1 {
		t.Fatalf("stats %+v, want a cache hit and nothing pulled", st)
	}
	// The feed arrives: the updater re-matches the stored inventory.
	var got []Update
	u, err := NewUpdater(UpdaterConfig{Source: vulndb.DirSource{Dir: filepath.Join(vulndata(t), "alpine-secdb")},
		Interval: 1, OnUpdate: func(_ context.Context, up Update) { got = append(got, up) }}, s2, nil)
	if err != nil {
		t.Fatal(err)
	}
	up, err := u.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !up.Changed || up.Images != 1 || len(up.Changes) != 1 || len(got) != 1 {
		t.Fatalf("update %+v, callbacks %d", up, len(got))
	}
	var cve bool
	for _, id := range up.Changes[0].Added {
		cve = cve || id == "CVE-2019-14904"
	}
	if !cve {
		t.Errorf("added %v, want CVE-2019-14904", up.Changes[0].Added)
	}
	if st := s2.Stats(); st.LayersPulled != 0 {
		t.Errorf("re-match pulled %d layers", st.LayersPulled)
	}
	stored, ok, err := c.Report(ctx, r.Digest)
	if err != nil || !ok || len(stored.Vulnerabilities) == 0 {
		t.Fatalf("stored report not re-matched: ok %v err %v", ok, err)
	}
	// The same feed again changes nothing.
	if up, err := u.Refresh(ctx); err != nil || up.Changed {
		t.Errorf("second refresh: %+v, %v", up, err)
	}
	// Digests are checked before they become file names.
	if err := c.PutReport(ctx, &report.Report{Digest: "../../escape"}); !errors.Is(err, ErrBadDigest) {
		t.Errorf("bad digest: err = %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("cache dir holds %d entries, want layers/ and images/", len(ents))
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.Platform = "" },
		func(c *Config) { c.Workers = 0 },
		func(c *Config) { c.MaxIndexDepth = 0 },
		func(c *Config) { c.ImageTimeout = 0 },
		func(c *Config) { c.Inventory.MaxFileSize = 0 },
	}
	for i, f := range bad {
		c := DefaultConfig()
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("case %d: got nil error", i)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
	if err := (Filter{Repository: "["}).Validate(); err == nil {
		t.Error("bad filter pattern validated")
	}
	_ = fmt.Sprint(inventory.Deb)
}

type staticKeychain struct{ user, pass string }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: k.user, Password: k.pass}), nil
}

// TestRegistryAuth scans through a registry that demands basic auth, and
// one that demands a bearer token from its token endpoint.
func TestRegistryAuth(t *testing.T) {
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	img := imageOf(t, tarLayer(t, tf{name: "etc/os-release", body: "ID=debian\nVERSION_ID=12\n"}))
	for _, mode := range []string{"basic", "bearer"} {
		t.Run(mode, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				u, p, ok := r.BasicAuth()
				basicOK := ok && u == "scanner" && p == "s3cret"
				if r.URL.Path == "/token" {
					if !basicOK {
						w.WriteHeader(http.StatusUnauthorized)
						return
					}
					io.WriteString(w, `{"token":"tok-123"}`)
					return
				}
				authed := basicOK
				if mode == "bearer" {
					authed = r.Header.Get("Authorization") == "Bearer tok-123"
				}
				if !authed {
					if mode == "basic" {
						w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					} else {
						w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, srv.URL))
					}
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				inner.ServeHTTP(w, r)
			}))
			defer srv.Close()
			host := strings.TrimPrefix(srv.URL, "http://")
			ref, _ := name.ParseReference(host+"/private/app:1", name.Insecure)
			if err := remote.Write(ref, img, remote.WithAuthFromKeychain(staticKeychain{"scanner", "s3cret"})); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.Insecure = true
			if _, err := newScanner(t, cfg, nil).ScanImage(context.Background(), host+"/private/app:1"); err == nil {
				t.Fatal("anonymous scan of a private registry: got nil error")
			}
			cfg.Keychain = staticKeychain{"scanner", "s3cret"}
			reps, err := newScanner(t, cfg, nil).ScanImage(context.Background(), host+"/private/app:1")
			if err != nil {
				t.Fatal(err)
			}
			if reps[0].OS == nil || reps[0].OS.ID != "debian" {
				t.Errorf("report %+v", reps[0])
			}
		})
	}
}

func TestUpdaterRunStopsWithContext(t *testing.T) {
	s := newScanner(t, DefaultConfig(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "GO-1.json"), []byte(`{"id":"GO-1","affected":[{"package":{"ecosystem":"Go","name":"m"}}]}`), 0o644)
	updates := 0
	u, err := NewUpdater(UpdaterConfig{Source: vulndb.DirSource{Dir: dir}, Interval: 5 * time.Millisecond,
		OnUpdate: func(context.Context, Update) { updates++; cancel() }}, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if updates != 1 || s.DB() == nil || s.DB().Len() != 1 {
		t.Errorf("updates %d, feed %v", updates, s.DB())
	}
	if _, err := NewUpdater(UpdaterConfig{Interval: time.Second}, s, nil); err == nil {
		t.Error("updater without a source: got nil error")
	}
}
