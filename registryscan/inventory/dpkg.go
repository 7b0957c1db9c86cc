package inventory

import (
	"bytes"
	"fmt"
	"strings"
)

// maxStanzaFields bounds the fields kept per stanza, against hostile files.
const maxStanzaFields = 256

// stanzas splits an RFC 822 style control file (dpkg status, Python
// METADATA headers) into paragraphs of field -> value. Continuation lines
// are dropped (no field this package reads spans lines).
func stanzas(data []byte, fn func(fields map[string]string) error) error {
	fields := map[string]string{}
	flush := func() error {
		if len(fields) == 0 {
			return nil
		}
		err := fn(fields)
		fields = map[string]string{}
		return err
	}
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' || line[0] == '#' {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			return fmt.Errorf("line %q: no field name", truncate(string(line), 60))
		}
		if len(fields) < maxStanzaFields {
			fields[string(bytes.TrimSpace(k))] = string(bytes.TrimSpace(v))
		}
	}
	return flush()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// ParseDpkgStatus reads a dpkg status file (or one file of status.d) and
// returns the installed packages with their source packages. A package
// without a Source field is its own source; "Source: name (version)" gives
// a source version that differs from the binary's (binNMUs).
func ParseDpkgStatus(data []byte) ([]Package, error) {
	var out []Package
	err := stanzas(data, func(f map[string]string) error {
		name, ver := f["Package"], f["Version"]
		if name == "" {
			return nil
		}
		if st, ok := f["Status"]; ok {
			// Status: want flag status; only "installed" is on disk in full.
			if w := strings.Fields(st); len(w) != 3 || w[2] != "installed" {
				return nil
			}
		}
		if ver == "" {
			return fmt.Errorf("package %q: no Version field", name)
		}
		p := Package{Name: name, Version: ver, Type: Deb, Arch: f["Architecture"], SourceName: name, SourceVersion: ver}
		if src := f["Source"]; src != "" {
			sname, sver, ok := strings.Cut(src, " ")
			p.SourceName = sname
			if ok {
				sver = strings.TrimSpace(sver)
				if !strings.HasPrefix(sver, "(") || !strings.HasSuffix(sver, ")") {
					return fmt.Errorf("package %q: malformed Source field %q", name, truncate(src, 80))
				}
				p.SourceVersion = strings.TrimSpace(sver[1 : len(sver)-1])
			}
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dpkg status: %w", err)
	}
	return out, nil
}
