package apidoc

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/httpapi"
)

// recorder is an httpapi.Routes that only notes what is registered.
type recorder struct{ routes []Route }

func (r *recorder) add(method, path string, access httpapi.Access, leader bool) {
	r.routes = append(r.routes, Route{Method: method, Path: "/v1" + path, Access: access, Leader: leader})
}

func (r *recorder) Handle(method, path string, access httpapi.Access, _ httpapi.Handler) {
	r.add(method, path, access, false)
}

func (r *recorder) HandleLeader(method, path string, access httpapi.Access, _ httpapi.Handler) {
	r.add(method, path, access, true)
}

func (r *recorder) Raw(method, path string, access httpapi.Access, _ gin.HandlerFunc) {
	r.add(method, path, access, false)
}

func (r *recorder) RawLeader(method, path string, access httpapi.Access, _ gin.HandlerFunc) {
	r.add(method, path, access, true)
}

// CheckModule compares the routes a module registers with the operations
// it describes, without a server, and returns every mismatch and every
// problem of the resulting document. A module's own tests call it so a
// new route without its httpapi.Op fails next to the code.
func CheckModule(m httpapi.Module) []string {
	rec := &recorder{}
	m.Routes(rec)
	d, ok := m.(httpapi.Documented)
	if !ok {
		return []string{fmt.Sprintf("%T does not implement httpapi.Documented: add an OpenAPI() []httpapi.Op method describing its routes", m)}
	}
	doc, err := Build(Config{Title: fmt.Sprintf("%T", m), Version: "test", Prefix: "/v1", SessionCookie: "session", CSRFHeader: "X-CSRF"},
		rec.routes, d.OpenAPI())
	if err != nil {
		return []string{err.Error()}
	}
	problems := Check(doc, rec.routes)
	if len(doc.Paths) > 0 {
		problems = append(problems, doc.Lint()...)
	}
	for _, r := range rec.routes {
		o, ok := doc.Operation(r.Method, r.Path)
		if !ok || r.Method != http.MethodGet {
			continue
		}
		if o.RequestBody != nil {
			problems = append(problems, fmt.Sprintf("GET %s documents a request body", r.Path))
		}
		if s, err := doc.ResponseSchema(r.Method, r.Path, http.StatusOK); err == nil && doc.IsListing(s) && !o.Paged() {
			problems = append(problems, fmt.Sprintf("GET %s lists items but is not paged: read ?limit=&offset= with httpapi.ParsePage, "+
				"answer httpapi.NewList (or a type with items, total, limit and offset) and set Paged: true on its httpapi.Op", r.Path))
		}
	}
	return problems
}

// IsListing reports whether s (through references) is an object with an
// items array: the body of a listing.
func (d *Document) IsListing(s *Schema) bool {
	for i := 0; s != nil && s.Ref != "" && i < 16; i++ {
		s, _ = d.resolve(s.Ref)
	}
	if s == nil {
		return false
	}
	items, ok := s.Properties["items"]
	return ok && items != nil && slices.Contains(items.Type, "array")
}

// Paged reports whether the operation takes ?limit= and ?offset=.
func (o *Operation) Paged() bool {
	var limit, offset bool
	for _, p := range o.Parameters {
		limit = limit || (p.In == "query" && p.Name == "limit")
		offset = offset || (p.In == "query" && p.Name == "offset")
	}
	return limit && offset
}
