// Package console is the controller's web console: a small set of static
// pages, embedded in the binary, that read and change the cluster (and, on
// a primary, the fleet) through the same /v1 API the CLI uses. Nothing is
// fetched from anywhere but the controller; the pages build every element
// from text, never from markup in data.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is where the console's pages live.
const Prefix = "/ui/"

// contentSecurityPolicy allows only the console's own scripts, styles and
// API: no inline script, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Config configures the console.
type Config struct {
	// Title is shown in the page header and the browser tab.
	Title string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Title: "Palisade"} }

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.Title) == "" {
		return errors.New("console: config: title is empty")
	}
	return nil
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Console serves the console's pages; it is an http.Handler for GET and
// HEAD requests outside the API.
type Console struct {
	assets map[string]asset // by path under static/
}

// New builds the console, reading its embedded pages once.
func New(cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Console{assets: map[string]asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			b = bytes.ReplaceAll(b, []byte("{{TITLE}}"), []byte(htmlEscape(cfg.Title)))
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		c.assets[name] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console: read embedded pages: %w", err)
	}
	if _, ok := c.assets["index.html"]; !ok {
		return nil, errors.New("console: embedded pages lack index.html")
	}
	return c, nil
}

func htmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")
	return r.Replace(s)
}

// ServeHTTP serves "/" (a redirect to the console), the console's page at
// Prefix and its scripts and styles under Prefix.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/" || p == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusFound)
		return
	}
	name, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if name == "" {
		name = "index.html"
	}
	a, ok := c.assets[name]
	if !ok || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// Revalidate every time: an upgraded controller serves new pages at
	// once, and an unchanged page costs a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
