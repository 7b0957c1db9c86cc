package inventory

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
)

// maxJarEntries bounds the entries of one archive, against zip bombs made
// of many small entries.
const maxJarEntries = 100_000

var jarNameRE = regexp.MustCompile(`^(.+?)-(\d[\w.\-]*)$`)

// ParseJar reads a jar (or war/ear) and the jars nested in it, up to depth
// levels, returning one package per pom.properties, or, for an archive with
// none, one from its MANIFEST.MF or file name. Paths of nested packages are
// "outer.jar!/inner.jar". No entry is decompressed past limit bytes.
func ParseJar(p string, data []byte, depth int, limit int64) ([]Package, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("jar: %w", err)
	}
	if len(zr.File) > maxJarEntries {
		return nil, fmt.Errorf("jar: %d entries (limit %d)", len(zr.File), maxJarEntries)
	}
	var out []Package
	var manifest []byte
	read := func(f *zip.File) ([]byte, error) {
		if f.UncompressedSize64 > uint64(limit) {
			return nil, fmt.Errorf("jar entry %q: %d bytes (limit %d)", f.Name, f.UncompressedSize64, limit)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("jar entry %q: %w", f.Name, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, limit+1))
		if err != nil {
			return nil, fmt.Errorf("jar entry %q: %w", f.Name, err)
		}
		if int64(len(b)) > limit {
			return nil, fmt.Errorf("jar entry %q: over %d bytes", f.Name, limit)
		}
		return b, nil
	}
	for _, f := range zr.File {
		name := f.Name
		switch {
		case name == "META-INF/MANIFEST.MF":
			if manifest, err = read(f); err != nil {
				return nil, err
			}
		case strings.HasPrefix(name, "META-INF/maven/") && path.Base(name) == "pom.properties":
			b, err := read(f)
			if err != nil {
				return nil, err
			}
			if pkg, ok := parsePomProperties(b); ok {
				pkg.Path = p
				out = append(out, pkg)
			}
		case depth > 0 && (strings.HasSuffix(name, ".jar") || strings.HasSuffix(name, ".war")):
			b, err := read(f)
			if err != nil {
				return nil, err
			}
			inner, err := ParseJar(p+"!/"+name, b, depth-1, limit)
			if err != nil {
				return nil, err
			}
			out = append(out, inner...)
		}
	}
	if hasOwn(out, p) {
		return out, nil
	}
	if pkg, ok := parseManifest(manifest, p); ok {
		out = append(out, pkg)
	}
	return out, nil
}

func hasOwn(pkgs []Package, p string) bool {
	for _, x := range pkgs {
		if x.Path == p {
			return true
		}
	}
	return false
}

func parsePomProperties(b []byte) (Package, bool) {
	var g, a, v string
	for _, line := range strings.Split(string(b), "\n") {
		k, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		switch strings.TrimSpace(k) {
		case "groupId":
			g = strings.TrimSpace(val)
		case "artifactId":
			a = strings.TrimSpace(val)
		case "version":
			v = strings.TrimSpace(val)
		}
	}
	if g == "" || a == "" || v == "" {
		return Package{}, false
	}
	return Package{Name: g + ":" + a, Version: v, Type: Java}, true
}

// parseManifest names a jar without Maven metadata from its manifest, or
// failing that from its file name (name-1.2.3.jar).
func parseManifest(b []byte, p string) (Package, bool) {
	fields := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ": ")
		if ok && !strings.HasPrefix(k, " ") {
			fields[k] = strings.TrimSpace(v)
		}
	}
	base := path.Base(p)
	base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(base, ".jar"), ".war"), ".ear")
	name, ver := "", fields["Implementation-Version"]
	if ver == "" {
		ver = fields["Bundle-Version"]
	}
	if m := jarNameRE.FindStringSubmatch(base); m != nil {
		name = m[1]
		if ver == "" {
			ver = m[2]
		}
	}
	group := fields["Implementation-Vendor-Id"]
	if name == "" {
		name = fields["Implementation-Title"]
	}
	if name == "" || ver == "" {
		return Package{}, false
	}
	if group != "" && !strings.Contains(name, ":") {
		name = group + ":" + name
	}
	return Package{Name: name, Version: ver, Type: Java, Path: p}, true
}
