package admission

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the webhook, its watchers, the audit flusher and the
// HTTP servers leave no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the tests' HTTP clients.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
