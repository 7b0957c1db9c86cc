package apidoc

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/shared/httpapi"
)

type inner struct {
	Shadowed string `json:"client"`
	Deep     int    `json:"deep"`
}

type sample struct {
	Name     string            `json:"name"`
	Optional string            `json:"optional,omitempty"`
	When     time.Time         `json:"when"`
	Later    time.Time         `json:"later,omitzero"`
	Tags     []string          `json:"tags"`
	Labels   map[string]string `json:"labels,omitempty"`
	Next     *sample           `json:"next,omitempty"`
	Addr     netip.Addr        `json:"addr"`
	Raw      json.RawMessage   `json:"raw,omitempty"`
	Count    uint16            `json:"count"`
	Hidden   string            `json:"-"`
	Client   string            `json:"client,omitempty"`
	hidden   string
	inner
}

func TestGeneratorFollowsEncodingJSON(t *testing.T) {
	g := NewGenerator()
	ref := g.Of(sample{})
	if ref.Ref == "" {
		t.Fatalf("a named struct is not a reference: %+v", ref)
	}
	s := g.Components[strings.TrimPrefix(ref.Ref, "#/components/schemas/")]
	wantProps := []string{"name", "optional", "when", "later", "tags", "labels", "next", "addr", "raw", "count", "client", "deep"}
	if len(s.Properties) != len(wantProps) {
		t.Errorf("properties %v, want %v", keys(s.Properties), wantProps)
	}
	for _, p := range wantProps {
		if _, ok := s.Properties[p]; !ok {
			t.Errorf("property %q missing", p)
		}
	}
	if got, want := strings.Join(s.Required, ","), "addr,count,deep,name,tags,when"; got != want {
		t.Errorf("required = %s, want %s", got, want)
	}
	if s.Additional == nil || !s.Additional.Closed {
		t.Error("a struct allows additional properties")
	}
	tests := []struct {
		prop, wantType, wantFormat string
	}{
		{"when", "string", "date-time"},
		{"tags", "array,null", ""},
		{"labels", "object,null", ""},
		{"addr", "string", ""},
		{"count", "integer", ""},
		{"client", "string", ""},
	}
	for _, tt := range tests {
		p := s.Properties[tt.prop]
		if strings.Join(p.Type, ",") != tt.wantType || p.Format != tt.wantFormat {
			t.Errorf("%s: type %v format %q, want %s %q", tt.prop, p.Type, p.Format, tt.wantType, tt.wantFormat)
		}
	}
	if n := s.Properties["next"]; len(n.AnyOf) != 2 || n.AnyOf[0].Ref != ref.Ref {
		t.Errorf("a pointer to the same type is not a nullable reference: %+v", n)
	}
	if raw := s.Properties["raw"]; len(raw.Type) != 0 {
		t.Errorf("json.RawMessage is constrained: %+v", raw)
	}
	if list := g.Of(httpapi.List[sample]{}); !strings.Contains(list.Ref, "httpapi.List-apidoc.sample") {
		t.Errorf("generic list component = %q", list.Ref)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestValidate(t *testing.T) {
	g := NewGenerator()
	doc := &Document{Components: Components{Schemas: g.Components}}
	schema := g.Of(httpapi.List[sample]{})
	good, err := json.Marshal(httpapi.NewList([]sample{{Name: "a", When: time.Now(), Addr: netip.MustParseAddr("10.0.0.1"),
		Next: &sample{Name: "b"}, inner: inner{Deep: 3}}}, httpapi.Page{Limit: 10}))
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.ValidateJSON(schema, good); err != nil {
		t.Fatalf("a real encoding does not validate: %v\n%s", err, good)
	}
	tests := []struct {
		name, body, wantErr string
	}{
		{"missing total", `{"items":[],"limit":1,"offset":0}`, `$: required property "total"`},
		{"extra property", `{"items":[],"total":0,"limit":1,"offset":0,"more":true}`, `property "more" is not in the schema`},
		{"wrong type", `{"items":[],"total":"0","limit":1,"offset":0}`, "$.total: want integer, got string"},
		{"fraction", `{"items":[],"total":1.5,"limit":1,"offset":0}`, "$.total: want integer, got number"},
		{"items null", `{"items":null,"total":0,"limit":1,"offset":0}`, "$.items: want array, got null"},
		{"deep", `{"items":[{"name":"a","when":"2026-01-01T00:00:00Z","tags":null,"addr":"","count":1,"deep":2,"next":{"name":3}}],"total":1,"limit":1,"offset":0}`,
			"$.items[0].next"},
		{"date", `{"items":[{"name":"a","when":"yesterday","tags":null,"addr":"","count":1,"deep":2}],"total":1,"limit":1,"offset":0}`,
			"$.items[0].when"},
		{"negative uint", `{"items":[{"name":"a","when":"2026-01-01T00:00:00Z","tags":null,"addr":"","count":-1,"deep":2}],"total":1,"limit":1,"offset":0}`,
			"$.items[0].count"},
		{"not json", `{`, "not JSON"},
	}
	for _, tt := range tests {
		err := doc.ValidateJSON(schema, []byte(tt.body))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestValidateBoundsWork(t *testing.T) {
	self := &Schema{Ref: "#/components/schemas/a"}
	doc := &Document{Components: Components{Schemas: map[string]*Schema{
		"a": {AnyOf: []*Schema{self, self, {Type: Types{"string"}}}},
	}}}
	if err := doc.Validate(self, 1.0); err == nil {
		t.Error("a number matched a schema that allows only strings")
	}
}

type createReq struct {
	Name string `json:"name"`
}

func testOps() []httpapi.Op {
	return []httpapi.Op{
		{Method: http.MethodGet, Path: "/things", Tag: "t", Paged: true, Params: []httpapi.Param{{Name: "name"}}, Response: httpapi.List[sample]{}},
		{Method: http.MethodPost, Path: "/things", Tag: "t", Body: createReq{}, Status: http.StatusCreated, Response: sample{}},
		{Method: http.MethodDelete, Path: "/things/:name", Tag: "t", Status: http.StatusNoContent},
		{Method: http.MethodGet, Path: "/proxy/:name/api/*path", Tag: "t", ResponseType: "application/json"},
		{Method: http.MethodGet, Path: "/healthz", Tag: "t", Response: createReq{}},
	}
}

func testRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/v1/things", Access: httpapi.Read},
		{Method: "POST", Path: "/v1/things", Access: httpapi.Write},
		{Method: "DELETE", Path: "/v1/things/:name", Access: httpapi.Write, Leader: true},
		{Method: "GET", Path: "/v1/proxy/:name/api/*path", Access: httpapi.FedRead},
		{Method: "GET", Path: "/v1/healthz", Access: httpapi.Public},
	}
}

func testConfig() Config {
	return Config{Title: "t", Version: "1", Prefix: "/v1", SessionCookie: "s", CSRFHeader: "X-C"}
}

func TestBuildLintCheck(t *testing.T) {
	doc, err := Build(testConfig(), testRoutes(), testOps())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var back Document
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("the document does not decode: %v", err)
	}
	if p := back.Lint(); len(p) > 0 {
		t.Errorf("lint: %v", p)
	}
	if p := Check(&back, testRoutes()); len(p) > 0 {
		t.Errorf("check: %v", p)
	}
	del, ok := back.Operation("DELETE", "/v1/things/:name")
	if !ok || del.Access != "write" || !del.Leader || len(del.Security) != 2 || len(del.Security[1]) != 2 || del.OperationID != "deleteThingsByName" {
		t.Errorf("DELETE operation = %+v", del)
	}
	if h, _ := back.Operation("GET", "/v1/healthz"); h == nil || len(h.Security) != 0 || h.Access != "public" {
		t.Errorf("public operation = %+v", h)
	}
	if list, _ := back.Operation("GET", "/v1/things"); list == nil || len(list.Parameters) != 3 || list.Parameters[0].Name != "limit" {
		t.Errorf("paged operation parameters = %+v", list)
	}
	if _, ok := back.Operation("GET", "/v1/proxy/east/api/v1/x"); ok {
		t.Error("a concrete path with more segments matched a template")
	}
	if _, ok := back.Operation("DELETE", "/v1/things/rita"); !ok {
		t.Error("a concrete path does not find its template")
	}

	// Both directions are named.
	routes := append(testRoutes()[1:], Route{Method: "PUT", Path: "/v1/things/:name"})
	problems := Check(&back, routes)
	if len(problems) != 2 || !strings.Contains(strings.Join(problems, "\n"), `PUT /v1/things/:name is registered but not in the OpenAPI document: add an httpapi.Op{Method: "PUT", Path: "/things/:name"`) ||
		!strings.Contains(strings.Join(problems, "\n"), "GET /v1/things is in the OpenAPI document but no route serves it") {
		t.Errorf("check problems:\n%s", strings.Join(problems, "\n"))
	}
}

func TestBuildRefusesBadOps(t *testing.T) {
	tests := []struct {
		name string
		ops  []httpapi.Op
		want string
	}{
		{"duplicate", []httpapi.Op{{Method: "GET", Path: "/a"}, {Method: "GET", Path: "/a"}}, "described twice"},
		{"method", []httpapi.Op{{Method: "FETCH", Path: "/a"}}, "unknown method"},
		{"path", []httpapi.Op{{Method: "GET", Path: "a"}}, "must start with /"},
	}
	for _, tt := range tests {
		if _, err := Build(testConfig(), nil, tt.ops); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestLintFindsProblems(t *testing.T) {
	doc, err := Build(testConfig(), testRoutes(), testOps())
	if err != nil {
		t.Fatal(err)
	}
	doc.OpenAPI = "2.0"
	item := doc.Paths["/v1/things/{name}"]
	(*item)["delete"].Parameters = nil
	(*item)["delete"].Security = []map[string][]string{{"nope": {}}}
	(*doc.Paths["/v1/healthz"])["get"].OperationID = "getThings"
	doc.Components.Schemas["bad name!"] = &Schema{Type: Types{"strin"}, Ref: ""}
	(*doc.Paths["/v1/things"])["post"].Responses["200"] = &Response{Content: map[string]MediaType{"application/json": {Schema: &Schema{Ref: "#/components/schemas/missing"}}}}
	got := strings.Join(doc.Lint(), "\n")
	for _, want := range []string{`openapi is "2.0"`, "path parameter {name} is not declared", `security scheme "nope"`,
		`operationId "getThings" is also used`, `component name "bad name!"`, `type "strin"`, "response 200 needs a description"} {
		if !strings.Contains(got, want) {
			t.Errorf("lint did not report %q:\n%s", want, got)
		}
	}
}

func TestPathOf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/v1/users", "/v1/users"},
		{"/v1/users/:name", "/v1/users/{name}"},
		{"/v1/fed/clusters/:name/api/*path", "/v1/fed/clusters/{name}/api/{path}"},
	}
	for _, tt := range tests {
		if got := PathOf(tt.in); got != tt.want {
			t.Errorf("PathOf(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

type testModule struct{ extra bool }

func (m testModule) Routes(r httpapi.Routes) {
	r.Handle(http.MethodGet, "/things", httpapi.Read, nil)
	r.HandleLeader(http.MethodPost, "/things", httpapi.Write, nil)
	r.Handle(http.MethodDelete, "/things/:name", httpapi.Write, nil)
	r.RawLeader(http.MethodGet, "/proxy/:name/api/*path", httpapi.FedRead, nil)
	r.Raw(http.MethodGet, "/healthz", httpapi.Public, nil)
	if m.extra {
		r.Handle(http.MethodPut, "/things/:name", httpapi.Write, nil)
	}
}

func (testModule) OpenAPI() []httpapi.Op { return testOps() }

type unpaged struct{}

func (unpaged) Routes(r httpapi.Routes) { r.Handle(http.MethodGet, "/things", httpapi.Read, nil) }

func (unpaged) OpenAPI() []httpapi.Op {
	return []httpapi.Op{{Method: http.MethodGet, Path: "/things", Response: httpapi.List[sample]{}}}
}

type undocumented struct{}

func (undocumented) Routes(r httpapi.Routes) { r.Handle(http.MethodGet, "/x", httpapi.Read, nil) }

func TestCheckModule(t *testing.T) {
	if p := CheckModule(testModule{}); len(p) > 0 {
		t.Errorf("a documented module: %v", p)
	}
	p := CheckModule(testModule{extra: true})
	if len(p) != 1 || !strings.Contains(p[0], `PUT /v1/things/:name is registered but not in the OpenAPI document`) {
		t.Errorf("an undocumented route: %v", p)
	}
	if p := CheckModule(unpaged{}); len(p) != 1 || !strings.Contains(p[0], "GET /v1/things lists items but is not paged") {
		t.Errorf("a listing without paging: %v", p)
	}
	if p := CheckModule(undocumented{}); len(p) != 1 || !strings.Contains(p[0], "does not implement httpapi.Documented") {
		t.Errorf("a module without OpenAPI(): %v", p)
	}
}
