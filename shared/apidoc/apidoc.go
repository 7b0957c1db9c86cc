// Package apidoc builds the OpenAPI 3.1 document of a controller's REST
// API from the routes the router registered and the operations modules
// describe (httpapi.Op), with JSON schemas derived from the Go types the
// handlers encode. It also checks a document against the registered
// routes and validates response bodies against their schemas, so tests
// can keep the document true.
package apidoc

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// Version is the OpenAPI version of the documents built here.
const Version = "3.1.0"

// Document is an OpenAPI 3.1 document (the parts Palisade uses).
type Document struct {
	OpenAPI    string               `json:"openapi"`
	Info       Info                 `json:"info"`
	Tags       []Tag                `json:"tags,omitempty"`
	Paths      map[string]*PathItem `json:"paths"`
	Components Components           `json:"components"`
}

// Info names the API.
type Info struct {
	Title       string `json:"title"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

// Tag names a group of operations.
type Tag struct {
	Name string `json:"name"`
}

// PathItem holds a path's operations by lower-case method.
type PathItem map[string]*Operation

// Operation is one method on one path.
type Operation struct {
	OperationID string               `json:"operationId"`
	Summary     string               `json:"summary,omitempty"`
	Tags        []string             `json:"tags,omitempty"`
	Parameters  []Parameter          `json:"parameters,omitempty"`
	RequestBody *RequestBody         `json:"requestBody,omitempty"`
	Responses   map[string]*Response `json:"responses"`
	// Security is empty for public routes.
	Security []map[string][]string `json:"security"`
	// Access is the role check of the route: public, read, write,
	// fedRead or fedWrite.
	Access string `json:"x-palisade-access"`
	// Leader is true for routes that only the Raft leader serves
	// (followers proxy them).
	Leader bool `json:"x-palisade-leader,omitempty"`
}

// Parameter is a path or query parameter.
type Parameter struct {
	Name        string  `json:"name"`
	In          string  `json:"in"`
	Description string  `json:"description,omitempty"`
	Required    bool    `json:"required,omitempty"`
	Schema      *Schema `json:"schema"`
}

// RequestBody is an operation's body.
type RequestBody struct {
	Required bool                 `json:"required,omitempty"`
	Content  map[string]MediaType `json:"content"`
}

// MediaType is the schema of one content type.
type MediaType struct {
	Schema *Schema `json:"schema"`
}

// Response is one status's response.
type Response struct {
	Description string               `json:"description"`
	Content     map[string]MediaType `json:"content,omitempty"`
}

// Components holds the named schemas and the security schemes.
type Components struct {
	Schemas         map[string]*Schema        `json:"schemas"`
	SecuritySchemes map[string]SecurityScheme `json:"securitySchemes"`
}

// SecurityScheme is how a caller authenticates.
type SecurityScheme struct {
	Type        string `json:"type"`
	Scheme      string `json:"scheme,omitempty"`
	In          string `json:"in,omitempty"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
}

// Route is a route as the router registered it.
type Route struct {
	Method string
	// Path is the full gin path ("/v1/users/:name").
	Path   string
	Access httpapi.Access
	Leader bool
}

// Names of the security schemes.
const (
	SchemeBearer  = "bearerToken"
	SchemeSession = "sessionCookie"
	SchemeCSRF    = "csrfHeader"
)

// Config says what to put around the operations.
type Config struct {
	// Title and Version go into info.
	Title   string
	Version string
	// Prefix is where the routes are mounted ("/v1").
	Prefix string
	// SessionCookie and CSRFHeader name the browser's credentials.
	SessionCookie string
	CSRFHeader    string
}

// PathOf turns a gin path into an OpenAPI path template:
// "/users/:name" -> "/users/{name}", "/x/*rest" -> "/x/{rest}".
func PathOf(ginPath string) string {
	segs := strings.Split(ginPath, "/")
	for i, s := range segs {
		if len(s) > 1 && (s[0] == ':' || s[0] == '*') {
			segs[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

func accessName(a httpapi.Access) string {
	switch a {
	case httpapi.Public:
		return "public"
	case httpapi.Read:
		return "read"
	case httpapi.Write:
		return "write"
	case httpapi.FedRead:
		return "fedRead"
	case httpapi.FedWrite:
		return "fedWrite"
	}
	return "unknown"
}

var opIDPartRE = regexp.MustCompile(`[^A-Za-z0-9]+`)

// operationID is "getUsersByName" for GET /v1/users/{name}.
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "v1" {
			continue
		}
		if seg[0] == '{' {
			b.WriteString("By")
			seg = strings.Trim(seg, "{}")
		}
		for _, part := range opIDPartRE.Split(seg, -1) {
			if part != "" {
				b.WriteString(strings.ToUpper(part[:1]) + part[1:])
			}
		}
	}
	return b.String()
}

// Build makes the document of ops. routes give each operation its
// access check; an op without a route is still documented (Check reports
// it). Build fails on an op that cannot be described (duplicate, bad
// method or path).
func Build(cfg Config, routes []Route, ops []httpapi.Op) (*Document, error) {
	g := NewGenerator()
	errSchema := g.Of(apierr.Error{})
	doc := &Document{
		OpenAPI: Version,
		Info: Info{Title: cfg.Title, Version: cfg.Version,
			Description: "Every error is a JSON object {code, message, field?, retryAfterSeconds?} with the status its code maps to. " +
				"Listings take ?limit= and ?offset= and return {items, total, limit, offset}; total counts the matches before paging."},
		Paths: map[string]*PathItem{},
		Components: Components{Schemas: g.Components, SecuritySchemes: map[string]SecurityScheme{
			SchemeBearer: {Type: "http", Scheme: "bearer", Description: "session token from POST " + cfg.Prefix + "/auth/login (the CLI)"},
			SchemeSession: {Type: "apiKey", In: "cookie", Name: cfg.SessionCookie,
				Description: "browser session cookie set by POST " + cfg.Prefix + "/auth/login"},
			SchemeCSRF: {Type: "apiKey", In: "header", Name: cfg.CSRFHeader,
				Description: "anti-forgery token (the CSRF cookie's value) required with the session cookie on requests that change state"},
		}},
	}
	byRoute := map[string]Route{}
	for _, r := range routes {
		byRoute[r.Method+" "+r.Path] = r
	}
	tags := map[string]bool{}
	for _, op := range ops {
		switch op.Method {
		case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions:
		default:
			return nil, fmt.Errorf("apidoc: %s %s: unknown method", op.Method, op.Path)
		}
		if !strings.HasPrefix(op.Path, "/") {
			return nil, fmt.Errorf("apidoc: %s %s: path must start with /", op.Method, op.Path)
		}
		full := cfg.Prefix + op.Path
		p := PathOf(full)
		item := doc.Paths[p]
		if item == nil {
			item = &PathItem{}
			doc.Paths[p] = item
		}
		m := strings.ToLower(op.Method)
		if _, dup := (*item)[m]; dup {
			return nil, fmt.Errorf("apidoc: %s %s is described twice", op.Method, full)
		}
		route, registered := byRoute[op.Method+" "+full]
		if !registered {
			route = Route{Access: httpapi.Read}
		}
		o := &Operation{OperationID: operationID(op.Method, p), Summary: op.Summary, Access: accessName(route.Access),
			Leader: route.Leader, Responses: map[string]*Response{}, Security: []map[string][]string{}}
		if op.Tag != "" {
			o.Tags = []string{op.Tag}
			tags[op.Tag] = true
		}
		for _, seg := range strings.Split(full, "/") {
			if len(seg) > 1 && (seg[0] == ':' || seg[0] == '*') {
				o.Parameters = append(o.Parameters, Parameter{Name: seg[1:], In: "path", Required: true, Schema: &Schema{Type: Types{"string"}}})
			}
		}
		params := op.Params
		if op.Paged {
			params = append(httpapi.PageParams(), params...)
		}
		for _, qp := range params {
			typ := qp.Type
			if typ == "" {
				typ = "string"
			}
			s := &Schema{Type: Types{typ}}
			for _, e := range qp.Enum {
				s.Enum = append(s.Enum, e)
			}
			o.Parameters = append(o.Parameters, Parameter{Name: qp.Name, In: "query", Description: qp.Description, Required: qp.Required, Schema: s})
		}
		switch {
		case op.BodyType != "":
			o.RequestBody = &RequestBody{Required: true, Content: map[string]MediaType{op.BodyType: {Schema: &Schema{Type: Types{"string"}}}}}
		case op.Body != nil:
			o.RequestBody = &RequestBody{Required: true, Content: map[string]MediaType{"application/json": {Schema: g.Of(op.Body)}}}
		}
		status := op.Status
		if status == 0 {
			status = http.StatusOK
		}
		resp := &Response{Description: http.StatusText(status)}
		switch {
		case op.ResponseType != "":
			resp.Content = map[string]MediaType{op.ResponseType: {Schema: &Schema{}}}
		case op.Response != nil:
			resp.Content = map[string]MediaType{"application/json": {Schema: g.Of(op.Response)}}
		}
		o.Responses[strconv.Itoa(status)] = resp
		o.Responses["default"] = &Response{Description: "error", Content: map[string]MediaType{"application/json": {Schema: errSchema}}}
		if route.Access != httpapi.Public {
			o.Security = append(o.Security, map[string][]string{SchemeBearer: {}})
			if m == "get" || m == "head" || m == "options" {
				o.Security = append(o.Security, map[string][]string{SchemeSession: {}})
			} else {
				o.Security = append(o.Security, map[string][]string{SchemeSession: {}, SchemeCSRF: {}})
			}
		}
		(*item)[m] = o
	}
	for t := range tags {
		doc.Tags = append(doc.Tags, Tag{Name: t})
	}
	sort.Slice(doc.Tags, func(i, j int) bool { return doc.Tags[i].Name < doc.Tags[j].Name })
	return doc, nil
}

// Operation returns the operation for method on a gin or OpenAPI path,
// or on a concrete request path ("/v1/users/rita") that one template
// matches.
func (d *Document) Operation(method, path string) (*Operation, bool) {
	m := strings.ToLower(method)
	if item, ok := d.Paths[PathOf(path)]; ok && item != nil {
		if o, ok := (*item)[m]; ok && o != nil {
			return o, true
		}
	}
	segs := strings.Split(path, "/")
	for tmpl, item := range d.Paths {
		if item == nil {
			continue
		}
		o, ok := (*item)[m]
		if !ok || o == nil {
			continue
		}
		ts := strings.Split(tmpl, "/")
		if len(ts) != len(segs) {
			continue
		}
		match := true
		for i := range ts {
			if ts[i] != segs[i] && !(strings.HasPrefix(ts[i], "{") && segs[i] != "") {
				match = false
				break
			}
		}
		if match {
			return o, true
		}
	}
	return nil, false
}

// ResponseSchema returns the JSON schema of an operation's response with
// the given status.
func (d *Document) ResponseSchema(method, path string, status int) (*Schema, error) {
	o, ok := d.Operation(method, path)
	if !ok {
		return nil, fmt.Errorf("apidoc: %s %s is not documented", method, PathOf(path))
	}
	r, ok := o.Responses[strconv.Itoa(status)]
	if !ok || r == nil {
		r, ok = o.Responses["default"]
	}
	if !ok || r == nil {
		return nil, fmt.Errorf("apidoc: %s %s documents no %d response", method, PathOf(path), status)
	}
	mt, ok := r.Content["application/json"]
	if !ok {
		return nil, fmt.Errorf("apidoc: %s %s documents no JSON body for %d", method, PathOf(path), status)
	}
	return mt.Schema, nil
}

// Check compares a document with the routes a server registered (method
// and full gin path) and names every route that is not documented and
// every documented operation that is not registered.
func Check(d *Document, routes []Route) []string {
	var problems []string
	registered := map[string]bool{}
	for _, r := range routes {
		p := PathOf(r.Path)
		registered[strings.ToLower(r.Method)+" "+p] = true
		if _, ok := d.Operation(r.Method, r.Path); !ok {
			problems = append(problems, fmt.Sprintf("%s %s is registered but not in the OpenAPI document: add an httpapi.Op{Method: %q, Path: %q, ...} to the OpenAPI() of the module that registers it",
				r.Method, r.Path, r.Method, strings.TrimPrefix(r.Path, "/v1")))
		}
	}
	for p, item := range d.Paths {
		if item == nil {
			continue
		}
		for m := range *item {
			if !registered[m+" "+p] {
				problems = append(problems, fmt.Sprintf("%s %s is in the OpenAPI document but no route serves it: remove its httpapi.Op or register the route", strings.ToUpper(m), p))
			}
		}
	}
	sort.Strings(problems)
	return problems
}
