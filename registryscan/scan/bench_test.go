package scan

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

// BenchmarkColdInventoryDebian scans the Debian bookworm minbase image
// through the loopback registry with an empty cache each time: pull,
// gunzip, walk, parse, secret scan, merge. It reports the peak heap.
func BenchmarkColdInventoryDebian(b *testing.B) {
	img, _ := debianImageOf(b, true)
	reg := newTestRegistry(b)
	reg.seed(b, img)
	reg.push(b, "debian/minbase:bookworm", img)
	ref := reg.host() + "/debian/minbase:bookworm"
	cfg := DefaultConfig()
	cfg.Insecure = true
	runtime.GC()
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := newScanner(b, cfg, nil)
		reps, err := s.ScanImage(context.Background(), ref)
		if err != nil {
			b.Fatal(err)
		}
		if len(reps[0].Packages) == 0 {
			b.Fatal("no packages")
		}
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// BenchmarkRescanUnchangedDigest re-scans an image whose digest is cached:
// one manifest request, no layer bytes.
func BenchmarkRescanUnchangedDigest(b *testing.B) {
	img, _ := debianImageOf(b, true)
	reg := newTestRegistry(b)
	reg.seed(b, img)
	reg.push(b, "debian/minbase:bookworm", img)
	ref := reg.host() + "/debian/minbase:bookworm"
	cfg := DefaultConfig()
	cfg.Insecure = true
	s := newScanner(b, cfg, feed(b, "go"))
	if _, err := s.ScanImage(context.Background(), ref); err != nil {
		b.Fatal(err)
	}
	reg.blobBytes.Store(0)
	reg.blobGets.Store(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.ScanImage(context.Background(), ref); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(reg.blobBytes.Load())/float64(b.N), "layer-bytes/op")
	b.ReportMetric(float64(reg.blobGets.Load())/float64(b.N), "blob-requests/op")
}

// BenchmarkMatch100Inventories matches 100 inventories against the whole
// shared feed (Go, crates.io, PyPI, Alpine secdb). Each inventory has the
// Debian image's 88 packages plus 60 Go modules, 30 crates, 30 PyPI and
// 30 Alpine packages named in the feed, at versions taken from it.
func BenchmarkMatch100Inventories(b *testing.B) {
	db := feed(b, "go", "rust", "pypi", "alpine-secdb")
	invs := syntheticInventories(b, 100)
	b.ResetTimer()
	findings := 0
	for i := 0; i < b.N; i++ {
		findings = 0
		for _, inv := range invs {
			findings += len(db.MatchPackages(inv.OS, inv.Packages))
		}
	}
	b.ReportMetric(float64(findings), "findings")
	b.ReportMetric(float64(len(invs)), "inventories")
}

func syntheticInventories(b *testing.B, n int) []*inventory.Image {
	b.Helper()
	root := debianRootfs(b)
	status, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		b.Fatal(err)
	}
	debs, err := inventory.ParseDpkgStatus(status)
	if err != nil {
		b.Fatal(err)
	}
	dir := vulndata(b)
	var pkgs [4][]inventory.Package
	pick := func(sub string, typ inventory.Type, limit int) []inventory.Package {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		var out []inventory.Package
		for _, e := range ents {
			if len(out) >= limit {
				break
			}
			data, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				continue
			}
			var a *vulndb.Advisory
			if strings.HasSuffix(e.Name(), ".json") {
				a, err = vulndb.ParseOSVJSON(data)
			} else {
				a, err = vulndb.ParseOSVYAML(data)
			}
			if err != nil || len(a.Affected) == 0 || len(a.Affected[0].Ranges) == 0 {
				continue
			}
			v := ""
			for _, ev := range a.Affected[0].Ranges[0].Events {
				if ev.Fixed != "" {
					v = ev.Fixed
				}
			}
			if v == "" {
				continue
			}
			out = append(out, inventory.Package{Name: a.Affected[0].Package.Name, Version: v, Type: typ, Path: "app"})
		}
		return out
	}
	pkgs[0] = pick("go", inventory.GoModule, 60)
	pkgs[1] = pick("rust/crates", inventory.Cargo, 30)
	var pypi []inventory.Package
	ents, _ := os.ReadDir(filepath.Join(dir, "pypi", "vulns"))
	for _, e := range ents[:min(30, len(ents))] {
		pypi = append(pypi, pick(filepath.Join("pypi", "vulns", e.Name()), inventory.Python, 1)...)
	}
	pkgs[2] = pypi
	apks := []string{"ansible", "openssl", "busybox", "musl", "curl", "libxml2", "sqlite", "zlib", "expat", "git"}
	for i := 0; i < 30; i++ {
		pkgs[3] = append(pkgs[3], inventory.Package{Name: apks[i%len(apks)], SourceName: apks[i%len(apks)], Version: fmt.Sprintf("1.%d.0-r0", i), Type: inventory.APK, Path: "lib/apk/db/installed"})
	}
	var out []*inventory.Image
	for i := 0; i < n; i++ {
		var all []inventory.Package
		all = append(all, debs...)
		for _, p := range pkgs {
			all = append(all, p...)
		}
		osr := &inventory.OSRelease{ID: "debian", VersionID: "12"}
		if i%2 == 1 {
			osr = &inventory.OSRelease{ID: "alpine", VersionID: "3.11.6"}
		}
		out = append(out, &inventory.Image{OS: osr, Packages: all})
	}
	return out
}
