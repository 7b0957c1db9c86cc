package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

// testServer runs the real API over a real single-replica store with an
// admin and a reader, and a UI handler that answers "ui <path>".
func testServer(t *testing.T) *httptest.Server {
	t.Helper()
	st := storetest.Open(t, "a1")
	ctx := context.Background()
	authn, err := auth.New(st, auth.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := authn.Bootstrap(ctx, "admin-password-1"); err != nil {
		t.Fatal(err)
	}
	if err := authn.CreateUser(ctx, "rita", auth.RoleReader, "reader-password-1"); err != nil {
		t.Fatal(err)
	}
	acfg := DefaultConfig()
	acfg.Store = st
	acfg.Auth = authn
	acfg.Cluster = func() clusterinfo.Info { return clusterinfo.Info{Name: "t", Role: clusterinfo.Standalone} }
	acfg.Registry = prometheus.NewRegistry()
	acfg.UI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ui "+r.URL.Path) })
	srv, err := New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

type browserLogin struct {
	token, csrf  string
	csrfHTTPOnly bool
}

func login(t *testing.T, base, user, pw string) browserLogin {
	t.Helper()
	body, _ := json.Marshal(LoginRequest{Username: user, Password: pw})
	resp, err := http.Post(base+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: status %d", user, resp.StatusCode)
	}
	var out browserLogin
	for _, c := range resp.Cookies() {
		switch c.Name {
		case SessionCookie:
			out.token = c.Value
		case CSRFCookie:
			out.csrf, out.csrfHTTPOnly = c.Value, c.HttpOnly
		}
	}
	return out
}

func TestLoginSetsCSRFCookieBoundToSession(t *testing.T) {
	hs := testServer(t)
	l := login(t, hs.URL, "admin", "admin-password-1")
	if l.token == "" || l.csrf == "" {
		t.Fatalf("login cookies: session %q csrf %q, want both set", l.token, l.csrf)
	}
	if l.csrfHTTPOnly {
		t.Errorf("CSRF cookie is HttpOnly; the console must be able to read it")
	}
	if got, want := l.csrf, CSRFToken(l.token); got != want {
		t.Errorf("CSRF cookie = %q, want CSRFToken(session) %q", got, want)
	}
	if other := login(t, hs.URL, "admin", "admin-password-1"); other.csrf == l.csrf {
		t.Errorf("two sessions share the CSRF token %q", l.csrf)
	}
}

func TestCSRFOnCookieAuthenticatedWrites(t *testing.T) {
	hs := testServer(t)
	admin := login(t, hs.URL, "admin", "admin-password-1")
	other := login(t, hs.URL, "admin", "admin-password-1")
	reader := login(t, hs.URL, "rita", "reader-password-1")
	n := 0
	newUser := func() string {
		n++
		b, _ := json.Marshal(CreateUserRequest{Name: "u" + strings.Repeat("x", n), Role: auth.RoleReader, Password: "password-123456"})
		return string(b)
	}
	tests := []struct {
		name         string
		method, path string
		cookie       string
		bearer       string
		csrf         string
		want         int
	}{
		{"cookie write without header", "POST", "/v1/users", admin.token, "", "", http.StatusForbidden},
		{"cookie write with wrong header", "POST", "/v1/users", admin.token, "", "nope", http.StatusForbidden},
		{"cookie write with another session's token", "POST", "/v1/users", admin.token, "", other.csrf, http.StatusForbidden},
		{"cookie write with its token", "POST", "/v1/users", admin.token, "", admin.csrf, http.StatusCreated},
		{"bearer write needs no header", "POST", "/v1/users", "", admin.token, "", http.StatusCreated},
		{"cookie read needs no header", "GET", "/v1/users", admin.token, "", "", http.StatusOK},
		{"reader with a good token is still refused", "POST", "/v1/users", reader.token, "", reader.csrf, http.StatusForbidden},
		{"no session", "POST", "/v1/users", "", "", admin.csrf, http.StatusUnauthorized},
		{"cookie logout without header", "POST", "/v1/auth/logout", other.token, "", "", http.StatusForbidden},
		{"cookie logout with its token", "POST", "/v1/auth/logout", other.token, "", other.csrf, http.StatusNoContent},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.method == "POST" && tt.path == "/v1/users" {
			body = strings.NewReader(newUser())
		}
		req, _ := http.NewRequest(tt.method, hs.URL+tt.path, body)
		req.Header.Set("Content-Type", "application/json")
		if tt.cookie != "" {
			req.AddCookie(&http.Cookie{Name: SessionCookie, Value: tt.cookie})
		}
		if tt.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+tt.bearer)
		}
		if tt.csrf != "" {
			req.Header.Set(CSRFHeader, tt.csrf)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d (%s), want %d", tt.name, resp.StatusCode, b, tt.want)
		}
	}
}

func TestUIServesReadsOutsideTheAPI(t *testing.T) {
	hs := testServer(t)
	tests := []struct {
		method, path string
		wantUI       bool
		want         int
	}{
		{"GET", "/", true, 200},
		{"GET", "/ui/fleet", true, 200},
		{"HEAD", "/ui/app.js", true, 200},
		{"GET", "/v1/nothing-here", false, 404},
		{"GET", "/v1", false, 404},
		{"POST", "/ui/fleet", false, 404},
		{"GET", "/metrics", false, 200},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, hs.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		gotUI := strings.HasPrefix(string(b), "ui ") || (tt.method == "HEAD" && resp.Header.Get("Content-Type") != "application/json; charset=utf-8")
		if resp.StatusCode != tt.want || gotUI != tt.wantUI {
			t.Errorf("%s %s: status %d, served by UI %v (%.60s), want %d, UI %v", tt.method, tt.path, resp.StatusCode, gotUI, b, tt.want, tt.wantUI)
		}
	}
}
