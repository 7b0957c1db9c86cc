package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/controller"
	"github.com/palisade-sec/palisade/shared/apiclient"
	"github.com/palisade-sec/palisade/shared/apidoc"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/store"
)

// wiredController is one controller replica run in this process with
// every module `palisade controller` wires, as a promoted primary with an
// admission webhook.
type wiredController struct {
	url    string
	caFile string
	token  string            // admin's session
	client *apiclient.Client // logged in as admin
	engine *gin.Engine
	store  *store.Store // the replica's replicated store
}

func freeLoopback(t *testing.T, used map[string]bool) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, uerr := net.ListenPacket("udp", addr)
		l.Close()
		if uerr == nil && !used[addr] {
			u.Close()
			used[addr] = true
			return addr
		}
	}
	t.Fatal("no loopback port free for TCP and UDP")
	return ""
}

func startWiredController(t *testing.T) *wiredController {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "admin-password")
	if err := os.WriteFile(pw, []byte("admin-password-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	apiAddr := freeLoopback(t, used)
	args := []string{"--name", "c1", "--data-dir", filepath.Join(dir, "data"), "--api-addr", apiAddr,
		"--raft-addr", freeLoopback(t, used), "--gossip-addr", freeLoopback(t, used), "--fed-addr", freeLoopback(t, used),
		"--agent-addr", freeLoopback(t, used), "--admission-addr", freeLoopback(t, used),
		"--admin-password-file", pw, "--log-level", "error"}
	var logs bytes.Buffer
	var logMu sync.Mutex
	env := &cliEnv{stdout: io.Discard, stderr: lockedWriter{&logMu, &logs}, getenv: func(string) string { return "" }}
	cfg, err := controllerConfig(env, args)
	if err != nil {
		t.Fatal(err)
	}
	handles := make(chan *controller.Handle, 1)
	modules := cfg.Modules
	cfg.Modules = func(h *controller.Handle) []httpapi.Module {
		handles <- h
		return modules(h)
	}
	c, err := controller.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("controller log:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	var h *controller.Handle
	select {
	case h = <-handles:
	case err := <-done:
		t.Fatalf("controller stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("controller did not build its modules within 60s")
	}
	w := &wiredController{url: "https://" + apiAddr}
	caFile := filepath.Join(dir, "data", "ca.crt")
	anon, err := apiclient.New(apiclient.Config{URL: w.url, CAFile: caFile, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var login api.LoginResponse
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = anon.Do(ctx, "POST", "/v1/auth/login", api.LoginRequest{Username: "admin", Password: "admin-password-1"}, &login)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log in: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.client, w.caFile, w.token = anon.WithToken(login.Token), caFile, login.Token
	eng, ok := h.API().(*gin.Engine)
	if !ok {
		t.Fatalf("the API handler is %T, not a gin engine", h.API())
	}
	w.engine, w.store = eng, h.Store
	return w
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// get returns the status and body of an authenticated GET.
func (w *wiredController) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := w.client.Raw(context.Background(), "GET", path, "", nil)
	var ae *apierr.Error
	if errors.As(err, &ae) {
		b, _ := json.Marshal(ae)
		return ae.Status(), b
	}
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, b
}

func (w *wiredController) send(t *testing.T, method, path, contentType, body string) {
	t.Helper()
	resp, err := w.client.Raw(context.Background(), method, path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// seed puts data behind every listing: a user, policy, a registry, a scan
// verdict, a federation with federated policy and history, tokens.
func (w *wiredController) seed(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	policyYAML, err := os.ReadFile(filepath.Join("..", "..", "policy", "code", "testdata", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w.send(t, "POST", "/v1/users", "application/json", `{"name":"rita","role":"reader","password":"reader-password-1"}`)
	w.send(t, "POST", "/v1/policy/apply", "application/yaml", string(policyYAML))
	w.send(t, "POST", "/v1/fed/promote", "application/json", `{}`)
	w.send(t, "POST", "/v1/fed/tokens", "application/json", `{"ttl":"1h"}`)
	w.send(t, "POST", "/v1/agents/tokens", "application/json", `{"ttl":"1h"}`)
	w.send(t, "POST", "/v1/fed/policy/apply", "application/yaml", `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata:
  name: fed-web
spec:
  selector:
    name: fed-web
    criteria:
    - {key: app, op: "=", value: web}
`)
	w.send(t, "POST", "/v1/registries", "application/json", `{"name":"local","url":"127.0.0.1:1","interval":"1h","insecure":true}`)
	digest := "sha256:" + strings.Repeat("ab", 32)
	w.send(t, "PUT", "/v1/scan/results/"+digest, "application/json",
		`{"ref":"127.0.0.1:1/app:1.0","critical":1,"high":2,"medium":0,"cves":["CVE-2024-0001"]}`)
	var res struct {
		Total int `json:"total"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for res.Total == 0 && time.Now().Before(deadline) {
		if err := w.client.Do(ctx, "GET", "/v1/scan/results", nil, &res); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if res.Total == 0 {
		t.Fatal("the stored verdict never showed in /v1/scan/results")
	}
}

// TestOpenAPIDocumentMatchesRoutes holds the served OpenAPI document to the
// routes a fully wired controller registers, in both directions, and
// checks real responses of every parameterless GET against the
// documented schemas.
func TestOpenAPIDocumentMatchesRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a controller")
	}
	w := startWiredController(t)

	// The document is public.
	anon := w.client.WithToken("")
	raw, err := anon.Raw(context.Background(), "GET", "/v1/openapi.json", "", nil)
	if err != nil {
		t.Fatalf("GET /v1/openapi.json without a session: %v", err)
	}
	body, _ := io.ReadAll(raw.Body)
	raw.Body.Close()
	var doc apidoc.Document
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("decode OpenAPI document: %v", err)
	}
	for _, p := range doc.Lint() {
		t.Errorf("OpenAPI structure: %s", p)
	}

	var routes []apidoc.Route
	for _, r := range w.engine.Routes() {
		if strings.HasPrefix(r.Path, "/v1/") {
			routes = append(routes, apidoc.Route{Method: r.Method, Path: r.Path})
		}
	}
	for _, want := range []string{"/v1/users", "/v1/groups", "/v1/agents", "/v1/registries", "/v1/admission/status", "/v1/fed/status", "/v1/fed/link"} {
		if !slices.ContainsFunc(routes, func(r apidoc.Route) bool { return r.Path == want }) {
			t.Errorf("route %s is missing: a module was not wired", want)
		}
	}
	for _, p := range apidoc.Check(&doc, routes) {
		t.Error(p)
	}

	w.seed(t)
	checked := 0
	for path, item := range doc.Paths {
		op, ok := (*item)["get"]
		if !ok || strings.Contains(path, "{") {
			continue
		}
		schema, err := doc.ResponseSchema("GET", path, http.StatusOK)
		if err != nil {
			continue // not JSON (export, this document)
		}
		status, b := w.get(t, path)
		if op.Paged() && status != http.StatusOK {
			t.Errorf("GET %s (a listing) = %d %s, want 200", path, status, b)
			continue
		}
		if status != http.StatusOK {
			if schema, err = doc.ResponseSchema("GET", path, status); err != nil {
				t.Errorf("GET %s = %d: %v", path, status, err)
				continue
			}
		}
		if err := doc.ValidateJSON(schema, b); err != nil {
			t.Errorf("GET %s = %d: body does not match the document: %v\n%s", path, status, err, b)
		}
		checked++
	}
	for _, path := range []string{"/v1/registries/local", "/v1/scan/results/sha256:" + strings.Repeat("ab", 32)} {
		status, b := w.get(t, path)
		schema, err := doc.ResponseSchema("GET", path, status)
		if err != nil {
			t.Errorf("GET %s = %d: %v", path, status, err)
			continue
		}
		if err := doc.ValidateJSON(schema, b); err != nil {
			t.Errorf("GET %s = %d: body does not match the document: %v\n%s", path, status, err, b)
		}
		checked++
	}
	ops := 0
	for _, item := range doc.Paths {
		ops += len(*item)
	}
	t.Logf("OpenAPI document: %d bytes, %d paths, %d operations, %d schemas; %d registered routes; %d live responses validated",
		len(body), len(doc.Paths), ops, len(doc.Components.Schemas), len(routes), checked)
	if checked < 20 {
		t.Errorf("checked %d responses, want at least 20", checked)
	}
}

// TestEveryListingPagesAndRefusesBadPages finds the listings in the
// document (JSON bodies with items) and checks each takes limit and
// offset, honours them, and names the parameter of a bad value.
func TestEveryListingPagesAndRefusesBadPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a controller")
	}
	w := startWiredController(t)
	w.seed(t)
	_, body := w.get(t, "/v1/openapi.json")
	var doc apidoc.Document
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	listings := 0
	for path, item := range doc.Paths {
		op, ok := (*item)["get"]
		if !ok || strings.Contains(path, "{") {
			continue
		}
		schema, err := doc.ResponseSchema("GET", path, http.StatusOK)
		if err != nil || !doc.IsListing(schema) {
			continue
		}
		listings++
		if !op.Paged() {
			t.Errorf("GET %s lists items but is not paged: read ?limit=&offset= with httpapi.ParsePage, answer httpapi.NewList (or a list type with items, total, limit, offset) and set Paged: true on its httpapi.Op", path)
			continue
		}
		for _, bad := range []struct{ query, field string }{{"limit=0", "limit"}, {"limit=x", "limit"}, {"limit=1000000", "limit"}, {"offset=-1", "offset"}} {
			status, b := w.get(t, path+"?"+bad.query)
			var ae apierr.Error
			json.Unmarshal(b, &ae)
			if status != http.StatusBadRequest || ae.Field != bad.field {
				t.Errorf("GET %s?%s = %d %s, want 400 naming %q", path, bad.query, status, b, bad.field)
			}
		}
		status, b := w.get(t, path+"?limit=1&offset=0")
		var page struct {
			Items  []json.RawMessage `json:"items"`
			Total  int               `json:"total"`
			Limit  int               `json:"limit"`
			Offset int               `json:"offset"`
		}
		if err := json.Unmarshal(b, &page); status != http.StatusOK || err != nil {
			t.Errorf("GET %s?limit=1 = %d %s (%v)", path, status, b, err)
			continue
		}
		if page.Limit != 1 || page.Offset != 0 || len(page.Items) > 1 || (page.Total > 0 && len(page.Items) != 1) {
			t.Errorf("GET %s?limit=1: limit %d offset %d, %d items of %d", path, page.Limit, page.Offset, len(page.Items), page.Total)
		}
		status, b = w.get(t, fmt.Sprintf("%s?offset=%d", path, page.Total))
		if err := json.Unmarshal(b, &page); status != http.StatusOK || err != nil || len(page.Items) != 0 || page.Items == nil {
			t.Errorf("GET %s?offset=total = %d %s, want an empty items array", path, status, b)
		}
	}
	if listings < 15 {
		t.Errorf("found %d listings in the document, want at least 15", listings)
	}
}
