package apidoc

import (
	"fmt"
	"net/http"

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
		if o, ok := doc.Operation(r.Method, r.Path); ok && r.Method == http.MethodGet && o.RequestBody != nil {
			problems = append(problems, fmt.Sprintf("GET %s documents a request body", r.Path))
		}
	}
	return problems
}
