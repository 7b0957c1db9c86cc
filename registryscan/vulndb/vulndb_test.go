package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/version"
)

func vulndataDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "vulndata"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("shared vulndata missing: %v", err)
	}
	return dir
}

var (
	sharedOnce sync.Once
	sharedDB   *DB
	sharedErr  error
)

// loadShared loads the whole shared feed once per test binary.
func loadShared(t testing.TB) *DB {
	t.Helper()
	dir := vulndataDir(t)
	sharedOnce.Do(func() {
		var b Builder
		for _, sub := range []string{"go", "rust", "pypi", "alpine-secdb"} {
			if err := b.AddDir(context.Background(), filepath.Join(dir, sub)); err != nil {
				sharedErr = err
				return
			}
		}
		sharedDB = b.Build()
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedDB
}

func TestLoadSharedFeed(t *testing.T) {
	db := loadShared(t)
	for _, p := range db.Problems() {
		t.Errorf("problem: %s", p)
	}
	// go 4,291 + rust 1,206 + pypi 2,661 per the data's README, plus the
	// secdb CVEs.
	if db.Len() < 4291+1206+2661 {
		t.Fatalf("Len() = %d, want at least %d", db.Len(), 4291+1206+2661)
	}
}

func TestMatchRealAdvisories(t *testing.T) {
	db := loadShared(t)
	alpine := &inventory.OSRelease{ID: "alpine", VersionID: "3.11.6"}
	tests := []struct {
		name      string
		osr       *inventory.OSRelease
		pkg       inventory.Package
		wantID    string // an advisory that must be found ("" = none at all)
		wantFixed string
	}{
		// GO-2020-0001: github.com/gin-gonic/gin before 1.6.0.
		{"go module before fix", nil, inventory.Package{Name: "github.com/gin-gonic/gin", Version: "v1.5.0", Type: inventory.GoModule}, "GO-2020-0001", "1.6.0"},
		{"go module at fix", nil, inventory.Package{Name: "github.com/gin-gonic/gin", Version: "v1.6.0", Type: inventory.GoModule}, "!GO-2020-0001", ""},
		{"go devel main module", nil, inventory.Package{Name: "github.com/gin-gonic/gin", Version: "(devel)", Type: inventory.GoModule}, "", ""},
		// RUSTSEC-2016-0001: openssl crate, fixed in 0.9.0.
		{"rust crate", nil, inventory.Package{Name: "openssl", Version: "0.8.0", Type: inventory.Cargo}, "RUSTSEC-2016-0001", "0.9.0"},
		// PYSEC-2020-342 (YAML): apache-skywalking, every version; name normalised.
		{"pypi yaml, name normalised", nil, inventory.Package{Name: "Apache_Skywalking", Version: "1.0.1", Type: inventory.Python}, "PYSEC-2020-342", ""},
		// Alpine secdb v3.11 main: ansible fixed CVE-2019-14904 in 2.9.3-r0.
		{"alpine secdb", alpine, inventory.Package{Name: "ansible", Version: "2.9.2-r0", Type: inventory.APK, SourceName: "ansible"}, "CVE-2019-14904", "2.9.3-r0"},
		{"alpine secdb fixed", alpine, inventory.Package{Name: "ansible", Version: "2.9.3-r0", Type: inventory.APK, SourceName: "ansible"}, "!CVE-2019-14904", ""},
		{"alpine other release", &inventory.OSRelease{ID: "alpine", VersionID: "3.99.0"}, inventory.Package{Name: "ansible", Version: "2.9.2-r0", Type: inventory.APK}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := db.MatchPackages(tt.osr, []inventory.Package{tt.pkg})
			switch {
			case tt.wantID == "":
				if len(got) != 0 {
					t.Fatalf("got %d findings (first %s), want none", len(got), got[0].ID)
				}
			case tt.wantID[0] == '!':
				for _, f := range got {
					if f.ID == tt.wantID[1:] {
						t.Fatalf("found %s, want it absent", f.ID)
					}
				}
			default:
				var f *Finding
				for i := range got {
					if got[i].ID == tt.wantID {
						f = &got[i]
					}
				}
				if f == nil {
					t.Fatalf("%s not found in %d findings", tt.wantID, len(got))
				}
				if f.FixedVersion != tt.wantFixed || f.FixAvailable != (tt.wantFixed != "") {
					t.Errorf("fixed = %q (available %v), want %q", f.FixedVersion, f.FixAvailable, tt.wantFixed)
				}
			}
		})
	}
}

func TestAffectsRanges(t *testing.T) {
	af := &Affected{Ranges: []Range{
		{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: "1.0"}, {Introduced: "2.0"}, {LastAffected: "2.5"}}},
	}}
	cmp := version.CompareSemVer
	tests := []struct {
		v         string
		hit       bool
		wantFixed string
	}{
		{"0.5", true, "1.0"}, {"1.0", false, ""}, {"1.5", false, ""}, {"2.0", true, ""}, {"2.5", true, ""}, {"2.6", false, ""},
	}
	for _, tt := range tests {
		hit, fixed := affects(cmp, tt.v, nil, sortedRanges(cmp, af))
		if hit != tt.hit || fixed != tt.wantFixed {
			t.Errorf("affects(%s) = %v, %q; want %v, %q", tt.v, hit, fixed, tt.hit, tt.wantFixed)
		}
	}
}

func TestDebianSourcePackageMatching(t *testing.T) {
	var b Builder
	b.AddFile("DSA-1.json", []byte(`{"id":"DSA-0001-1","aliases":["CVE-2099-0001"],
	 "affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
	 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]}],
	 "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}`))
	db := b.Build()
	if len(db.Problems()) > 0 {
		t.Fatal(db.Problems())
	}
	bookworm := &inventory.OSRelease{ID: "debian", VersionID: "12"}
	// libssl3's source package is openssl; the binNMU "+b1" belongs to the
	// binary, the source version is the one compared.
	pkg := inventory.Package{Name: "libssl3", Version: "3.0.11-1~deb12u1+b1", Type: inventory.Deb, SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u1"}
	got := db.MatchPackages(bookworm, []inventory.Package{pkg})
	if len(got) != 1 {
		t.Fatalf("got %d findings, want 1", len(got))
	}
	if f := got[0]; f.Package != "libssl3" || f.Severity != Critical || f.CVSSScore != 9.8 || f.FixedVersion != "3.0.11-1~deb12u2" {
		t.Errorf("finding = %+v", f)
	}
	pkg.SourceVersion = "3.0.11-1~deb12u2"
	if got := db.MatchPackages(bookworm, []inventory.Package{pkg}); len(got) != 0 {
		t.Errorf("fixed source version still matched: %+v", got)
	}
	if got := db.MatchPackages(&inventory.OSRelease{ID: "debian", VersionID: "11"}, []inventory.Package{pkg}); len(got) != 0 {
		t.Errorf("bullseye matched a bookworm advisory")
	}
}

func TestCVSS3Score(t *testing.T) {
	tests := []struct {
		vector string
		want   float64
		ok     bool
	}{
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, true},
		{"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0, true},
		{"CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1, true},
		{"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5, true},
		{"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N", 0, true},
		{"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 0, false},
		{"CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 0, false},
	}
	for _, tt := range tests {
		got, ok := CVSS3Score(tt.vector)
		if got != tt.want || ok != tt.ok {
			t.Errorf("CVSS3Score(%s) = %v, %v; want %v, %v", tt.vector, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBadRecordsAreProblems(t *testing.T) {
	var b Builder
	b.AddFile("a.json", []byte(`{"id":`))
	b.AddFile("b.json", []byte(`{"id":"X-1","affected":[{"package":{"ecosystem":"Go"}}]}`))
	b.AddFile("c.yaml", []byte("id: [unclosed"))
	b.AddFile("d.json", []byte(`{"id":"X-2","affected":[{"package":{"ecosystem":"Go","name":"m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0","fixed":"1"}]}]}]}`))
	b.AddFile("e.yaml", []byte("distroversion: v3.1\npackages:\n- pkg:\n    secfixes:\n      1.0-r0: [CVE-1]\n"))
	db := b.Build()
	if got := len(db.Problems()); got != 5 {
		t.Fatalf("got %d problems, want 5: %q", got, db.Problems())
	}
	if db.Len() != 0 {
		t.Errorf("Len() = %d, want 0", db.Len())
	}
}

func TestExportSource(t *testing.T) {
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("GO-2020-0001.json")
	data, err := os.ReadFile(filepath.Join(vulndataDir(t), "go", "GO-2020-0001.json"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/Go/all.zip" {
			http.NotFound(w, r)
			return
		}
		w.Write(zbuf.Bytes())
	}))
	defer srv.Close()
	db, err := ExportSource{BaseURL: srv.URL, Ecosystems: []string{"Go"}, Client: srv.Client()}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if db.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", db.Len())
	}
	if _, err := (ExportSource{BaseURL: srv.URL, Ecosystems: []string{"npm"}, Client: srv.Client()}).Load(context.Background()); err == nil {
		t.Fatal("missing ecosystem zip: got nil error")
	}
}

func FuzzParseOSV(f *testing.F) {
	f.Add([]byte(`{"id":"X","affected":[{"package":{"ecosystem":"Go","name":"m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2"}]}]}]}`), false)
	f.Add([]byte("id: X\naffected:\n- package: {ecosystem: PyPI, name: p}\n  versions: [1.10]\n"), true)
	f.Add([]byte("distroversion: v3.11\npackages:\n- pkg:\n    name: a\n    secfixes:\n      1.0-r0: [CVE-1 CVE-2]\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, yamlForm bool) {
		var b Builder
		if yamlForm {
			b.AddFile("x.yaml", data)
		} else {
			b.AddFile("x.json", data)
		}
		db := b.Build()
		db.MatchPackages(nil, []inventory.Package{{Name: "m", Version: "1.0", Type: inventory.GoModule}, {Name: "p", Version: "1.10", Type: inventory.Python}})
	})
}
