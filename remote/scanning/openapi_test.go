package scanning

import (
	"testing"

	"github.com/palisade-sec/palisade/shared/apidoc"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// TestOpenAPIDescribesEveryRoute fails when a route has no httpapi.Op in
// OpenAPI() (or an Op has no route), or a listing is not paged, naming
// the route.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	for _, byDigest := range []bool{false, true} {
		m := &Module{cfg: Config{ServeResultByDigest: byDigest}}
		for _, mod := range []httpapi.Module{m, m.WithWorkerRoutes()} {
			for _, p := range apidoc.CheckModule(mod) {
				t.Errorf("%T, ServeResultByDigest %v: %s", mod, byDigest, p)
			}
		}
	}
}
