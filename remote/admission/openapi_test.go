package admission

import (
	"testing"

	"github.com/palisade-sec/palisade/shared/apidoc"
)

// TestOpenAPIDescribesEveryRoute fails when a route has no httpapi.Op in
// OpenAPI() (or an Op has no route), naming the route.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	for _, p := range apidoc.CheckModule(&Webhook{}) {
		t.Error(p)
	}
}
