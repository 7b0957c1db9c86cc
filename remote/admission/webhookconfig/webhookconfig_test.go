package webhookconfig

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// apiServer is an HTTPS endpoint that keeps one ValidatingWebhookConfiguration
// the way the API server does for this package: create, get, replace with a
// resourceVersion check, and an authentication check.
type apiServer struct {
	*httptest.Server
	mu     sync.Mutex
	obj    map[string]any
	rv     int
	writes int
	token  string
}

func newAPIServer(t *testing.T) *apiServer {
	a := &apiServer{token: "s3cret"}
	a.Server = httptest.NewTLSServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

func (a *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	status := func(code int, reason string) {
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "reason": reason, "message": reason + " here"})
	}
	if r.Header.Get("Authorization") != "Bearer "+a.token {
		status(401, "Unauthorized")
		return
	}
	const name = basePath + "/palisade-admission"
	var body map[string]any
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &body)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == name:
		if a.obj == nil {
			status(404, "NotFound")
			return
		}
		json.NewEncoder(w).Encode(a.obj)
	case r.Method == http.MethodPost && r.URL.Path == basePath:
		if a.obj != nil {
			status(409, "AlreadyExists")
			return
		}
		a.store(body)
		w.WriteHeader(201)
	case r.Method == http.MethodPut && r.URL.Path == name:
		if body["metadata"].(map[string]any)["resourceVersion"] != a.obj["metadata"].(map[string]any)["resourceVersion"] {
			status(409, "Conflict")
			return
		}
		a.store(body)
	default:
		status(405, "MethodNotAllowed")
	}
}

func (a *apiServer) store(obj map[string]any) {
	a.rv++
	a.writes++
	obj["metadata"].(map[string]any)["resourceVersion"] = strings.Repeat("1", a.rv)
	obj["metadata"].(map[string]any)["uid"] = "generated"
	a.obj = obj
}

// kubeconfig writes a kubeconfig for the server with the given user block.
func (a *apiServer) kubeconfig(t *testing.T, user string) string {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o600)
	os.WriteFile(filepath.Join(dir, "token"), []byte(a.token+"\n"), 0o600)
	kc := `apiVersion: v1
kind: Config
current-context: test
contexts:
- name: other
  context: {cluster: nowhere, user: nobody}
- name: test
  context: {cluster: c, user: u}
clusters:
- name: c
  cluster:
    server: ` + a.URL + `
    certificate-authority: ca.crt
users:
- name: u
  user:
` + user
	p := filepath.Join(dir, "kubeconfig")
	os.WriteFile(p, []byte(kc), 0o600)
	return p
}

func testConfig() Config {
	c := DefaultConfig()
	c.URL = "https://127.0.0.1:20443/validate"
	c.CABundle = []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	return c
}

func TestReconcile(t *testing.T) {
	a := newAPIServer(t)
	cl, err := LoadKubeconfig(a.kubeconfig(t, "    tokenFile: token\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	ctx := context.Background()
	steps := []struct {
		name   string
		before func()
		want   Action
	}{
		{"missing is created", nil, Created},
		{"correct is left alone", nil, Unchanged},
		{"edited failure policy is repaired", func() {
			a.obj["webhooks"].([]any)[0].(map[string]any)["failurePolicy"] = "Fail"
		}, Repaired},
		{"removed caBundle is repaired", func() {
			delete(a.obj["webhooks"].([]any)[0].(map[string]any)["clientConfig"].(map[string]any), "caBundle")
		}, Repaired},
		{"unrelated label is kept", func() {
			a.obj["metadata"].(map[string]any)["labels"].(map[string]any)["team"] = "sec"
		}, Unchanged},
		{"deleted is recreated", func() { a.obj = nil }, Created},
	}
	for _, s := range steps {
		if s.before != nil {
			a.mu.Lock()
			s.before()
			a.mu.Unlock()
		}
		got, err := Reconcile(ctx, cl, &c)
		if err != nil || got != s.want {
			t.Fatalf("%s: got %v, %v; want %v", s.name, got, err, s.want)
		}
	}
	// The stored object is what the API server needs.
	b, _ := json.Marshal(a.obj)
	var have ValidatingWebhookConfiguration
	json.Unmarshal(b, &have)
	wh := have.Webhooks[0]
	if wh.FailurePolicy != Ignore || wh.TimeoutSeconds != 3 || wh.SideEffects != "None" || string(wh.ClientConfig.CABundle) != string(c.CABundle) ||
		wh.ClientConfig.URL != c.URL || wh.NamespaceSelector.MatchExpressions[0].Values[0] != "kube-system" {
		t.Errorf("stored webhook %+v", wh)
	}
	// Fail on request.
	c.FailurePolicy = Fail
	if got, err := Reconcile(ctx, cl, &c); got != Repaired || err != nil {
		t.Fatalf("switch to Fail: %v %v", got, err)
	}
	if a.obj["webhooks"].([]any)[0].(map[string]any)["failurePolicy"] != Fail {
		t.Errorf("failure policy not switched")
	}
}

func TestReconcileUnauthorized(t *testing.T) {
	a := newAPIServer(t)
	cl, err := LoadKubeconfig(a.kubeconfig(t, "    token: wrong\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig()
	_, err = Reconcile(context.Background(), cl, &c)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 401 || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("err = %v, want a 401 StatusError", err)
	}
}

func TestLoadKubeconfigErrors(t *testing.T) {
	a := newAPIServer(t)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Certificate().Raw})
	tests := []struct {
		name, user, want string
	}{
		{"exec plugin", "    exec: {command: aws}\n", "exec credential plugins are not supported"},
		{"auth provider", "    auth-provider: {name: gcp}\n", "auth-provider plugins"},
		{"cert without key", "    client-certificate-data: " + base64.StdEncoding.EncodeToString(certPEM) + "\n", "given together"},
		{"bad base64", "    client-key-data: '%%%'\n    client-certificate-data: '%%%'\n", "not base64"},
		{"missing file", "    client-certificate: nope.crt\n    client-key: nope.key\n", "nope.crt"},
	}
	for _, tt := range tests {
		_, err := LoadKubeconfig(a.kubeconfig(t, tt.user))
		if !errors.Is(err, ErrKubeconfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	dir := t.TempDir()
	for _, tt := range []struct{ name, body, want string }{
		{"no context", "clusters: []\n", "current-context is not set"},
		{"unknown context", "current-context: x\n", `context "x" not found`},
		{"unknown cluster", "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n", `cluster "c" not found`},
		{"http server", "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'http://a'}}]\n", "not an https URL"},
		{"not yaml", "{", "kubeconfig"},
	} {
		p := filepath.Join(dir, tt.name)
		os.WriteFile(p, []byte(tt.body), 0o600)
		if _, err := LoadKubeconfig(p); !errors.Is(err, ErrKubeconfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := LoadKubeconfig(filepath.Join(dir, "absent")); !errors.Is(err, ErrKubeconfig) {
		t.Errorf("absent file: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
	}{
		{"policy", func(c *Config) { c.FailurePolicy = "ignore" }},
		{"timeout 0", func(c *Config) { c.TimeoutSeconds = 0 }},
		{"timeout 31", func(c *Config) { c.TimeoutSeconds = 31 }},
		{"no CA", func(c *Config) { c.CABundle = nil }},
		{"http URL", func(c *Config) { c.URL = "http://127.0.0.1/validate" }},
		{"URL with query", func(c *Config) { c.URL = "https://127.0.0.1/validate?x=1" }},
		{"no service", func(c *Config) { c.URL = ""; c.Service = Service{} }},
		{"interval", func(c *Config) { c.Interval = 0 }},
	} {
		c := testConfig()
		tt.mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	c := testConfig()
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	c.URL = ""
	if err := c.Validate(); err != nil {
		t.Errorf("service config: %v", err)
	}
	if d := Desired(&c); d.Webhooks[0].ClientConfig.Service == nil || d.Webhooks[0].ClientConfig.Service.Port != 443 {
		t.Errorf("service client config %+v", d.Webhooks[0].ClientConfig)
	}
}
