package policy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies holds the line: the policy packages are pure, so they
// import the standard library and YAML only, never raft, gin, QUIC or eBPF,
// and nothing of the processes that use them.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./...").Output()
	if err != nil {
		t.Skipf("go list not available: %v", err)
	}
	allowed := []string{"github.com/palisade-sec/palisade/policy", "sigs.k8s.io/yaml", "go.yaml.in/yaml/"}
	for _, dep := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			if strings.HasPrefix(dep, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("policy depends on %s", dep)
		}
	}
}
