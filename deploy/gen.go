//go:build ignore

// Command gen writes the CRDs crdgen builds into the chart's crds folder.
// Run it with "go generate ./deploy".
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/palisade-sec/palisade/deploy/crdgen"
)

func main() {
	files, err := crdgen.Files()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	dir := filepath.Join("helm", "palisade", "crds")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}
