package inventory

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// maxAuditableJSON bounds the decompressed cargo-auditable dependency list.
const maxAuditableJSON = 8 << 20

// ParseCargoLock reads a Cargo.lock and returns the registry crates it
// pins. Workspace members (no source) are the project itself and are left
// out.
func ParseCargoLock(data []byte) ([]Package, error) {
	var out []Package
	var cur *Package
	var source string
	flush := func() error {
		if cur == nil {
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return fmt.Errorf("Cargo.lock: package %q version %q: missing name or version", cur.Name, cur.Version)
		}
		if strings.HasPrefix(source, "registry+") || strings.HasPrefix(source, "sparse+") {
			out = append(out, *cur)
		}
		cur, source = nil, ""
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			if err := flush(); err != nil {
				return nil, err
			}
			if line == "[[package]]" {
				cur = &Package{Type: Cargo}
			}
			continue
		}
		if cur == nil {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			continue
		}
		v = v[1 : len(v)-1]
		switch k {
		case "name":
			cur.Name = v
		case "version":
			cur.Version = v
		case "source":
			source = v
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseCargoAuditable reads the zlib-compressed JSON dependency list that
// cargo-auditable embeds in a ".dep-v0" section, keeping crates.io crates.
func ParseCargoAuditable(raw []byte) ([]Package, error) {
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("cargo-auditable: %w", err)
	}
	defer zr.Close()
	js, err := io.ReadAll(io.LimitReader(zr, maxAuditableJSON+1))
	if err != nil {
		return nil, fmt.Errorf("cargo-auditable: %w", err)
	}
	if len(js) > maxAuditableJSON {
		return nil, fmt.Errorf("cargo-auditable: dependency list over %d bytes", maxAuditableJSON)
	}
	var doc struct {
		Packages []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Source  string `json:"source"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("cargo-auditable: %w", err)
	}
	var out []Package
	for _, p := range doc.Packages {
		if p.Source != "crates.io" && p.Source != "registry" {
			continue
		}
		if p.Name == "" || p.Version == "" {
			return nil, fmt.Errorf("cargo-auditable: package %q version %q: missing name or version", p.Name, p.Version)
		}
		out = append(out, Package{Name: p.Name, Version: p.Version, Type: Cargo})
	}
	return out, nil
}
