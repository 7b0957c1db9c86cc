package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/registryscan/layer/layertest"
)

type tarEntry struct {
	name     string
	typeflag byte
	link     string
	body     string
	size     int64 // when body is empty and size > 0, zeros
}

func mkTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typeflag, Linkname: e.link, Mode: 0o644, Format: tar.FormatPAX}
		if e.typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
			if e.body == "" {
				h.Size = e.size
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.body != "" {
			io.WriteString(tw, e.body)
		} else if e.size > 0 {
			io.CopyN(tw, zeros{}, e.size)
		}
	}
	tw.Close()
	return buf.Bytes()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func walkAll(data []byte, lim Limits) ([]Entry, error) {
	var got []Entry
	err := Walk(context.Background(), bytes.NewReader(data), lim, func(e *Entry, r io.Reader) error {
		got = append(got, *e)
		return nil
	})
	return got, err
}

func TestWalkHostile(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		wantErr error
	}{
		{"path traversal", []tarEntry{{name: "../../etc/passwd", typeflag: tar.TypeReg, body: "x"}}, ErrPathTraversal},
		{"traversal after clean", []tarEntry{{name: "usr/../../x", typeflag: tar.TypeReg, body: "x"}}, ErrPathTraversal},
		{"absolute path", []tarEntry{{name: "/etc/passwd", typeflag: tar.TypeReg, body: "x"}}, ErrAbsolutePath},
		{"symlink out of root", []tarEntry{{name: "etc/x", typeflag: tar.TypeSymlink, link: "../../../../etc/shadow"}}, ErrLinkEscapes},
		{"hardlink out of root", []tarEntry{{name: "etc/x", typeflag: tar.TypeLink, link: "../../etc/shadow"}}, ErrLinkEscapes},
		{"hardlink absolute", []tarEntry{{name: "etc/x", typeflag: tar.TypeLink, link: "/etc/shadow"}}, ErrLinkEscapes},
		{"empty whiteout", []tarEntry{{name: ".wh.", typeflag: tar.TypeReg}}, ErrBadPath},
		{"fine", []tarEntry{{name: "./etc/", typeflag: tar.TypeDir}, {name: "etc/os-release", typeflag: tar.TypeReg, body: "ID=x\n"},
			{name: "bin", typeflag: tar.TypeSymlink, link: "usr/bin"}, {name: "etc/alt", typeflag: tar.TypeSymlink, link: "/usr/bin/true"},
			{name: "usr/bin/x", typeflag: tar.TypeLink, link: "./etc/os-release"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := walkAll(mkTar(t, tt.entries...), DefaultLimits())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWalkWhiteouts(t *testing.T) {
	got, err := walkAll(mkTar(t,
		tarEntry{name: "etc/.wh.passwd", typeflag: tar.TypeReg},
		tarEntry{name: "var/lib/.wh..wh..opq", typeflag: tar.TypeReg},
		tarEntry{name: "./usr/bin/ls", typeflag: tar.TypeReg, body: "x"},
	), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{Path: "etc/passwd", Kind: Whiteout}, {Path: "var/lib", Kind: Opaque}, {Path: "usr/bin/ls", Kind: File, Size: 1}}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Path != want[i].Path || got[i].Kind != want[i].Kind || got[i].Size != want[i].Size {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestWalkLimits(t *testing.T) {
	big := mkTar(t, tarEntry{name: "zeros", typeflag: tar.TypeReg, size: 1 << 20})
	lim := DefaultLimits()
	lim.MaxBytes = 64 << 10
	// The visitor does not read the file; skipping it still reads the
	// stream, and the cap stops it.
	if _, err := walkAll(big, lim); !errors.Is(err, ErrTooLarge) {
		t.Errorf("1 MiB layer under a 64 KiB cap: err = %v, want ErrTooLarge", err)
	}
	var many []tarEntry
	for i := 0; i < 20; i++ {
		many = append(many, tarEntry{name: fmt.Sprintf("f%d", i), typeflag: tar.TypeReg, body: "x"})
	}
	lim = DefaultLimits()
	lim.MaxEntries = 10
	if _, err := walkAll(mkTar(t, many...), lim); !errors.Is(err, ErrTooManyEntries) {
		t.Errorf("20 entries under a limit of 10: err = %v, want ErrTooManyEntries", err)
	}
	lim = DefaultLimits()
	lim.MaxPathLen = 16
	if _, err := walkAll(mkTar(t, tarEntry{name: strings.Repeat("a/", 20), typeflag: tar.TypeDir}), lim); !errors.Is(err, ErrBadPath) {
		t.Errorf("long path: err = %v, want ErrBadPath", err)
	}
	trunc := big[:len(big)/2]
	if _, err := walkAll(trunc, DefaultLimits()); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("truncated layer: err = %v, want unexpected EOF", err)
	}
	if err := (Limits{}).Validate(); err == nil {
		t.Error("zero Limits validated")
	}
}

// TestWalkSparse walks a PAX 1.0 sparse file of 10 GiB logical size that
// takes a few hundred bytes in the archive: skipping it costs nothing.
func TestWalkSparse(t *testing.T) {
	data := layertest.SparseTar("huge", 10<<30)
	lim := DefaultLimits()
	lim.MaxBytes = 1 << 20
	got, err := walkAll(data, lim)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Path != "huge" || got[0].Size != 10<<30 {
		t.Fatalf("got %+v, want one 10 GiB entry named huge", got)
	}
}

func FuzzWalk(f *testing.F) {
	f.Add(mkTar(f, tarEntry{name: "a/b", typeflag: tar.TypeReg, body: "x"}, tarEntry{name: "a/.wh.c", typeflag: tar.TypeReg}))
	f.Add(mkTar(f, tarEntry{name: "l", typeflag: tar.TypeSymlink, link: "../x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxBytes: 1 << 20, MaxEntries: 1000, MaxPathLen: 4096}
		Walk(context.Background(), bytes.NewReader(data), lim, func(e *Entry, r io.Reader) error {
			if strings.HasPrefix(e.Path, "/") || strings.HasPrefix(e.Path, "../") || e.Path == ".." {
				t.Fatalf("unsafe path %q passed the walk", e.Path)
			}
			if r != nil {
				io.Copy(io.Discard, r)
			}
			return nil
		})
	})
}
