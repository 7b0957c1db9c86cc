package inventory

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"strings"
)

// ParseExecutable reads an ELF executable and returns the Go modules its
// build information records (the main module, every dependency, and the Go
// standard library as "stdlib" at the toolchain's version) and the Rust
// crates of a cargo-auditable ".dep-v0" section. A file that is neither
// gives errSkip.
func ParseExecutable(data []byte) ([]Package, error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, errSkip
	}
	defer f.Close()
	var out []Package
	if s := f.Section(".dep-v0"); s != nil {
		raw, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("cargo-auditable section: %w", err)
		}
		pkgs, err := ParseCargoAuditable(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, pkgs...)
	}
	if f.Section(".go.buildinfo") != nil {
		pkgs, err := parseGoBuildInfo(data)
		if err != nil {
			return nil, err
		}
		out = append(out, pkgs...)
	}
	if len(out) == 0 {
		return nil, errSkip
	}
	return out, nil
}

func parseGoBuildInfo(data []byte) (pkgs []Package, err error) {
	defer func() {
		// debug/buildinfo guards its reads, but this is untrusted input.
		if r := recover(); r != nil {
			pkgs, err = nil, fmt.Errorf("go buildinfo: malformed (%v)", r)
		}
	}()
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("go buildinfo: %w", err)
	}
	var out []Package
	if v := goStdlibVersion(bi.GoVersion); v != "" {
		out = append(out, Package{Name: "stdlib", Version: v, Type: GoModule})
	}
	if bi.Main.Path != "" {
		out = append(out, Package{Name: bi.Main.Path, Version: bi.Main.Version, Type: GoModule})
	}
	for _, d := range bi.Deps {
		m := d
		// A replacement with a version is the code that was built; one
		// without (a local directory) keeps the required module's
		// identity, the only version the binary records.
		if d.Replace != nil && d.Replace.Version != "" {
			m = d.Replace
		}
		out = append(out, Package{Name: m.Path, Version: m.Version, Type: GoModule})
	}
	return out, nil
}

// goStdlibVersion turns "go1.21.3" or "go1.22.0 X:nocoverageredesign" into
// "1.21.3"; "go1.21" into "1.21.0"; a devel toolchain into "".
func goStdlibVersion(v string) string {
	v, _, _ = strings.Cut(v, " ")
	if !strings.HasPrefix(v, "go1") {
		return ""
	}
	v = strings.TrimPrefix(v, "go")
	// go1.21rc2 -> 1.21.0-rc.2 is how OSV's Go ecosystem writes it.
	for _, pre := range []string{"rc", "beta"} {
		if i := strings.Index(v, pre); i > 0 {
			base := v[:i]
			if strings.Count(base, ".") == 1 {
				base += ".0"
			}
			return base + "-" + pre + "." + v[i+len(pre):]
		}
	}
	if strings.Count(v, ".") == 1 {
		v += ".0"
	}
	return v
}
