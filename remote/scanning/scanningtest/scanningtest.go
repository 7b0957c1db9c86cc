// Package scanningtest runs a real OCI registry (go-containerregistry's
// registry package) on loopback inside a test process, counting the
// manifest and blob downloads it serves, and builds small Alpine images
// whose installed-package database lists a chosen package version, for the
// tests of registry scanning.
package scanningtest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Registry is an in-process OCI registry with download counters.
type Registry struct {
	// Host is the registry's 127.0.0.1:PORT.
	Host string

	srv *httptest.Server

	mu        sync.Mutex
	blobs     map[string]int // digest -> GETs
	manifests int
	fail      map[string]int // repository -> manifest requests still to fail
	// user and pass, when set, are required for pulls (see RequireBasicAuth).
	user, pass string
	bearer     string
	refused    int
	// held repositories' blob downloads wait for their channel to close.
	held    map[string]chan struct{}
	holding int
}

// NewRegistry starts a registry that the test's cleanup stops.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{blobs: map[string]int{}, fail: map[string]int{}, held: map[string]chan struct{}{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !r.authorized(req) {
			r.mu.Lock()
			r.refused++
			r.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="scanningtest"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		if repo, kind, _, ok := splitPath(req.URL.Path); ok && kind == "blobs" && req.Method == http.MethodGet {
			r.mu.Lock()
			hold := r.held[repo]
			if hold != nil {
				r.holding++
			}
			r.mu.Unlock()
			if hold != nil {
				select {
				case <-hold:
				case <-req.Context().Done():
				}
				r.mu.Lock()
				r.holding--
				r.mu.Unlock()
			}
		}
		if repo, kind, ref, ok := splitPath(req.URL.Path); ok {
			r.mu.Lock()
			failing := kind == "manifests" && r.fail[repo] > 0
			if failing {
				r.fail[repo]--
			}
			if req.Method == http.MethodGet && !failing {
				switch kind {
				case "blobs":
					r.blobs[ref]++
				case "manifests":
					r.manifests++
				}
			}
			r.mu.Unlock()
			if failing {
				http.Error(w, "injected failure", http.StatusForbidden)
				return
			}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(func() {
		r.mu.Lock()
		for repo, c := range r.held {
			close(c)
			delete(r.held, repo)
		}
		r.mu.Unlock()
		r.srv.Close()
	})
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// RequireBasicAuth makes pulls need HTTP basic authentication as user
// with pass, as a private registry that lets anyone list its catalog and
// tags but not pull does: the /v2/ ping, manifests and blobs answer 401
// with a Basic challenge to other requests. Push the test's images first:
// a push reads blobs too.
func (r *Registry) RequireBasicAuth(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.pass = user, pass
}

// Hold makes blob downloads of repo wait until the returned release is
// called (or the test ends), so that a test can act while a scanner is in
// the middle of pulling that image.
func (r *Registry) Hold(repo string) (release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := make(chan struct{})
	r.held[repo] = c
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.held[repo] == c {
			close(c)
			delete(r.held, repo)
		}
	}
}

// Holding returns how many blob downloads are waiting on Hold.
func (r *Registry) Holding() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holding
}

// RequireBearer is RequireBasicAuth for a static bearer token: pulls need
// "Authorization: Bearer TOKEN" (the challenge stays Basic, as registries
// that take personal access tokens in place of a password answer).
func (r *Registry) RequireBearer(token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bearer = token
}

// Refused returns how many requests were refused for want of credentials.
func (r *Registry) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

func (r *Registry) authorized(req *http.Request) bool {
	r.mu.Lock()
	user, pass, bearer := r.user, r.pass, r.bearer
	r.mu.Unlock()
	if user == "" && bearer == "" || (req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return true
	}
	p := req.URL.Path
	if strings.HasSuffix(p, "/tags/list") || p == "/v2/_catalog" {
		return true
	}
	if bearer != "" {
		return req.Header.Get("Authorization") == "Bearer "+bearer
	}
	u, pw, ok := req.BasicAuth()
	return ok && u == user && pw == pass
}

// splitPath reads /v2/REPO/(blobs|manifests)/REF.
func splitPath(p string) (repo, kind, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", "", false
	}
	for _, k := range []string{"/blobs/", "/manifests/"} {
		if i := strings.LastIndex(rest, k); i > 0 {
			return rest[:i], strings.Trim(k, "/"), rest[i+len(k):], true
		}
	}
	return "", "", "", false
}

// Push uploads img as REPO:TAG and returns its manifest digest.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// BlobGets returns how many times the blob with digest was downloaded.
func (r *Registry) BlobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobs[digest]
}

// TotalBlobGets returns how many blob downloads were served in all.
func (r *Registry) TotalBlobGets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.blobs {
		n += c
	}
	return n
}

// ManifestGets returns how many manifest downloads were served.
func (r *Registry) ManifestGets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifests
}

// FailManifests makes the next n manifest requests (GET or HEAD) for repo
// fail with 403 Forbidden (a status the registry client does not retry by itself).
func (r *Registry) FailManifests(repo string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[repo] = n
}

// AlpineImage builds a one-layer image of the given Alpine release whose
// apk database lists pkg at version, plus marker, a file that makes the
// layer (and so the digest) unique to the caller's choice.
func AlpineImage(t testing.TB, release, pkg, version, marker string) v1.Image {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct{ name, body string }{
		{"etc/os-release", "ID=alpine\nVERSION_ID=" + release + "\n"},
		{"lib/apk/db/installed", "P:" + pkg + "\nV:" + version + "\no:" + pkg + "\n\n"},
		{"etc/marker", marker},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, f.body)
	}
	tw.Close()
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// LayerDigests returns the digests of img's layers.
func LayerDigests(t testing.TB, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}
