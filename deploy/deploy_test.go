package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
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

// built is cmd/palisade built once for the package's tests.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildPalisade builds cmd/palisade from this tree into a temporary
// folder, once for all the tests that run it.
func buildPalisade(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "palisade-deploy-test-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "palisade")
		if out, err := exec.Command("go", "build", "-o", built.bin, "../cmd/palisade").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/palisade: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// TestManifestFlags checks every flag the manifests pass to `palisade
// controller` and `palisade agent` exists in the binary built from this
// tree.
func TestManifestFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bin/palisade; skipped with -short")
	}
	bin := buildPalisade(t)
	known := map[string][]string{"controller": flagsOf(t, bin, "controller"), "agent": flagsOf(t, bin, "agent")}
	for _, mode := range []string{"small", "ha"} {
		path := filepath.Join("manifests", mode+".yaml")
		checked := 0
		for _, m := range readManifests(t, path) {
			for _, c := range m.Spec.Template.Spec.Containers {
				if len(c.Args) == 0 || known[c.Args[0]] == nil {
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

// TestChartImageIsMakeImage checks the chart's default image is the one
// `make image` tags: the same repository, and the chart's appVersion as the
// binary's version (which becomes the tag).
func TestChartImageIsMakeImage(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	out, err := exec.Command("make", "-s", "-n", "-C", "..", "image").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n image: %v\n%s", err, out)
	}
	repo := regexp.MustCompile(`--repository (\S+)`).FindSubmatch(out)
	version := regexp.MustCompile(`-X main\.version=(\S+?)"`).FindSubmatch(out)
	if repo == nil || version == nil {
		t.Fatalf("make -n image names no --repository or -X main.version:\n%s", out)
	}
	var values struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	for path, v := range map[string]any{filepath.Join("helm", "palisade", "values.yaml"): &values, filepath.Join("helm", "palisade", "Chart.yaml"): &chart} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	chartImage := values.Image.Repository + ":" + values.Image.Tag
	if values.Image.Tag == "" {
		chartImage = values.Image.Repository + ":" + chart.AppVersion
	}
	if made := string(repo[1]) + ":" + string(version[1]); made != chartImage {
		t.Errorf("make image tags %s, the chart's default image is %s", made, chartImage)
	}
	// The rendered manifests use it, with the controller as the image's
	// non-root user and the agent as root.
	b, err := os.ReadFile(filepath.Join("manifests", "small.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("image: "+chartImage+"\n")) {
		t.Errorf("manifests/small.yaml does not use image %s", chartImage)
	}
	for _, want := range []string{"runAsNonRoot: true\n        runAsUser: 65532", "privileged: true\n            runAsUser: 0"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("manifests/small.yaml lacks %q", want)
		}
	}
}
