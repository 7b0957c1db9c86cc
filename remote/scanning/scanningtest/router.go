package scanningtest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// Router serves a module's routes the way the controller's router does
// (errors to status codes). The caller's role is taken from the X-Role
// header, admin when it has none; Raw routes authenticate themselves.
type Router struct{ E *gin.Engine }

// Handle serves h at /v1 + path.
func (r Router) Handle(method, path string, _ httpapi.Access, h httpapi.Handler) {
	r.E.Handle(method, "/v1"+path, func(c *gin.Context) {
		role := c.GetHeader("X-Role")
		if role == "" {
			role = "admin"
		}
		httpapi.SetSession(c, httpapi.Session{User: "test", Role: role})
		body, err := h(c)
		var ae *apierr.Error
		switch {
		case errors.As(err, &ae):
			c.JSON(ae.Status(), ae)
		case err != nil:
			c.JSON(http.StatusInternalServerError, apierr.Internal("%v", err))
		default:
			if st, ok := body.(httpapi.Status); ok {
				if st.Body == nil {
					c.Status(st.Code)
				} else {
					c.JSON(st.Code, st.Body)
				}
				return
			}
			c.JSON(http.StatusOK, body)
		}
	})
}

// HandleLeader is Handle: the test controller is its own leader.
func (r Router) HandleLeader(method, path string, a httpapi.Access, h httpapi.Handler) {
	r.Handle(method, path, a, h)
}

// Raw serves h at /v1 + path.
func (r Router) Raw(method, path string, _ httpapi.Access, h gin.HandlerFunc) {
	r.E.Handle(method, "/v1"+path, h)
}

// RawLeader is Raw.
func (r Router) RawLeader(method, path string, a httpapi.Access, h gin.HandlerFunc) {
	r.Raw(method, path, a, h)
}

// WaitFor calls f every 20ms until it returns nil, failing the test with
// f's last error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
