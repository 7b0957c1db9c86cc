// Package inventory lists what is installed in an image: operating-system
// packages (dpkg, apk, rpm), Go modules compiled into binaries, npm,
// Python, Java and Rust packages, the operating-system release, and
// secrets left in files. Each layer is analysed on its own, so that its
// result can be cached by layer digest; Merge then applies the layers in
// order, whiteouts included, to give the inventory of the final filesystem.
package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/palisade-sec/palisade/registryscan/layer"
	"github.com/palisade-sec/palisade/registryscan/secret"
)

// Type is the kind of package database or artefact a package came from.
type Type string

// Package types.
const (
	Deb      Type = "deb"
	APK      Type = "apk"
	RPM      Type = "rpm"
	GoModule Type = "gomod"
	NPM      Type = "npm"
	Python   Type = "python"
	Java     Type = "java"
	Cargo    Type = "cargo"
)

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Type    Type   `json:"type"`
	// SourceName and SourceVersion are the source package a binary package
	// was built from (dpkg Source:, apk origin, rpm SOURCERPM), when known.
	SourceName    string `json:"sourceName,omitempty"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	Arch          string `json:"arch,omitempty"`
	// Layer is the digest of the layer the package's record came from.
	Layer string `json:"layer,omitempty"`
	// Path is the file that recorded the package, relative to the root;
	// "a.jar!/BOOT-INF/lib/b.jar" for a jar nested in a jar.
	Path string `json:"path"`
}

// OSRelease is the part of os-release(5) that identifies a distribution.
type OSRelease struct {
	ID              string `json:"id"`
	VersionID       string `json:"versionId,omitempty"`
	VersionCodename string `json:"versionCodename,omitempty"`
	PrettyName      string `json:"prettyName,omitempty"`
}

// Layer is what one layer adds to and removes from the filesystem below it.
type Layer struct {
	// Digest identifies the layer (the digest of its blob).
	Digest   string           `json:"digest"`
	Packages []Package        `json:"packages,omitempty"`
	Secrets  []secret.Finding `json:"secrets,omitempty"`
	// OS is the os-release found in this layer, if any; OSPath says where.
	OS     *OSRelease `json:"os,omitempty"`
	OSPath string     `json:"osPath,omitempty"`
	// Files lists every path this layer creates or replaces, sorted.
	Files []string `json:"files,omitempty"`
	// Deleted lists whiteouts: paths removed from lower layers.
	Deleted []string `json:"deleted,omitempty"`
	// Opaque lists directories whose lower-layer contents are hidden.
	Opaque []string `json:"opaque,omitempty"`
	// Notes record files that were skipped or could not be parsed; they
	// do not fail the scan.
	Notes []string `json:"notes,omitempty"`
}

// Image is the inventory of an image's final filesystem.
type Image struct {
	OS       *OSRelease       `json:"os,omitempty"`
	Packages []Package        `json:"packages"`
	Secrets  []secret.Finding `json:"secrets"`
	Notes    []string         `json:"notes,omitempty"`
}

// Config bounds the analysis of one layer.
type Config struct {
	// Limits bound the tar walk (uncompressed size, entries, path length).
	Limits layer.Limits
	// MaxFileSize is the largest file read for analysis (package
	// databases, executables, archives). Larger files are skipped unread
	// and noted.
	MaxFileSize int64
	// MaxNestedDepth is how deep jars inside jars are opened.
	MaxNestedDepth int
	// Secrets turns the secret scan on.
	Secrets bool
}

// DefaultConfig reads files up to 256 MiB, opens jars three deep and scans
// for secrets.
func DefaultConfig() Config {
	return Config{Limits: layer.DefaultLimits(), MaxFileSize: 256 << 20, MaxNestedDepth: 3, Secrets: true}
}

// Validate reports a setting out of range.
func (c Config) Validate() error {
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if c.MaxFileSize <= 0 {
		return fmt.Errorf("inventory: MaxFileSize %d must be positive", c.MaxFileSize)
	}
	if c.MaxNestedDepth < 0 {
		return fmt.Errorf("inventory: MaxNestedDepth %d must not be negative", c.MaxNestedDepth)
	}
	return nil
}

// Analyzer analyses layers. It is safe for concurrent use; each call to
// Layer uses its own buffers.
type Analyzer struct {
	cfg     Config
	secrets *secret.Scanner
}

// NewAnalyzer checks cfg and builds an Analyzer.
func NewAnalyzer(cfg Config) (*Analyzer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Analyzer{cfg: cfg, secrets: secret.New()}, nil
}

// maxPathBytes bounds the file names one layer's inventory keeps.
const maxPathBytes = 64 << 20

// errSkip is returned by a parser for a file that is not what its name
// suggested; it is not worth a note.
var errSkip = errors.New("inventory: not applicable")

// fileKind says which parser wants a path.
type fileKind int

const (
	kindNone fileKind = iota
	kindDpkg
	kindAPK
	kindRPMSQLite
	kindRPMBDB
	kindRPMNDB
	kindNPM
	kindPython
	kindJava
	kindCargoLock
	kindOSRelease
	kindExecutable
)

func classify(p string, mode int64) fileKind {
	base := path.Base(p)
	dir := path.Dir(p)
	switch {
	case p == "var/lib/dpkg/status" || (dir == "var/lib/dpkg/status.d" && !strings.HasSuffix(base, ".md5sums")):
		return kindDpkg
	case p == "lib/apk/db/installed" || p == "usr/lib/apk/db/installed":
		return kindAPK
	case (dir == "var/lib/rpm" || dir == "usr/lib/sysimage/rpm") && base == "rpmdb.sqlite":
		return kindRPMSQLite
	case (dir == "var/lib/rpm" || dir == "usr/lib/sysimage/rpm") && base == "Packages":
		return kindRPMBDB
	case (dir == "var/lib/rpm" || dir == "usr/lib/sysimage/rpm") && base == "Packages.db":
		return kindRPMNDB
	case base == "package.json" && isNodeModule(dir):
		return kindNPM
	case (base == "METADATA" && strings.HasSuffix(dir, ".dist-info")) ||
		(base == "PKG-INFO" && strings.HasSuffix(dir, ".egg-info")) ||
		strings.HasSuffix(base, ".egg-info"):
		return kindPython
	case strings.HasSuffix(base, ".jar") || strings.HasSuffix(base, ".war") || strings.HasSuffix(base, ".ear"):
		return kindJava
	case base == "Cargo.lock":
		return kindCargoLock
	case p == "etc/os-release" || p == "usr/lib/os-release":
		return kindOSRelease
	case mode&0o111 != 0:
		return kindExecutable
	}
	return kindNone
}

// isNodeModule reports whether dir is a package directory directly under a
// node_modules directory ("node_modules/x" or "node_modules/@s/x").
func isNodeModule(dir string) bool {
	parent := path.Dir(dir)
	if path.Base(parent) == "node_modules" {
		return true
	}
	return strings.HasPrefix(path.Base(parent), "@") && path.Base(path.Dir(parent)) == "node_modules"
}

// Layer analyses one layer, read as an uncompressed tar stream.
func (a *Analyzer) Layer(ctx context.Context, digest string, r io.Reader) (*Layer, error) {
	out := &Layer{Digest: digest}
	var buf bytes.Buffer
	head := make([]byte, 4)
	pathBytes := 0
	err := layer.Walk(ctx, r, a.cfg.Limits, func(e *layer.Entry, content io.Reader) error {
		switch e.Kind {
		case layer.Whiteout:
			out.Deleted = append(out.Deleted, e.Path)
			return nil
		case layer.Opaque:
			out.Opaque = append(out.Opaque, e.Path)
			return nil
		case layer.Dir:
			return nil
		}
		if e.Path == "" {
			return nil
		}
		pathBytes += len(e.Path)
		if pathBytes > maxPathBytes {
			return fmt.Errorf("layer lists over %d bytes of file names", maxPathBytes)
		}
		out.Files = append(out.Files, e.Path)
		if e.Kind != layer.File {
			return nil
		}
		kind := classify(e.Path, int64(e.Mode.Perm()))
		wantSecrets := a.cfg.Secrets && a.secrets.Wants(e.Path, e.Size)
		if kind == kindNone && !wantSecrets {
			return nil
		}
		if e.Size > a.cfg.MaxFileSize {
			if kind != kindNone && kind != kindExecutable {
				out.Notes = append(out.Notes, fmt.Sprintf("%s: skipped, %d bytes is over the %d-byte limit", e.Path, e.Size, a.cfg.MaxFileSize))
			}
			return nil
		}
		if kind == kindExecutable && !wantSecrets {
			// Read a whole executable only when it is an ELF file.
			n, err := io.ReadFull(content, head)
			if err != nil || !bytes.Equal(head[:n], []byte("\x7fELF")) {
				return nil
			}
			buf.Reset()
			buf.Write(head)
		} else {
			buf.Reset()
		}
		if _, err := io.Copy(&buf, io.LimitReader(content, a.cfg.MaxFileSize)); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		data := buf.Bytes()
		if wantSecrets {
			for _, f := range a.secrets.Scan(e.Path, data) {
				f.Layer = digest
				out.Secrets = append(out.Secrets, f)
			}
		}
		if kind == kindNone {
			return nil
		}
		pkgs, osr, err := a.parse(kind, e.Path, data)
		if err != nil {
			if !errors.Is(err, errSkip) {
				out.Notes = append(out.Notes, fmt.Sprintf("%s: %v", e.Path, err))
			}
			return nil
		}
		if osr != nil {
			out.OS, out.OSPath = osr, e.Path
		}
		for i := range pkgs {
			pkgs[i].Layer = digest
			if pkgs[i].Path == "" {
				pkgs[i].Path = e.Path
			}
		}
		out.Packages = append(out.Packages, pkgs...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", digest, err)
	}
	sort.Strings(out.Files)
	out.Files = dedupSorted(out.Files)
	return out, nil
}

func (a *Analyzer) parse(kind fileKind, p string, data []byte) ([]Package, *OSRelease, error) {
	switch kind {
	case kindDpkg:
		pkgs, err := ParseDpkgStatus(data)
		return pkgs, nil, err
	case kindAPK:
		pkgs, err := ParseAPKInstalled(data)
		return pkgs, nil, err
	case kindRPMSQLite, kindRPMBDB, kindRPMNDB:
		pkgs, err := ParseRPMDB(data)
		return pkgs, nil, err
	case kindNPM:
		pkg, err := ParseNPMPackageJSON(data)
		if err != nil {
			return nil, nil, err
		}
		return []Package{pkg}, nil, nil
	case kindPython:
		pkg, err := ParsePythonMetadata(data)
		if err != nil {
			return nil, nil, err
		}
		return []Package{pkg}, nil, nil
	case kindJava:
		pkgs, err := ParseJar(p, data, a.cfg.MaxNestedDepth, a.cfg.MaxFileSize)
		return pkgs, nil, err
	case kindCargoLock:
		pkgs, err := ParseCargoLock(data)
		return pkgs, nil, err
	case kindOSRelease:
		osr, err := ParseOSRelease(data)
		return nil, osr, err
	case kindExecutable:
		pkgs, err := ParseExecutable(data)
		return pkgs, nil, err
	}
	return nil, nil, errSkip
}

func dedupSorted(s []string) []string {
	if len(s) < 2 {
		return s
	}
	out := s[:1]
	for _, x := range s[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// under reports whether p is dir or inside it ("" is the root).
func under(p, dir string) bool {
	return dir == "" || p == dir || strings.HasPrefix(p, dir+"/")
}

// recordFile is the file a package record lives in: for a nested jar,
// the outer file.
func recordFile(p string) string {
	if i := strings.Index(p, "!/"); i >= 0 {
		return p[:i]
	}
	return p
}

// Merge applies layers, lowest first, and returns the inventory of the
// final filesystem: a record in a lower layer survives unless a higher
// layer deletes it (whiteout or opaque directory) or replaces its file.
func Merge(layers []*Layer) *Image {
	var pkgs []Package
	var secrets []secret.Finding
	var osr *OSRelease
	osPath := ""
	img := &Image{}
	for _, l := range layers {
		gone := func(p string) bool {
			p = recordFile(p)
			for _, d := range l.Opaque {
				if p != d && under(p, d) {
					return true
				}
			}
			for _, d := range l.Deleted {
				if under(p, d) {
					return true
				}
			}
			i := sort.SearchStrings(l.Files, p)
			return i < len(l.Files) && l.Files[i] == p
		}
		kept := pkgs[:0]
		for _, p := range pkgs {
			if !gone(p.Path) {
				kept = append(kept, p)
			}
		}
		pkgs = append(kept, l.Packages...)
		keptS := secrets[:0]
		for _, s := range secrets {
			if !gone(s.Path) {
				keptS = append(keptS, s)
			}
		}
		secrets = append(keptS, l.Secrets...)
		if osr != nil && gone(osPath) {
			osr, osPath = nil, ""
		}
		if l.OS != nil {
			osr, osPath = l.OS, l.OSPath
		}
		img.Notes = append(img.Notes, l.Notes...)
	}
	sort.SliceStable(pkgs, func(i, j int) bool {
		if pkgs[i].Type != pkgs[j].Type {
			return pkgs[i].Type < pkgs[j].Type
		}
		if pkgs[i].Name != pkgs[j].Name {
			return pkgs[i].Name < pkgs[j].Name
		}
		return pkgs[i].Path < pkgs[j].Path
	})
	img.OS, img.Packages, img.Secrets = osr, pkgs, secrets
	if img.Packages == nil {
		img.Packages = []Package{}
	}
	if img.Secrets == nil {
		img.Secrets = []secret.Finding{}
	}
	return img
}
