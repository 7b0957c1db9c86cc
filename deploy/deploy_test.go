package deploy

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/palisade-sec/palisade/deploy/crdgen"
)

var crdDir = filepath.Join("helm", "palisade", "crds")

// TestCRDsCurrent checks the committed CRDs are what crdgen makes from the
// policy/code types.
func TestCRDsCurrent(t *testing.T) {
	want, err := crdgen.Files()
	if err != nil {
		t.Fatalf("crdgen: %v", err)
	}
	entries, err := os.ReadDir(crdDir)
	if err != nil {
		t.Fatalf("read %s: %v", crdDir, err)
	}
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
		got, err := os.ReadFile(filepath.Join(crdDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[e.Name()]
		if !ok {
			t.Errorf("%s: not made by crdgen (remove it)", e.Name())
			continue
		}
		if !bytes.Equal(got, w) {
			t.Errorf("%s: differs from crdgen's output; run go generate ./deploy", e.Name())
		}
	}
	for name := range want {
		if !slices.Contains(have, name) {
			t.Errorf("%s: missing; run go generate ./deploy", name)
		}
	}
}

// TestChart lints and renders the chart in both modes, compares the plain
// manifests and validates the output, through scripts/chart-check.sh.
func TestChart(t *testing.T) {
	if testing.Short() {
		t.Skip("chart checks build helm and kubeconform once; skipped with -short")
	}
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "chart-check.sh"))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		t.Skipf("chart checks skipped: tools cannot be installed:\n%s", out)
	case err != nil:
		t.Fatalf("scripts/chart-check.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// manifest is the part of a rendered object the flag checks read.
type manifest struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Name string   `json:"name"`
					Args []string `json:"args"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

func readManifests(t *testing.T, path string) []manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var out []manifest
	for i, doc := range strings.Split(string(b), "\n---\n") {
		var m manifest
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s document %d: %v", path, i+1, err)
		}
		if m.Kind != "" {
			out = append(out, m)
		}
	}
	return out
}

var flagLine = regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`)

// flagsOf returns the flags `palisade VERB -h` lists, or nil when the verb
// does not exist in this build.
func flagsOf(t *testing.T, bin, verb string) []string {
	t.Helper()
	out, _ := exec.Command(bin, verb, "-h").CombinedOutput()
	if bytes.Contains(out, []byte("unknown command")) {
		return nil
	}
	var flags []string
	for _, m := range flagLine.FindAllSubmatch(out, -1) {
		flags = append(flags, string(m[1]))
	}
	if len(flags) == 0 {
		t.Fatalf("palisade %s -h lists no flags:\n%s", verb, out)
	}
	return flags
}

// TestManifestFlags checks every flag the manifests pass to `palisade
// controller` and `palisade agent` exists in the binary built from this
// tree.
func TestManifestFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bin/palisade; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "palisade")
	build := exec.Command("go", "build", "-o", bin, "../cmd/palisade")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/palisade: %v\n%s", err, out)
	}
	known := map[string][]string{"controller": flagsOf(t, bin, "controller"), "agent": flagsOf(t, bin, "agent")}
	for _, mode := range []string{"small", "ha"} {
		path := filepath.Join("manifests", mode+".yaml")
		checked := 0
		for _, m := range readManifests(t, path) {
			for _, c := range m.Spec.Template.Spec.Containers {
				if len(c.Args) == 0 || known[c.Args[0]] == nil && c.Args[0] != "controller" {
					if len(c.Args) > 0 && c.Args[0] == "agent" {
						t.Logf("%s: %s/%s: this build has no agent command; its flags are not checked", path, m.Metadata.Name, c.Name)
					}
					continue
				}
				verb := c.Args[0]
				for _, a := range c.Args[1:] {
					name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
					if !strings.HasPrefix(a, "-") || !slices.Contains(known[verb], name) {
						t.Errorf("%s: %s/%s: palisade %s has no flag %q", path, m.Metadata.Name, c.Name, verb, a)
					}
					checked++
				}
			}
		}
		if checked == 0 {
			t.Errorf("%s: no controller flags found", path)
		}
	}
}
