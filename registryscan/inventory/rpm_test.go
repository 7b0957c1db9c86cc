package inventory

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const rpmSpec = `Name: palisade-demo
Version: 1.2.3
Release: 4.el9
Epoch: 2
Summary: demo
License: MIT
BuildArch: noarch
%description
demo
%package -n libdemo1
Summary: demo library
%description -n libdemo1
demo library
%files
%files -n libdemo1
`

const rpmSpec2 = `Name: tzdata-demo
Version: 2024a
Release: 1
Summary: demo
License: MIT
BuildArch: noarch
%description
demo
%files
`

// rpmSQLiteDB builds two packages with rpmbuild (one with an epoch and a
// subpackage of another name), records them in a fresh rpm database with
// rpm --justdb (rpm 4.18's SQLite backend) and returns the database file
// and what rpm -qa says about it.
func rpmSQLiteDB(t *testing.T) ([]byte, []string) {
	t.Helper()
	for _, tool := range []string{"rpm", "rpmbuild"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs the rpm package)", tool)
		}
	}
	tmp := t.TempDir()
	for i, spec := range []string{rpmSpec, rpmSpec2} {
		p := filepath.Join(tmp, fmt.Sprintf("s%d.spec", i))
		os.WriteFile(p, []byte(spec), 0o644)
		if b, err := exec.Command("rpmbuild", "--define", "_topdir "+filepath.Join(tmp, "top"), "-bb", p).CombinedOutput(); err != nil {
			t.Fatalf("rpmbuild: %v\n%s", err, b)
		}
	}
	rpms, _ := filepath.Glob(filepath.Join(tmp, "top", "RPMS", "noarch", "*.rpm"))
	dbdir := filepath.Join(tmp, "db")
	args := append([]string{"--define", "_db_backend sqlite", "--dbpath", dbdir, "-i", "--justdb", "--nodeps", "--nosignature"}, rpms...)
	if b, err := exec.Command("rpm", args...).CombinedOutput(); err != nil {
		t.Fatalf("rpm -i --justdb: %v\n%s", err, b)
	}
	out, err := exec.Command("rpm", "--dbpath", dbdir, "-qa", "--qf", `%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{SOURCERPM}\n`).Output()
	if err != nil {
		t.Fatalf("rpm -qa: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dbdir, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	return data, lines
}

// rpmLines renders packages the way rpmSQLiteDB's rpm -qa query does.
func rpmLines(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		v := p.Version
		if !strings.Contains(v, ":") {
			v = "0:" + v
		}
		out = append(out, fmt.Sprintf("%s\t%s\t%s-%s.src.rpm", p.Name, v, p.SourceName, p.SourceVersion))
	}
	sort.Strings(out)
	return out
}

func TestRPMSQLiteAgainstRPM(t *testing.T) {
	data, want := rpmSQLiteDB(t)
	pkgs, err := ParseRPMDB(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpmLines(pkgs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("parsed:\n%s\nrpm -qa:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Truncations of a real database fail cleanly.
	for _, n := range []int{100, 4096, len(data) / 2} {
		if _, err := ParseRPMDB(data[:n]); err == nil {
			t.Errorf("database cut to %d bytes: got nil error", n)
		}
	}
}

// TestRPMBerkeleyDB loads the same header blobs into a Berkeley DB hash
// file written by Berkeley DB itself (db_load), the format of rpm's
// Packages before rpm 4.16, and reads them back.
func TestRPMBerkeleyDB(t *testing.T) {
	data, want := rpmSQLiteDB(t)
	if _, err := exec.LookPath("db_load"); err != nil {
		t.Skip("db_load not installed (scripts/deps.sh installs db-util)")
	}
	blobs, err := sqliteRPMBlobs(data)
	if err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	for i, b := range blobs {
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], uint32(i+1))
		for _, item := range [][]byte{key[:], b} {
			for _, c := range item {
				fmt.Fprintf(&in, `\%02x`, c)
			}
			in.WriteByte('\n')
		}
	}
	p := filepath.Join(t.TempDir(), "Packages")
	cmd := exec.Command("db_load", "-T", "-t", "hash", p)
	cmd.Stdin = &in
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("db_load: %v\n%s", err, b)
	}
	bdb, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := ParseRPMDB(bdb)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpmLines(pkgs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("parsed:\n%s\nrpm -qa:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// ndbFile lays blobs out as rpm's NDB Packages.db (lib/backend/ndb/rpmpkg.c):
// a 32-byte header and slot pages, then blobs in 16-byte blocks. No tool
// on this machine writes NDB, so this follows the format description.
func ndbFile(blobs [][]byte) []byte {
	le := binary.LittleEndian
	buf := make([]byte, ndbPageSize)
	copy(buf, "RpmP")
	le.PutUint32(buf[12:], 1) // one slot page
	for i := 0; i < ndbPageSize/ndbSlotSize-ndbHeaderSlots; i++ {
		le.PutUint32(buf[32+i*ndbSlotSize:], ndbSlotMagic)
	}
	for i, b := range blobs {
		blk := len(buf) / ndbBlockSize
		s := buf[32+i*ndbSlotSize:]
		le.PutUint32(s[4:], uint32(i+1))
		le.PutUint32(s[8:], uint32(blk))
		n := (16 + len(b) + 15) / 16
		le.PutUint32(s[12:], uint32(n))
		h := make([]byte, 16)
		le.PutUint32(h, ndbBlobMagic)
		le.PutUint32(h[4:], uint32(i+1))
		le.PutUint32(h[12:], uint32(len(b)))
		buf = append(buf, h...)
		buf = append(buf, b...)
		buf = append(buf, make([]byte, n*16-16-len(b))...)
	}
	return buf
}

func TestRPMNDB(t *testing.T) {
	data, want := rpmSQLiteDB(t)
	blobs, err := sqliteRPMBlobs(data)
	if err != nil {
		t.Fatal(err)
	}
	ndb := ndbFile(blobs)
	pkgs, err := ParseRPMDB(ndb)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpmLines(pkgs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("parsed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	bad := append([]byte(nil), ndb...)
	binary.LittleEndian.PutUint32(bad[32+8:], 1<<30) // first slot's blob far outside
	if _, err := ParseRPMDB(bad); err == nil || !strings.Contains(err.Error(), "outside the file") {
		t.Errorf("slot pointing outside: err = %v", err)
	}
}

func TestRPMHeaderErrors(t *testing.T) {
	tests := []struct {
		name string
		blob []byte
		want string
	}{
		{"short", []byte{0, 0}, "too short"},
		{"huge index", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, "out of range"},
		{"truncated", []byte{0, 0, 0, 1, 0, 0, 0, 8}, "shorter than"},
	}
	for _, tt := range tests {
		if _, err := parseRPMHeader(tt.blob); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParseRPMDB(f *testing.F) {
	f.Add([]byte("SQLite format 3\x00" + strings.Repeat("\x00", 100)))
	f.Add(ndbFile([][]byte{{0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 3, 0xe8, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 0}}))
	meta := make([]byte, 4096)
	binary.LittleEndian.PutUint32(meta[12:], bdbHashMagic)
	binary.LittleEndian.PutUint32(meta[20:], 4096)
	f.Add(meta)
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseRPMDB(data)
	})
}
