// Package e2e holds Palisade's end-to-end tests: real palisade processes on
// loopback and in network namespaces, driven through the CLI and the API.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/palisade-sec/palisade/e2e/harness"
)

var (
	bin   string
	ports harness.Ports
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "palisade-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = harness.Binary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
