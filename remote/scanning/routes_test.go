package scanning

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/remote/admission"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/scanning/scanningtest"
)

func call(t *testing.T, h http.Handler, method, path, role, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("X-Role", role)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestRoutes(t *testing.T) {
	gin.SetMode(gin.TestMode)
	st := openStore(t)
	cfg := testConfig(t, st, t.TempDir())
	cfg.Feed = nil
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := gin.New()
	m.Routes(scanningtest.Router{E: e})
	// The admission module serves /v1/scan/results/:digest beside these
	// routes in the same router; registering both must not clash.
	(&admission.Webhook{}).Routes(scanningtest.Router{E: e})

	ctx := context.Background()
	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	put := func(key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := st.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	// d1 is known locally and from the primary with the same scan time:
	// the primary's wins. d2 is local only and scanned later.
	put(PrefixResults+d1, verdict.Verdict{Digest: d1, Ref: "r.example/a:1", High: 1, ScannedAt: at})
	put(PrefixFederated+d1, verdict.Verdict{Digest: d1, Ref: "r.example/a:1", High: 5, ScannedAt: at})
	put(PrefixResults+d2, verdict.Verdict{Digest: d2, Ref: "r.example/b:2", ScannedAt: at.Add(time.Hour)})
	put(PrefixRefs+"r.example/b:2", RefEntry{Digest: d2, Registry: "x"})
	put(PrefixFailures+"r.example/c:3", Failure{Registry: "x", Ref: "r.example/c:3", Attempts: 2, Error: "boom"})
	if err := m.cache.PutReport(ctx, &report.Report{Digest: d1, Ref: "r.example/a:1", Layers: []string{}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, method, path, role, body string
		code                           int
		want                           []string // substrings of the body
	}{
		{"add", "POST", "/v1/registries", "admin", `{"name":"hub","url":"http://127.0.0.1:5000","interval":"2h","filter":{"repository":"apps/*"}}`, 201, []string{`"name":"hub"`, `"interval":"2h0m0s"`}},
		{"add twice", "POST", "/v1/registries", "admin", `{"name":"hub","url":"127.0.0.1:5000"}`, 409, []string{"exists"}},
		{"bad name", "POST", "/v1/registries", "admin", `{"name":"Hub","url":"x.io"}`, 400, []string{`name \"Hub\"`}},
		{"bad interval", "POST", "/v1/registries", "admin", `{"name":"h2","url":"x.io","interval":"soon"}`, 400, []string{"soon"}},
		{"unknown field", "POST", "/v1/registries", "admin", `{"name":"h2","url":"x.io","colour":"red"}`, 400, []string{"colour"}},
		{"fed on standalone", "POST", "/v1/registries", "admin", `{"name":"f","url":"x.io","federated":true}`, 409, []string{"not a primary"}},
		{"fed by plain reader", "POST", "/v1/registries", "reader", `{"name":"f","url":"x.io","federated":true}`, 403, []string{"fedAdmin"}},
		{"list", "GET", "/v1/registries", "reader", "", 200, []string{`"name":"hub"`}},
		{"get", "GET", "/v1/registries/hub", "reader", "", 200, []string{`"url":"http://127.0.0.1:5000"`}},
		{"get missing", "GET", "/v1/registries/nope", "reader", "", 404, []string{"nope"}},
		{"scan now", "POST", "/v1/registries/hub/scan", "admin", "", 202, []string{"requested"}},
		{"scan missing", "POST", "/v1/registries/nope/scan", "admin", "", 404, nil},
		{"results", "GET", "/v1/scan/results", "reader", "", 200, []string{`"total":2`, d1, d2, `"source":"federated"`, `"high":5`}},
		{"results paged", "GET", "/v1/scan/results?limit=1&offset=1", "reader", "", 200, []string{`"total":2`, d1}},
		{"results past the end", "GET", "/v1/scan/results?offset=5", "reader", "", 200, []string{`"items":[]`}},
		{"by digest", "GET", "/v1/scan/results?digest=" + d2, "reader", "", 200, []string{`"total":1`, d2}},
		{"by indexed ref", "GET", "/v1/scan/results?ref=r.example/b:2", "reader", "", 200, []string{`"total":1`, d2}},
		{"by scanned-as ref", "GET", "/v1/scan/results?ref=r.example/a:1", "reader", "", 200, []string{`"total":1`, d1}},
		{"unknown ref", "GET", "/v1/scan/results?ref=r.example/z:9", "reader", "", 200, []string{`"items":[]`}},
		{"bad limit", "GET", "/v1/scan/results?limit=0", "reader", "", 400, []string{"limit"}},
		{"bad digest", "GET", "/v1/scan/results?digest=sha256:xyz", "reader", "", 400, []string{"digest"}},
		{"bad ref", "GET", "/v1/scan/results?ref=UPPER::", "reader", "", 400, []string{"reference"}},
		{"failures", "GET", "/v1/scan/failures", "reader", "", 200, []string{"boom", `"attempts":2`}},
		{"report", "GET", "/v1/scan/reports/" + d1, "reader", "", 200, []string{`"packages"`, `"ref":"r.example/a:1"`}},
		{"no report", "GET", "/v1/scan/reports/" + d2, "reader", "", 404, []string{"verdict only"}},
		{"report bad digest", "GET", "/v1/scan/reports/x", "reader", "", 400, []string{"digest"}},
		{"delete", "DELETE", "/v1/registries/hub", "admin", "", 204, nil},
		{"deleted", "GET", "/v1/registries/hub", "reader", "", 404, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, e, tc.method, tc.path, tc.role, tc.body)
			if code != tc.code {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s %s: body %s, want it to contain %s", tc.method, tc.path, body, w)
				}
			}
		})
	}
	// Without the admission module, this module serves results by digest.
	cfg.ServeResultByDigest = true
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e2 := gin.New()
	m2.Routes(scanningtest.Router{E: e2})
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/scan/results/" + d1, 200, `"source":"federated"`},
		{"/v1/scan/results/" + d2, 200, `"source":"local"`},
		{"/v1/scan/results/sha256:" + strings.Repeat("3", 64), 404, "no scan result"},
		{"/v1/scan/results/latest", 400, "digest"},
	} {
		if code, body := call(t, e2, "GET", tc.path, "reader", ""); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %s, want %d with %s", tc.path, code, body, tc.code, tc.want)
		}
	}
	// The order is newest scan first: d2, then d1.
	_, body := call(t, e, "GET", "/v1/scan/results", "reader", "")
	if strings.Index(body, d2) > strings.Index(body, d1) {
		t.Errorf("results not newest first: %s", body)
	}
	if _, ok, _ := st.Get(PrefixRequests + "hub"); ok {
		t.Error("deleting the registry left its scan request")
	}
}
