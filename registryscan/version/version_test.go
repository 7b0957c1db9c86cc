package version

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir is the shared version-ordering fixtures (see
// ../shared/vulndata/README.md): one comparison per line, "A < B", "A = B"
// or "A > B", with '#' and '//' comment lines.
func fixturesDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "vulndata", "version-fixtures"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("version fixtures missing: %v", err)
	}
	return dir
}

type fixture struct {
	line int
	a, b string
	want int
}

func readFixtures(t testing.TB, path string) []fixture {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []fixture
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "//") {
			continue
		}
		parts := strings.Split(line, " ")
		if len(parts) != 3 {
			t.Fatalf("%s:%d: malformed fixture %q", path, n, line)
		}
		want := map[string]int{"<": -1, "=": 0, ">": 1}
		w, ok := want[parts[1]]
		if !ok {
			t.Fatalf("%s:%d: unknown operator %q", path, n, parts[1])
		}
		out = append(out, fixture{line: n, a: parts[0], b: parts[2], want: w})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFixtures(t *testing.T) {
	dir := fixturesDir(t)
	tests := []struct {
		eco   Ecosystem
		files []string
	}{
		{Debian, []string{"debian-versions.txt", "debian-versions-generated.txt"}},
		{Alpine, []string{"alpine-versions.txt", "alpine-versions-generated.txt"}},
		{RedHat, []string{"redhat-versions.txt"}},
		{SemVer, []string{"semver-versions.txt"}},
		{PyPI, []string{"pypi-versions.txt", "pypi-versions-generated.txt"}},
		{Maven, []string{"maven-versions.txt", "maven-versions-generated.txt"}},
	}
	for _, tt := range tests {
		for _, file := range tt.files {
			t.Run(file, func(t *testing.T) {
				fx := readFixtures(t, filepath.Join(dir, file))
				if len(fx) == 0 {
					t.Fatalf("no fixtures in %s", file)
				}
				failed := 0
				for _, f := range fx {
					got, err := Compare(tt.eco, f.a, f.b)
					if err != nil {
						t.Fatal(err)
					}
					rev, _ := Compare(tt.eco, f.b, f.a)
					if sign(got) != f.want || sign(rev) != -f.want {
						failed++
						if failed <= 20 {
							t.Errorf("%s:%d: Compare(%q, %q) = %d (reverse %d), want %d", file, f.line, f.a, f.b, got, rev, f.want)
						}
					}
				}
				if failed > 0 {
					t.Errorf("%s: %d of %d comparisons wrong", file, failed, len(fx))
				}
			})
		}
	}
}

func TestCompareUnknownEcosystem(t *testing.T) {
	if _, err := Compare("Hex", "1", "2"); err == nil {
		t.Fatal("Compare with an unknown ecosystem: got nil error")
	}
}

func TestBase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Debian:12", "Debian"},
		{"Alpine:v3.18", "Alpine"},
		{"Go", "Go"},
	}
	for _, tt := range tests {
		if got := Base(tt.in); string(got) != tt.want {
			t.Errorf("Base(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzCompare(f *testing.F) {
	for _, s := range [][2]string{{"1:2.3-4~rc1", "2.3-4"}, {"1.2.3_rc1-r0", "1.2.3"}, {"1!2.0.post1.dev3+local.1", "2.0"},
		{"1.0-alpha-1", "1.0"}, {"v1.2.3-beta.1+b", "1.2.3"}, {"2:1.0~1^2-3.el9", "1.0"}, {"", ""}, {"~", "^"}} {
		f.Add(s[0], s[1])
	}
	ecos := []Ecosystem{Debian, Alpine, RedHat, PyPI, Maven, SemVer}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, eco := range ecos {
			x, _ := Compare(eco, a, b)
			y, _ := Compare(eco, b, a)
			if sign(x) != -sign(y) {
				t.Errorf("%s: Compare(%q, %q) = %d but reverse = %d", eco, a, b, x, y)
			}
		}
	})
}
