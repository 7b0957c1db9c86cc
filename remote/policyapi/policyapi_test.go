package policyapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/apiclient"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/store"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

// server runs the real API router with the policy module over a real
// single-replica store, and returns clients for an admin and a reader and
// the store.
func server(t *testing.T) (admin, reader *apiclient.Client, st *store.Store) {
	t.Helper()
	st = storetest.Open(t, "p1")
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
	pcfg := policystore.DefaultConfig()
	pcfg.KV = st
	ps, err := policystore.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	acfg := DefaultConfig()
	acfg.Policy = ps
	mod, err := New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	rcfg := api.DefaultConfig()
	rcfg.Store = st
	rcfg.Auth = authn
	rcfg.Cluster = func() clusterinfo.Info { return clusterinfo.Info{Name: "t", Role: clusterinfo.Standalone} }
	rcfg.Registry = prometheus.NewRegistry()
	rcfg.Modules = []httpapi.Module{mod}
	srv, err := api.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	client := func(user, pw string) *apiclient.Client {
		c, err := apiclient.New(apiclient.Config{URL: hs.URL, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var resp api.LoginResponse
		if err := c.Do(ctx, "POST", "/v1/auth/login", api.LoginRequest{Username: user, Password: pw}, &resp); err != nil {
			t.Fatal(err)
		}
		return c.WithToken(resp.Token)
	}
	return client("admin", "admin-password-1"), client("rita", "reader-password-1"), st
}

// postYAML sends a YAML body and decodes the JSON answer.
func postYAML(c *apiclient.Client, path, contentType, body string, out any) error {
	resp, err := c.Raw(context.Background(), "POST", path, contentType, strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func apiErr(err error) *apierr.Error {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae
	}
	return &apierr.Error{Message: fmt.Sprint(err)}
}

const shop = `apiVersion: palisade.dev/v1
kind: ClusterSecurityRule
metadata: {name: web}
spec:
  target:
    selector: {name: web, criteria: [{key: app, op: "=", value: web}]}
    mode: Monitor
  egress:
  - {name: web-to-db, selector: {name: db}, ports: tcp/5432, action: allow}
---
apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: db}
spec: {selector: {name: db, criteria: [{key: app, op: "=", value: postgres}]}}
---
apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: cache}
spec: {selector: {name: cache, criteria: [{key: app, op: "=", value: redis}]}}
`

func TestPolicyRoutes(t *testing.T) {
	admin, reader, st := server(t)
	ctx := context.Background()

	var res policystore.ApplyResult
	if err := postYAML(admin, "/v1/policy/apply?dryRun=true", ContentTypeYAML, shop, &res); err != nil {
		t.Fatal(err)
	}
	if res.Applied || !res.DryRun || len(res.Documents) != 3 || !res.Plan.Changed() {
		t.Fatalf("dry run = %+v", res)
	}
	var gl GroupList
	if err := admin.Do(ctx, "GET", "/v1/groups", nil, &gl); err != nil || gl.Total != 0 {
		t.Fatalf("groups after dry run: %+v, %v", gl, err)
	}
	if err := postYAML(admin, "/v1/policy/apply", ContentTypeYAML+"; charset=utf-8", shop, &res); err != nil {
		t.Fatal(err)
	}
	if !res.Applied {
		t.Fatalf("apply = %+v", res)
	}

	errTests := []struct {
		name   string
		client *apiclient.Client
		path   string
		ctype  string
		body   string
		status int
		field  string
		text   string
	}{
		{"reader", reader, "/v1/policy/apply", ContentTypeYAML, shop, 403, "", "reader"},
		{"bad ports", admin, "/v1/policy/apply", ContentTypeYAML, strings.Replace(shop, "tcp/5432", "tcp/70000", 1), 400, "ports", `network rule "web-to-db"`},
		{"bad flag", admin, "/v1/policy/apply?dryRun=maybe", ContentTypeYAML, shop, 400, "dryRun", "maybe"},
		{"bad type", admin, "/v1/policy/apply", "image/png", shop, 400, "Content-Type", "image/png"},
		{"not yaml", admin, "/v1/policy/apply", ContentTypeYAML, "{{{", 400, "body", "document 1"},
		{"import reader", reader, "/v1/policy/import-neuvector", ContentTypeYAML, "", 403, "", "reader"},
		{"import garbage", admin, "/v1/policy/import-neuvector", ContentTypeYAML, "kind: Nothing\n", 400, "body", ""},
	}
	for _, tt := range errTests {
		var out any
		err := postYAML(tt.client, tt.path, tt.ctype, tt.body, &out)
		ae := apiErr(err)
		if ae.Status() != tt.status || ae.Field != tt.field || !strings.Contains(ae.Message, tt.text) {
			t.Errorf("%s: %v (status %d), want %d, field %q, mentioning %q", tt.name, err, ae.Status(), tt.status, tt.field, tt.text)
		}
	}

	// Listings page and filter.
	if err := admin.Do(ctx, "GET", "/v1/groups?limit=2&offset=1", nil, &gl); err != nil {
		t.Fatal(err)
	}
	if gl.Total != 3 || len(gl.Items) != 2 || gl.Items[0].Name != "db" || gl.Offset != 1 {
		t.Fatalf("groups page = %+v", gl)
	}
	var rl RuleList
	if err := reader.Do(ctx, "GET", "/v1/rules?group=db&source=code", nil, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Total != 1 || rl.Items[0].Name != "web-to-db" || rl.Items[0].Order != 1 {
		t.Fatalf("rules = %+v", rl)
	}
	for _, q := range []string{"limit=0", "limit=x", "offset=-1", "source=nobody", "learned=perhaps"} {
		err := reader.Do(ctx, "GET", "/v1/rules?"+q, nil, &rl)
		if ae := apiErr(err); ae.Status() != 400 || ae.Field != strings.Split(q, "=")[0] {
			t.Errorf("GET /v1/rules?%s: %v, want 400 naming the parameter", q, err)
		}
	}

	// Modes.
	var mr policystore.ModeResult
	if err := admin.Do(ctx, "PUT", "/v1/modes", policystore.ModeRequest{Group: "db", Mode: "protect"}, &mr); err != nil {
		t.Fatal(err)
	}
	if err := reader.Do(ctx, "GET", "/v1/groups?group=db", nil, &gl); err != nil || gl.Items[0].NetworkMode != "protect" {
		t.Fatalf("db after mode set: %+v, %v", gl, err)
	}
	fed := `{"apiVersion":"palisade.dev/v1","kind":"GroupDefinition","metadata":{"name":"dns"},"spec":{"selector":{"name":"dns","criteria":[{"key":"address","op":"=","value":"10.0.0.10"}]}}}`
	if _, err := st.Put(ctx, policystore.PrefixFederated+"GroupDefinition/dns", []byte(fed)); err != nil {
		t.Fatal(err)
	}
	modeTests := []struct {
		client *apiclient.Client
		body   any
		status int
	}{
		{reader, policystore.ModeRequest{Group: "db", Mode: "monitor"}, 403},
		{admin, policystore.ModeRequest{Group: "nosuch", Mode: "monitor"}, 404},
		{admin, policystore.ModeRequest{Group: "dns", Mode: "monitor"}, 403},
		{admin, policystore.ModeRequest{Group: "db", Mode: "loud"}, 400},
		{admin, map[string]any{"group": "db", "mode": "monitor", "colour": 1}, 400},
	}
	for _, tt := range modeTests {
		err := tt.client.Do(ctx, "PUT", "/v1/modes", tt.body, &mr)
		if ae := apiErr(err); ae.Status() != tt.status {
			t.Errorf("PUT /v1/modes %+v: %v, want %d", tt.body, err, tt.status)
		}
	}
	// Writing a federated object's document is refused.
	fedYAML := "apiVersion: palisade.dev/v1\nkind: GroupDefinition\nmetadata: {name: dns}\nspec: {selector: {name: dns, criteria: [{key: address, op: \"=\", value: 10.0.0.11}]}}\n"
	if err := postYAML(admin, "/v1/policy/apply", ContentTypeYAML, fedYAML, &res); apiErr(err).Status() != 403 || !strings.Contains(err.Error(), "GroupDefinition dns") {
		t.Errorf("apply over a federated document: %v, want 403 naming it", err)
	}

	// Export is YAML with the federated document marked.
	resp, err := reader.Raw(ctx, "GET", "/v1/policy/export", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, ContentTypeYAML) {
		t.Errorf("export content type = %q", ct)
	}
	objs, err := code.Decode(body)
	if err != nil || len(objs) != 4 {
		t.Fatalf("export decodes to %d documents, %v:\n%s", len(objs), err, body)
	}
	if !strings.Contains(string(body), "palisade.dev/source: federated") {
		t.Errorf("export does not mark the federated document:\n%s", body)
	}
	var status Status
	if err := reader.Do(ctx, "GET", "/v1/policy", nil, &status); err != nil || status.Groups != 4 || len(status.Problems) != 0 {
		t.Errorf("status = %+v, %v", status, err)
	}
}

func TestToAPIError(t *testing.T) {
	tests := []struct {
		err    error
		status int
	}{
		{&policystore.ReadOnlyError{Object: "group \"web\""}, http.StatusForbidden},
		{fmt.Errorf("x: %w", &policystore.InvalidError{Field: "ports", Problem: "bad"}), http.StatusBadRequest},
		{fmt.Errorf("%w \"x\"", policystore.ErrUnknownGroup), http.StatusNotFound},
		{fmt.Errorf("apply policy: %w", &store.ConflictError{Key: policystore.KeyRevision, Reason: "revision is 9, want 8"}), http.StatusConflict},
	}
	for _, tt := range tests {
		if got := apiErr(toAPIError(tt.err)).Status(); got != tt.status {
			t.Errorf("toAPIError(%v) status %d, want %d", tt.err, got, tt.status)
		}
	}
	plain := errors.New("boom")
	if toAPIError(plain) != plain {
		t.Error("other errors must pass through to the router's mapping")
	}
}
