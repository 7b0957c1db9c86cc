package deptest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/palisade-sec/palisade/"

// layer returns the architectural layer of a package path inside the
// module: shared, policy, registryscan, primary, remote, agent, cmd, e2e.
func layer(pkg string) string {
	p := strings.TrimPrefix(pkg, module)
	top, _, _ := strings.Cut(p, "/")
	return top
}

// allowed lists, for each layer, the layers it may import.
var allowed = map[string][]string{
	"shared":       {"shared"},
	"policy":       {"shared", "policy"},
	"registryscan": {"shared", "policy", "registryscan"},
	"primary":      {"shared", "policy", "registryscan", "primary"},
	"remote":       {"shared", "policy", "registryscan", "remote"},
	"agent":        {"shared", "policy", "registryscan", "agent"},
	"deploy":       {"shared", "policy", "deploy"},
	"cmd":          {"shared", "policy", "registryscan", "primary", "remote", "agent", "cmd"},
	"e2e":          {"shared", "policy", "registryscan", "primary", "remote", "agent", "e2e"},
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, errb.String())
	}
	var lines []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestImportsPointOneWay(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		from := layer(pkg)
		ok, known := allowed[from]
		if !known {
			t.Errorf("package %s is in an unknown top-level folder %q", pkg, from)
			continue
		}
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			to := layer(imp)
			permitted := false
			for _, a := range ok {
				permitted = permitted || a == to
			}
			if !permitted {
				t.Errorf("%s (%s) imports %s (%s): %s may import only %v", pkg, from, imp, to, from, ok)
			}
		}
	}
}

func TestPolicyHasNoInfrastructureDependencies(t *testing.T) {
	forbidden := []string{"github.com/hashicorp/raft", "github.com/gin-gonic/gin", "github.com/quic-go/quic-go", "github.com/cilium/ebpf"}
	for _, dep := range goList(t, "-deps", "./policy/...") {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("policy depends on %s", dep)
			}
		}
	}
}

func TestSharedHasNoRootPackage(t *testing.T) {
	for _, pkg := range goList(t, "./shared/...", "./primary/...", "./remote/...", "./agent/...") {
		switch strings.TrimPrefix(pkg, module) {
		case "shared", "primary", "remote", "agent":
			t.Errorf("%s has code at its root; it is a folder of single-purpose packages", pkg)
		}
	}
}
