package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testVersion = "9.8.7-test"

// buildStatic builds cmd/palisade as make image does: static, with a
// version.
func buildStatic(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "palisade")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+testVersion, "-o", bin, "../../cmd/palisade")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/palisade: %v\n%s", err, out)
	}
	return bin
}

// extract writes the image's filesystem under dir.
func extract(t *testing.T, img *Image, dir string) {
	t.Helper()
	rc := mutate.Extract(img.Image)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read image filesystem: %v", err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, os.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected entry type %c", h.Name, h.Typeflag)
		}
	}
}

// TestImage builds the image of a real static binary and checks it runs,
// is tagged and labelled from the binary, is reproducible, and survives the
// layout, the tarball and a push unchanged.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/palisade; skipped with -short")
	}
	cfg := DefaultConfig()
	cfg.Binary = buildStatic(t)
	cfg.Repository = "registry.example/palisade"
	cfg.Revision = "0123abcd"
	cfg.CABundle = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(cfg.CABundle, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := Build(cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	digest, err := img.Image.Digest()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("tag and config", func(t *testing.T) {
		if got, want := img.Ref.String(), "registry.example/palisade:"+testVersion; got != want {
			t.Errorf("ref = %q, want %q", got, want)
		}
		cf, err := img.Image.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cf.Config.User, "65532:65532"; got != want {
			t.Errorf("user = %q, want %q", got, want)
		}
		if got := strings.Join(cf.Config.Entrypoint, " "); got != BinaryPath {
			t.Errorf("entrypoint = %q, want %q", got, BinaryPath)
		}
		for k, want := range map[string]string{
			"org.opencontainers.image.version":  testVersion,
			"org.opencontainers.image.revision": "0123abcd",
			"org.opencontainers.image.source":   "https://github.com/palisade-sec/palisade",
		} {
			if got := cf.Config.Labels[k]; got != want {
				t.Errorf("label %s = %q, want %q", k, got, want)
			}
		}
		if cf.OS != "linux" || cf.Architecture == "" {
			t.Errorf("platform = %s/%s, want linux/GOARCH", cf.OS, cf.Architecture)
		}
		if !cf.Created.Equal(cf.History[0].Created.Time) || cf.Created.Unix() != 0 {
			t.Errorf("created = %v, want the epoch", cf.Created)
		}
		mt, _ := img.Image.MediaType()
		if mt != "application/vnd.oci.image.manifest.v1+json" {
			t.Errorf("media type = %q, want an OCI manifest", mt)
		}
	})

	t.Run("runs palisade version from the extracted filesystem", func(t *testing.T) {
		dir := t.TempDir()
		extract(t, img, dir)
		out, err := exec.Command(filepath.Join(dir, BinaryPath), "version").CombinedOutput()
		if err != nil {
			t.Fatalf("palisade version: %v\n%s", err, out)
		}
		if got, want := strings.TrimSpace(string(out)), "palisade "+testVersion; got != want {
			t.Errorf("palisade version = %q, want %q", got, want)
		}
		passwd, err := os.ReadFile(filepath.Join(dir, "etc", "passwd"))
		if err != nil || !strings.Contains(string(passwd), ":65532:65532:") {
			t.Errorf("/etc/passwd lacks the non-root user: %q, %v", passwd, err)
		}
		if _, err := os.Stat(filepath.Join(dir, caPath)); err != nil {
			t.Errorf("CA bundle: %v", err)
		}
	})

	t.Run("layout and tarball keep the digest", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		if err := WriteLayout(dir, img); err != nil {
			t.Fatal(err)
		}
		p, err := layout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != 1 || im.Manifests[0].Digest != digest {
			t.Fatalf("layout index = %+v, want one image %s", im.Manifests, digest)
		}
		if got := im.Manifests[0].Annotations["org.opencontainers.image.ref.name"]; got != testVersion {
			t.Errorf("layout ref.name = %q, want %q", got, testVersion)
		}
		tarPath := filepath.Join(t.TempDir(), "image.tar")
		if err := WriteTarball(tarPath, img); err != nil {
			t.Fatal(err)
		}
		tag := img.Ref
		fromTar, err := tarball.ImageFromPath(tarPath, &tag)
		if err != nil {
			t.Fatal(err)
		}
		// The tarball keeps the config and the layers (its manifest is
		// rebuilt on load, in Docker's media types).
		wantCfg, _ := img.Image.ConfigName()
		if got, err := fromTar.ConfigName(); err != nil || got != wantCfg {
			t.Errorf("tarball config digest = %s, %v; want %s", got, err, wantCfg)
		}
		layers, err := fromTar.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("tarball layers = %d, %v; want 1", len(layers), err)
		}
		wantLayers, _ := img.Image.Layers()
		got, _ := layers[0].Digest()
		want, _ := wantLayers[0].Digest()
		if got != want {
			t.Errorf("tarball layer digest = %s, want %s", got, want)
		}
	})

	t.Run("push to a registry", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		ref, err := Push(context.Background(), host+"/team/palisade", img, false)
		if err != nil {
			t.Fatalf("Push: %v", err)
		}
		if got, want := ref.String(), host+"/team/palisade:"+testVersion; got != want {
			t.Errorf("pushed ref = %q, want %q", got, want)
		}
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatalf("get pushed image: %v", err)
		}
		if desc.Digest != digest {
			t.Errorf("pushed digest = %s, want %s", desc.Digest, digest)
		}
	})

	t.Run("command line", func(t *testing.T) {
		dir := t.TempDir()
		var out bytes.Buffer
		args := []string{"--binary", cfg.Binary, "--repository", cfg.Repository, "--revision", cfg.Revision, "--ca-bundle", cfg.CABundle,
			"--layout", filepath.Join(dir, "layout"), "--tarball", filepath.Join(dir, "image.tar")}
		if err := run(context.Background(), args, &out); err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
		// A second, independent build of the same binary: the same digest.
		if want := "registry.example/palisade:" + testVersion + "@" + digest.String(); !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q (not reproducible?):\n%s", want, out.String())
		}
		for _, p := range []string{"layout/index.json", "layout/oci-layout", "image.tar"} {
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
	})
}

// TestRootfsFixed checks the layer depends on its inputs only: the same
// inputs give the same bytes, another timestamp other bytes, and every entry
// carries the given time.
func TestRootfsFixed(t *testing.T) {
	at := time.Unix(0, 0)
	a, err := rootfs([]byte("bin"), []byte("ca"), at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := rootfs([]byte("bin"), []byte("ca"), at)
	if !bytes.Equal(a, b) {
		t.Error("the same inputs gave different layers")
	}
	c, _ := rootfs([]byte("bin"), []byte("ca"), time.Unix(1700000000, 0))
	if bytes.Equal(a, c) {
		t.Error("another timestamp gave the same layer")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(at) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, at)
		}
	}
	if got := strings.Join(names, " "); !strings.Contains(got, "usr/local/bin/palisade") || !strings.Contains(got, "tmp/") {
		t.Errorf("entries = %s", got)
	}
}

func TestRunErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing to do", []string{"--binary", "x"}, "nothing to do"},
		{"extra argument", []string{"--layout", "d", "extra"}, `unexpected argument "extra"`},
		{"missing binary", []string{"--binary", "/nonexistent/palisade", "--layout", "d", "--ca-bundle", ""}, "/nonexistent/palisade"},
		{"bad repository", []string{"--repository", "Bad Repo", "--layout", "d"}, `repository "Bad Repo"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestReadBinaryInfoNotStatic checks a cgo binary is refused: the test
// binary itself, when cgo is on (it is with -race).
func TestReadBinaryInfoNotStatic(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	info, err := ReadBinaryInfo(self)
	if os.Getenv("CGO_ENABLED") == "0" {
		t.Skipf("test binary built without cgo (%+v)", info)
	}
	if err == nil || !strings.Contains(err.Error(), "not a static binary") {
		t.Errorf("ReadBinaryInfo(test binary) = %+v, %v; want a not-static error", info, err)
	}
}

func TestVersionFromLDFlags(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"-X main.version=0.1.0", "0.1.0"},
		{"-s -w -X main.version=v1.2.3-4-gabc -X other.x=y", "v1.2.3-4-gabc"},
		{"-X=main.version=1.0", "1.0"},
		{"-X 'main.version=2.0'", "2.0"},
		{"-X other.version=1", ""},
		{"", ""},
	} {
		if got := versionFromLDFlags(tc.in); got != tc.want {
			t.Errorf("versionFromLDFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPushRef(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "127.0.0.1:5000/palisade", want: "127.0.0.1:5000/palisade:1.0"},
		{in: "127.0.0.1:5000/palisade:edge", want: "127.0.0.1:5000/palisade:edge"},
		{in: "registry.example/team/palisade", want: "registry.example/team/palisade:1.0"},
		{in: "registry.example/palisade@sha256:abc", err: "a digest cannot be pushed to"},
		{in: "registry.example/Bad", err: `push reference "registry.example/Bad:1.0"`},
	} {
		got, err := pushRef(tc.in, "1.0", false)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("pushRef(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
		case err != nil:
			t.Errorf("pushRef(%q): %v", tc.in, err)
		case got.String() != tc.want:
			t.Errorf("pushRef(%q) = %q, want %q", tc.in, got.String(), tc.want)
		}
	}
	if ref, err := pushRef("registry.example/p", "1", true); err != nil || ref.Scheme() != "http" {
		t.Errorf("insecure pushRef = %v (scheme %s), %v; want http", ref, ref.Scheme(), err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"default", func(*Config) {}, ""},
		{"no binary", func(c *Config) { c.Binary = "" }, "binary: empty"},
		{"bad tag", func(c *Config) { c.Tag = "a b" }, `tag "a b"`},
		{"negative epoch", func(c *Config) { c.Epoch = -1 }, "epoch -1"},
	} {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}
