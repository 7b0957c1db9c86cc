package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func newConsole(t *testing.T, cfg Config) *Console {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServe(t *testing.T) {
	c := newConsole(t, DefaultConfig())
	tests := []struct {
		method, path string
		want         int
		wantType     string
		wantLocation string
	}{
		{"GET", "/", http.StatusFound, "", "/ui/"},
		{"GET", "/ui", http.StatusFound, "", "/ui/"},
		{"GET", "/ui/", http.StatusOK, "text/html; charset=utf-8", ""},
		{"GET", "/ui/app.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"GET", "/ui/netmap.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"GET", "/ui/network.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"GET", "/ui/events.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"GET", "/ui/registries.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"GET", "/ui/app.css", http.StatusOK, "text/css; charset=utf-8", ""},
		{"HEAD", "/ui/app.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"GET", "/ui/missing.js", http.StatusNotFound, "", ""},
		{"GET", "/ui/../console.go", http.StatusNotFound, "", ""},
		{"GET", "/elsewhere", http.StatusNotFound, "", ""},
		{"POST", "/ui/", http.StatusMethodNotAllowed, "", ""},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, "http://x"+tt.path, nil)
		req.URL.Path = tt.path // keep "..": the handler must refuse it itself
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, rec.Code, tt.want)
			continue
		}
		if tt.wantType != "" && rec.Header().Get("Content-Type") != tt.wantType {
			t.Errorf("%s %s: Content-Type %q, want %q", tt.method, tt.path, rec.Header().Get("Content-Type"), tt.wantType)
		}
		if tt.wantLocation != "" && rec.Header().Get("Location") != tt.wantLocation {
			t.Errorf("%s %s: Location %q, want %q", tt.method, tt.path, rec.Header().Get("Location"), tt.wantLocation)
		}
		if rec.Code == http.StatusOK {
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "ETag"} {
				if rec.Header().Get(h) == "" {
					t.Errorf("%s %s: no %s header", tt.method, tt.path, h)
				}
			}
		}
	}
}

func TestETagRevalidates(t *testing.T) {
	c := newConsole(t, DefaultConfig())
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/app.js", nil))
	etag := rec.Header().Get("ETag")
	req := httptest.NewRequest("GET", "/ui/app.js", nil)
	req.Header.Set("If-None-Match", etag)
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("revalidate with ETag %s: status %d, want 304", etag, rec.Code)
	}
}

func TestTitleIsEscaped(t *testing.T) {
	c := newConsole(t, Config{Title: `<script>alert(1)</script>"`})
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/", nil))
	body := rec.Body.String()
	if strings.Contains(body, "<script>alert") {
		t.Errorf("title reached the page unescaped:\n%s", body)
	}
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;&quot;") {
		t.Errorf("escaped title missing from the page:\n%s", body)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg     Config
		wantErr bool
	}{
		{DefaultConfig(), false},
		{Config{Title: " "}, true},
	} {
		if err := tt.cfg.Validate(); (err != nil) != tt.wantErr {
			t.Errorf("Validate(%+v) = %v, want error %v", tt.cfg, err, tt.wantErr)
		}
	}
}

// The console must work with no network: nothing it serves may load from
// another origin, and no script may parse data as markup.
func TestPagesAreSelfContained(t *testing.T) {
	c := newConsole(t, DefaultConfig())
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//|import\(\s*["'](https?:)?//`)
	markup := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`)
	for name, a := range c.assets {
		if m := external.Find(a.body); m != nil {
			t.Errorf("%s loads from another origin: %q", name, m)
		}
		if strings.HasSuffix(name, ".js") {
			if m := markup.Find(a.body); m != nil {
				t.Errorf("%s uses %q; build elements from text instead", name, m)
			}
		}
	}
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/ui/", nil))
	page, _ := io.ReadAll(rec.Body)
	for _, lazy := range []string{"netmap.js", "network.js", "events.js", "registries.js"} {
		if strings.Contains(string(page), lazy) {
			t.Errorf("the first page loads %s; only the page that needs it should", lazy)
		}
	}
	// app.js loads the other pages only on demand, never statically.
	static := regexp.MustCompile(`(?m)^import .* from`)
	if m := static.Find(c.assets["app.js"].body); m != nil {
		t.Errorf("app.js imports statically: %q", m)
	}
}
