// Package layer walks one image layer, an uncompressed tar stream, entry by
// entry, with the defences a scanner of untrusted images needs: paths that
// are absolute or climb out of the root, links that point outside it,
// oversized streams (decompression bombs) and archives with too many entries
// are rejected with an error naming the entry, and nothing is ever written
// to the filesystem. OCI whiteouts are reported as deletions so that a
// caller can compute the final filesystem of a stack of layers.
package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Errors naming the defence that rejected a layer.
var (
	ErrAbsolutePath   = errors.New("layer: absolute path")
	ErrPathTraversal  = errors.New("layer: path escapes the root")
	ErrLinkEscapes    = errors.New("layer: link target escapes the root")
	ErrTooLarge       = errors.New("layer: uncompressed size over the limit")
	ErrTooManyEntries = errors.New("layer: too many entries")
	ErrBadPath        = errors.New("layer: malformed path")
)

// Limits bound the work one layer may cause.
type Limits struct {
	// MaxBytes is the most bytes read from the uncompressed tar stream
	// (headers and contents); a decompression bomb stops here.
	MaxBytes int64
	// MaxEntries is the most tar entries in one layer.
	MaxEntries int
	// MaxPathLen is the longest accepted entry path, in bytes.
	MaxPathLen int
}

// DefaultLimits suit real images: 8 GiB uncompressed, a million entries,
// 4 KiB paths.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 8 << 30, MaxEntries: 1_000_000, MaxPathLen: 4096}
}

// Validate reports a limit that is not positive.
func (l Limits) Validate() error {
	switch {
	case l.MaxBytes <= 0:
		return fmt.Errorf("layer: MaxBytes %d must be positive", l.MaxBytes)
	case l.MaxEntries <= 0:
		return fmt.Errorf("layer: MaxEntries %d must be positive", l.MaxEntries)
	case l.MaxPathLen <= 0:
		return fmt.Errorf("layer: MaxPathLen %d must be positive", l.MaxPathLen)
	}
	return nil
}

// Kind is what an entry is.
type Kind int

// Entry kinds. Whiteout deletes Path from lower layers; Opaque deletes
// everything below the directory Path from lower layers.
const (
	File Kind = iota
	Dir
	Symlink
	Hardlink
	Whiteout
	Opaque
	Other // devices, fifos
)

// Entry is one tar entry, its path cleaned and relative to the root
// ("usr/bin/ls", never "/usr/bin/ls" or "./usr/bin/ls").
type Entry struct {
	Path string
	Kind Kind
	// Size is the file's logical size (a sparse file's full size).
	Size int64
	Mode fs.FileMode
	// Link is a symlink's target as written, or a hardlink's cleaned
	// target path.
	Link string
}

// Visitor is called for each entry in order. For a File, content reads the
// file's bytes; the visitor may read all, part or none of it. content is
// nil for other kinds.
type Visitor func(e *Entry, content io.Reader) error

// Walk reads the uncompressed tar stream r and calls visit for each entry.
// It stops at the first error, from the stream, a defence or visit, and
// wraps it with the offending entry's name.
func Walk(ctx context.Context, r io.Reader, lim Limits, visit Visitor) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	cr := &capReader{r: r, left: lim.MaxBytes}
	tr := tar.NewReader(cr)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if n >= lim.MaxEntries {
			return fmt.Errorf("%w (more than %d)", ErrTooManyEntries, lim.MaxEntries)
		}
		e, err := entryOf(hdr, lim)
		if err != nil {
			return err
		}
		var content io.Reader
		if e.Kind == File {
			content = tr
		}
		if err := visit(e, content); err != nil {
			return fmt.Errorf("entry %q: %w", e.Path, err)
		}
	}
}

// CleanPath turns a tar entry name into a root-relative path, rejecting
// absolute paths and paths that climb out of the root.
func CleanPath(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w %q", ErrBadPath, name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w %q", ErrAbsolutePath, name)
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%w: %q", ErrPathTraversal, name)
	}
	if p == "." {
		return "", nil
	}
	return p, nil
}

func entryOf(hdr *tar.Header, lim Limits) (*Entry, error) {
	if len(hdr.Name) > lim.MaxPathLen {
		return nil, fmt.Errorf("%w: path of %d bytes (limit %d)", ErrBadPath, len(hdr.Name), lim.MaxPathLen)
	}
	p, err := CleanPath(hdr.Name)
	if err != nil {
		return nil, err
	}
	e := &Entry{Path: p, Size: hdr.Size, Mode: hdr.FileInfo().Mode()}
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	switch {
	case base == ".wh..wh..opq":
		e.Kind, e.Path = Opaque, dir
		return e, nil
	case strings.HasPrefix(base, ".wh."):
		e.Kind, e.Path = Whiteout, path.Join(dir, strings.TrimPrefix(base, ".wh."))
		if e.Path == "." || strings.TrimPrefix(base, ".wh.") == "" {
			return nil, fmt.Errorf("%w: whiteout %q names nothing", ErrBadPath, hdr.Name)
		}
		return e, nil
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, '\x00':
		e.Kind = File
		if hdr.Size < 0 {
			return nil, fmt.Errorf("%w: entry %q has negative size", ErrBadPath, hdr.Name)
		}
	case tar.TypeDir:
		e.Kind = Dir
	case tar.TypeSymlink:
		e.Kind, e.Link = Symlink, hdr.Linkname
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return nil, fmt.Errorf("%w: symlink %q has an empty or malformed target", ErrBadPath, hdr.Name)
		}
		// An absolute target resolves inside the image root; a relative
		// one must not climb above it.
		if !strings.HasPrefix(hdr.Linkname, "/") {
			t := path.Join(dir, hdr.Linkname)
			if t == ".." || strings.HasPrefix(t, "../") {
				return nil, fmt.Errorf("%w: symlink %q -> %q", ErrLinkEscapes, hdr.Name, hdr.Linkname)
			}
		}
	case tar.TypeLink:
		t, err := CleanPath(hdr.Linkname)
		if err != nil || t == "" {
			return nil, fmt.Errorf("%w: hardlink %q -> %q", ErrLinkEscapes, hdr.Name, hdr.Linkname)
		}
		e.Kind, e.Link = Hardlink, t
	default:
		e.Kind = Other
	}
	return e, nil
}

// capReader fails with ErrTooLarge once more than the limit has been read.
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
