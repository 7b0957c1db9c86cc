package inventory

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

const dpkgStatus = `Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library
 continuation line: with a colon

Package: libgcc-s1
Status: install ok installed
Source: gcc-12 (12.2.0-14)
Version: 12.2.0-14+b1

Package: removed-pkg
Status: deinstall ok config-files
Version: 1.0

Package: base-files
Status: install ok installed
Version: 12.4+deb12u5
`

func TestParseDpkgStatus(t *testing.T) {
	got, err := ParseDpkgStatus([]byte(dpkgStatus))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{Name: "libc6", Version: "2.36-9+deb12u4", Type: Deb, SourceName: "glibc", SourceVersion: "2.36-9+deb12u4", Arch: "amd64"},
		{Name: "libgcc-s1", Version: "12.2.0-14+b1", Type: Deb, SourceName: "gcc-12", SourceVersion: "12.2.0-14"},
		{Name: "base-files", Version: "12.4+deb12u5", Type: Deb, SourceName: "base-files", SourceVersion: "12.4+deb12u5"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d packages, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("package %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseDpkgStatusErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no version", "Package: a\nStatus: install ok installed\n", `package "a": no Version field`},
		{"bad source", "Package: a\nVersion: 1\nSource: b 1.0\n", `malformed Source field`},
		{"no colon", "Package a\n", "no field name"},
	}
	for _, tt := range tests {
		_, err := ParseDpkgStatus([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestParseAPKInstalled(t *testing.T) {
	in := "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nP:libcrypto3\nV:3.1.4-r5\no:openssl\n"
	got, err := ParseAPKInstalled([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Package{
		{Name: "musl", Version: "1.2.4-r2", Type: APK, Arch: "x86_64", SourceName: "musl", SourceVersion: "1.2.4-r2"},
		{Name: "libcrypto3", Version: "3.1.4-r5", Type: APK, SourceName: "openssl", SourceVersion: "3.1.4-r5"},
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := ParseAPKInstalled([]byte("P:x\n\n")); err == nil {
		t.Error("package without version: got nil error")
	}
}

func TestParseSmallFormats(t *testing.T) {
	npm, err := ParseNPMPackageJSON([]byte(`{"name":"@scope/left-pad","version":"1.3.0"}`))
	if err != nil || npm.Name != "@scope/left-pad" || npm.Version != "1.3.0" || npm.Type != NPM {
		t.Errorf("npm = %+v, %v", npm, err)
	}
	if _, err := ParseNPMPackageJSON([]byte(`{"name":"x"}`)); err == nil {
		t.Error("package.json without version: got nil error")
	}
	py, err := ParsePythonMetadata([]byte("Metadata-Version: 2.1\nName: Jinja2\nVersion: 2.10\n\nName: not-this\nVersion: 9\n"))
	if err != nil || py.Name != "Jinja2" || py.Version != "2.10" || py.Type != Python {
		t.Errorf("python = %+v, %v", py, err)
	}
	osr, err := ParseOSRelease([]byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n"))
	if err != nil || *osr != (OSRelease{ID: "debian", VersionID: "12", VersionCodename: "bookworm", PrettyName: "Debian GNU/Linux 12 (bookworm)"}) {
		t.Errorf("os-release = %+v, %v", osr, err)
	}
	lock := `version = 3

[[package]]
name = "myapp"
version = "0.1.0"

[[package]]
name = "openssl"
version = "0.8.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "abc"
`
	crates, err := ParseCargoLock([]byte(lock))
	if err != nil || len(crates) != 1 || crates[0] != (Package{Name: "openssl", Version: "0.8.0", Type: Cargo}) {
		t.Errorf("Cargo.lock = %+v, %v", crates, err)
	}
}

func TestParseCargoAuditable(t *testing.T) {
	raw := zlibOf(t, `{"packages":[{"name":"app","version":"0.1.0","source":"local","root":true},{"name":"smallvec","version":"1.6.0","source":"crates.io"}]}`)
	got, err := ParseCargoAuditable(raw)
	if err != nil || len(got) != 1 || got[0] != (Package{Name: "smallvec", Version: "1.6.0", Type: Cargo}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ParseCargoAuditable([]byte("not zlib")); err == nil {
		t.Error("garbage section: got nil error")
	}
}

func zlibOf(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.Bytes()
}

func jarOf(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, data := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	zw.Close()
	return b.Bytes()
}

func TestParseJarNested(t *testing.T) {
	inner := jarOf(t, map[string][]byte{
		"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": []byte("groupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n"),
	})
	noPom := jarOf(t, map[string][]byte{"META-INF/MANIFEST.MF": []byte("Manifest-Version: 1.0\r\nImplementation-Version: 1.2.3\r\n")})
	outer := jarOf(t, map[string][]byte{
		"META-INF/MANIFEST.MF":                []byte("Manifest-Version: 1.0\nImplementation-Title: app\nImplementation-Version: 1.0\n"),
		"BOOT-INF/lib/log4j-core-2.14.1.jar":  inner,
		"BOOT-INF/lib/commons-text-1.2.3.jar": noPom,
	})
	got, err := ParseJar("app/app.jar", outer, 3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Package{
		"org.apache.logging.log4j:log4j-core": {Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", Type: Java, Path: "app/app.jar!/BOOT-INF/lib/log4j-core-2.14.1.jar"},
		"commons-text":                        {Name: "commons-text", Version: "1.2.3", Type: Java, Path: "app/app.jar!/BOOT-INF/lib/commons-text-1.2.3.jar"},
		"app":                                 {Name: "app", Version: "1.0", Type: Java, Path: "app/app.jar"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %d packages", got, len(want))
	}
	for _, p := range got {
		if want[p.Name] != p {
			t.Errorf("got %+v, want %+v", p, want[p.Name])
		}
	}
	// Depth 0 does not open nested jars.
	if got, _ := ParseJar("app.jar", outer, 0, 1<<20); len(got) != 1 {
		t.Errorf("depth 0: got %+v, want only the outer jar", got)
	}
	// An entry bigger than the limit is refused, not inflated.
	if _, err := ParseJar("app.jar", outer, 3, 64); err == nil {
		t.Error("entries over the limit: got nil error")
	}
}

type file struct {
	name, body string
	mode       int64
	typeflag   byte
}

func layerTar(t testing.TB, files ...file) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		tf := f.typeflag
		if tf == 0 {
			tf = tar.TypeReg
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Size: int64(len(f.body)), Mode: mode, Typeflag: tf}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, f.body)
	}
	tw.Close()
	return b.Bytes()
}

func analyze(t testing.TB, digest string, data []byte) *Layer {
	t.Helper()
	a, err := NewAnalyzer(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.Layer(context.Background(), digest, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMergeFollowsLayerOrder(t *testing.T) {
	base := analyze(t, "sha256:1", layerTar(t,
		file{name: "etc/os-release", body: "ID=alpine\nVERSION_ID=3.11.6\n"},
		file{name: "lib/apk/db/installed", body: "P:musl\nV:1.1.24-r2\n\nP:busybox\nV:1.31.1-r9\n"},
		file{name: "app/node_modules/lodash/package.json", body: `{"name":"lodash","version":"4.17.15"}`},
		file{name: "app/node_modules/@types/node/package.json", body: `{"name":"@types/node","version":"14.0.0"}`},
		file{name: "usr/lib/python3.8/site-packages/Jinja2-2.10.dist-info/METADATA", body: "Name: Jinja2\nVersion: 2.10\n"},
		file{name: "root/.aws/credentials", body: "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"},
	))
	top := analyze(t, "sha256:2", layerTar(t,
		// apk upgrade rewrote the database
		file{name: "lib/apk/db/installed", body: "P:musl\nV:1.1.24-r3\n"},
		file{name: "app/node_modules/.wh.lodash", body: ""},
		file{name: "usr/lib/python3.8/site-packages/.wh..wh..opq", body: ""},
		file{name: "root/.aws/credentials", body: "[default]\n"},
	))
	img := Merge([]*Layer{base, top})
	var names []string
	for _, p := range img.Packages {
		names = append(names, string(p.Type)+":"+p.Name+"@"+p.Version+"<"+p.Layer)
	}
	want := []string{"apk:musl@1.1.24-r3<sha256:2", "npm:@types/node@14.0.0<sha256:1"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("packages = %v, want %v", names, want)
	}
	if img.OS == nil || img.OS.ID != "alpine" {
		t.Errorf("OS = %+v", img.OS)
	}
	if len(img.Secrets) != 0 {
		t.Errorf("secret in an overwritten file survived: %+v", img.Secrets)
	}
	if got := Merge([]*Layer{base}); len(got.Secrets) != 1 || got.Secrets[0].Rule != "aws-access-key-id" {
		t.Errorf("base secrets = %+v, want the AWS key", got.Secrets)
	}
}

func TestLayerNotesMalformedDatabases(t *testing.T) {
	l := analyze(t, "sha256:3", layerTar(t,
		file{name: "var/lib/dpkg/status", body: "Package: a\nStatus: install ok installed\n"},
		file{name: "var/lib/dpkg/status.d/b", body: "Package: b\nVersion: 1.0\n"},
		file{name: "var/lib/dpkg/status.d/b.md5sums", body: "d41d8cd98f00b204e9800998ecf8427e  usr/bin/b\n"},
		file{name: "app/node_modules/x/package.json", body: "{not json"},
		file{name: "var/lib/rpm/rpmdb.sqlite", body: "SQLite format 3\x00"},
	))
	if len(l.Packages) != 1 || l.Packages[0].Name != "b" {
		t.Errorf("packages = %+v, want b from status.d", l.Packages)
	}
	if len(l.Notes) != 3 {
		t.Errorf("notes = %q, want 3 (dpkg, npm, rpm)", l.Notes)
	}
}

func TestLayerSkipsHugeFiles(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxFileSize = 16
	a, _ := NewAnalyzer(cfg)
	l, err := a.Layer(context.Background(), "sha256:4", bytes.NewReader(layerTar(t,
		file{name: "var/lib/dpkg/status", body: dpkgStatus})))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Packages) != 0 || len(l.Notes) != 1 || !strings.Contains(l.Notes[0], "over the 16-byte limit") {
		t.Errorf("packages %+v notes %q", l.Packages, l.Notes)
	}
}

func TestExecutableThisTestBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := ParseExecutable(data)
	if err != nil {
		t.Fatal(err)
	}
	var stdlib string
	for _, p := range pkgs {
		if p.Name == "stdlib" {
			stdlib = p.Version
		}
	}
	if stdlib == "" || !strings.HasPrefix("go"+stdlib, strings.Fields(strings.TrimPrefix(runtimeVersion(), "devel "))[0]) {
		t.Errorf("stdlib version %q, toolchain %s", stdlib, runtimeVersion())
	}
	if _, err := ParseExecutable([]byte("\x7fELF garbage")); !errors.Is(err, errSkip) {
		t.Errorf("garbage ELF: err = %v, want errSkip", err)
	}
}

func FuzzParsers(f *testing.F) {
	f.Add([]byte(dpkgStatus))
	f.Add([]byte("P:musl\nV:1.2.4-r2\no:musl\n\n"))
	f.Add([]byte(`{"name":"a","version":"1"}`))
	f.Add([]byte("Name: a\nVersion: 1\n"))
	f.Add([]byte("[[package]]\nname = \"a\"\nversion = \"1\"\nsource = \"registry+x\"\n"))
	f.Add(zlibOf(f, `{"packages":[{"name":"a","version":"1","source":"crates.io"}]}`))
	f.Add(jarOf(f, map[string][]byte{"META-INF/maven/g/a/pom.properties": []byte("groupId=g\nartifactId=a\nversion=1\n")}))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseDpkgStatus(data)
		ParseAPKInstalled(data)
		ParseNPMPackageJSON(data)
		ParsePythonMetadata(data)
		ParseCargoLock(data)
		ParseCargoAuditable(data)
		ParseJar("x.jar", data, 2, 1<<20)
		ParseOSRelease(data)
		ParseExecutable(data)
		ParseRPMDB(data)
	})
}

func runtimeVersion() string { return runtime.Version() }
