package version

import (
	"fmt"
	"regexp"
	"strings"
)

// pep440RE is the regular expression of PEP 440 appendix B.
var pep440RE = regexp.MustCompile(`^\s*v?(?:(?:([0-9]+)!)?([0-9]+(?:\.[0-9]+)*)` +
	`([-_\.]?(a|b|c|rc|alpha|beta|pre|preview)[-_\.]?([0-9]+)?)?` +
	`((?:-([0-9]+))|(?:[-_\.]?(post|rev|r)[-_\.]?([0-9]+)?))?` +
	`([-_\.]?(dev)[-_\.]?([0-9]+)?)?)(?:\+([a-z0-9]+(?:[-_\.][a-z0-9]+)*))?\s*$`)

var legacyPartRE = regexp.MustCompile(`\d+|[a-z]+|\.|-`)

type pep440 struct {
	legacy  string // non-empty for versions PEP 440 cannot parse
	epoch   string
	release []string
	pre     *tagged
	post    *tagged
	dev     *tagged
	local   []string
}

type tagged struct {
	tag string
	n   string
}

func pyTag(tag, n string) *tagged {
	if tag == "" && n == "" {
		return nil
	}
	if n == "" {
		n = "0"
	}
	switch tag {
	case "alpha":
		tag = "a"
	case "beta":
		tag = "b"
	case "c", "pre", "preview":
		tag = "rc"
	case "", "rev", "r":
		tag = "post"
	}
	return &tagged{tag: tag, n: n}
}

func parsePEP440(s string) pep440 {
	// Fast path: a plain release ("1.2.3") needs no regular expression.
	if plainRelease(s) {
		return pep440{epoch: "0", release: strings.Split(s, ".")}
	}
	s = strings.ToLower(s)
	m := pep440RE.FindStringSubmatch(s)
	if m == nil {
		return pep440{legacy: legacyKey(s)}
	}
	v := pep440{epoch: m[1], release: strings.Split(m[2], ".")}
	if v.epoch == "" {
		v.epoch = "0"
	}
	v.pre = pyTag(m[4], m[5])
	post := m[7]
	if post == "" {
		post = m[9]
	}
	if m[8] != "" || post != "" {
		v.post = pyTag(m[8], post)
	}
	if m[11] != "" {
		v.dev = pyTag("dev", m[12])
	}
	if m[13] != "" {
		v.local = strings.FieldsFunc(m[13], func(r rune) bool { return r == '.' || r == '-' || r == '_' })
	}
	return v
}

// legacyKey is setuptools' pre-PEP 440 parse_version key, joined into one
// sortable string.
func legacyKey(s string) string {
	var parts []string
	for _, p := range append(legacyPartRE.FindAllString(s, -1), "final") {
		if p == "." {
			continue
		}
		switch p {
		case "pre", "preview", "rc":
			p = "c"
		case "-":
			p = "final-"
		case "dev":
			p = "@"
		}
		if isDigit(p[0]) {
			p = fmt.Sprintf("%08s", p)
		} else {
			p = "*" + p
			if p < "*final" {
				for len(parts) > 0 && parts[len(parts)-1] == "*final-" {
					parts = parts[:len(parts)-1]
				}
			}
			for len(parts) > 0 && parts[len(parts)-1] == "00000000" {
				parts = parts[:len(parts)-1]
			}
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "")
}

// ComparePyPI orders two Python package versions by PEP 440. Versions PEP
// 440 cannot parse are ordered by setuptools' legacy rules and sort before
// every valid version.
func ComparePyPI(a, b string) int {
	va, vb := parsePEP440(a), parsePEP440(b)
	switch {
	case va.legacy != "" && vb.legacy != "":
		return strings.Compare(va.legacy, vb.legacy)
	case va.legacy != "":
		return -1
	case vb.legacy != "":
		return 1
	}
	if c := cmpNum(va.epoch, vb.epoch); c != 0 {
		return c
	}
	for i := 0; i < max(len(va.release), len(vb.release)); i++ {
		x, y := "0", "0"
		if i < len(va.release) {
			x = va.release[i]
		}
		if i < len(vb.release) {
			y = vb.release[i]
		}
		if c := cmpNum(x, y); c != 0 {
			return c
		}
	}
	// A dev release of a final version (1.0.dev0) sorts before its
	// pre-releases (1.0a0).
	devOnly := func(v pep440) bool { return v.pre == nil && v.post == nil && v.dev != nil }
	switch da, db := devOnly(va), devOnly(vb); {
	case da && !db:
		return -1
	case !da && db:
		return 1
	case !da && !db:
		switch {
		case va.pre == nil && vb.pre != nil:
			return 1
		case va.pre != nil && vb.pre == nil:
			return -1
		case va.pre != nil && vb.pre != nil:
			if c := strings.Compare(va.pre.tag[:1], vb.pre.tag[:1]); c != 0 {
				return c
			}
			if c := cmpNum(va.pre.n, vb.pre.n); c != 0 {
				return c
			}
		}
	}
	switch {
	case va.post == nil && vb.post != nil:
		return -1
	case va.post != nil && vb.post == nil:
		return 1
	case va.post != nil && vb.post != nil:
		if c := cmpNum(va.post.n, vb.post.n); c != 0 {
			return c
		}
	}
	switch {
	case va.dev == nil && vb.dev != nil:
		return 1
	case va.dev != nil && vb.dev == nil:
		return -1
	case va.dev != nil && vb.dev != nil:
		if c := cmpNum(va.dev.n, vb.dev.n); c != 0 {
			return c
		}
	}
	return compareIdentifiers(va.local, vb.local, true)
}

// plainRelease reports whether s is digits separated by single dots.
func plainRelease(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if !isDigit(c) {
			return false
		}
	}
	return true
}
