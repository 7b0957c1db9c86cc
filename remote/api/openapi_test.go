package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/apidoc"
	"github.com/palisade-sec/palisade/shared/apierr"
)

func getJSON(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestOpenAPIDocumentsTheCoreRoutes(t *testing.T) {
	hs := testServer(t)
	status, body := getJSON(t, hs.URL+"/v1/openapi.json", "")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/openapi.json without a session = %d, want 200 (public)", status)
	}
	var doc apidoc.Document
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range doc.Lint() {
		t.Errorf("lint: %s", p)
	}
	var routes []apidoc.Route
	for _, r := range hs.Config.Handler.(*gin.Engine).Routes() {
		if strings.HasPrefix(r.Path, "/v1/") {
			routes = append(routes, apidoc.Route{Method: r.Method, Path: r.Path})
		}
	}
	for _, p := range apidoc.Check(&doc, routes) {
		t.Error(p)
	}
	if op, ok := doc.Operation("DELETE", "/v1/users/{name}"); !ok || op.Access != "write" {
		t.Errorf("DELETE /v1/users/{name} = %+v, want write access", op)
	}

	admin := login(t, hs.URL, "admin", "admin-password-1")
	tests := []struct {
		query     string
		status    int
		wantUsers string
		field     string
	}{
		{"", 200, "admin,rita", ""},
		{"?role=reader", 200, "rita", ""},
		{"?name=ADM", 200, "admin", ""},
		{"?limit=1&offset=1", 200, "rita", ""},
		{"?role=root", 400, "", "role"},
		{"?limit=0", 400, "", "limit"},
	}
	for _, tt := range tests {
		status, b := getJSON(t, hs.URL+"/v1/users"+tt.query, admin.token)
		schema, err := doc.ResponseSchema("GET", "/v1/users", status)
		if err != nil {
			t.Fatal(err)
		}
		if err := doc.ValidateJSON(schema, b); err != nil {
			t.Errorf("GET /v1/users%s: %v\n%s", tt.query, err, b)
		}
		if status != tt.status {
			t.Errorf("GET /v1/users%s = %d %s, want %d", tt.query, status, b, tt.status)
			continue
		}
		if status != http.StatusOK {
			var ae apierr.Error
			json.Unmarshal(b, &ae)
			if ae.Field != tt.field {
				t.Errorf("GET /v1/users%s: error field %q, want %q", tt.query, ae.Field, tt.field)
			}
			continue
		}
		var list UserList
		json.Unmarshal(b, &list)
		var names []string
		for _, u := range list.Items {
			names = append(names, u.Name)
		}
		if strings.Join(names, ",") != tt.wantUsers {
			t.Errorf("GET /v1/users%s = %v, want %s", tt.query, names, tt.wantUsers)
		}
	}
}
