// Package version orders package versions the way each ecosystem's own
// tooling does: dpkg for Debian and Ubuntu, apk for Alpine, rpmvercmp for
// Red Hat family distributions, PEP 440 for PyPI, Maven's ComparableVersion,
// and Semantic Versioning for Go modules, npm and crates.io.
//
// Comparison never fails: a string that is not a valid version of its
// ecosystem is still ordered, the way the ecosystem's tools order it.
package version

import (
	"errors"
	"fmt"
	"strings"
)

// Ecosystem names a version ordering. The values match the ecosystem names
// of the OSV schema where one exists.
type Ecosystem string

// The orderings this package knows.
const (
	Debian   Ecosystem = "Debian"
	Ubuntu   Ecosystem = "Ubuntu"
	Alpine   Ecosystem = "Alpine"
	RedHat   Ecosystem = "Red Hat"
	PyPI     Ecosystem = "PyPI"
	Maven    Ecosystem = "Maven"
	SemVer   Ecosystem = "SemVer"
	Go       Ecosystem = "Go"
	NPM      Ecosystem = "npm"
	CratesIO Ecosystem = "crates.io"
)

// ErrUnknownEcosystem is returned for an ecosystem with no known ordering.
var ErrUnknownEcosystem = errors.New("version: unknown ecosystem")

// Base strips an OSV release suffix ("Debian:12" -> "Debian",
// "Alpine:v3.18" -> "Alpine").
func Base(eco string) Ecosystem {
	if i := strings.IndexByte(eco, ':'); i >= 0 {
		eco = eco[:i]
	}
	return Ecosystem(eco)
}

// Comparer returns the ordering function of eco. Red Hat family
// distributions that OSV names separately (Rocky Linux, AlmaLinux, openSUSE,
// SUSE, Mageia, openEuler) share rpm's ordering.
func Comparer(eco Ecosystem) (func(a, b string) int, error) {
	switch Base(string(eco)) {
	case Debian, Ubuntu:
		return CompareDebian, nil
	case Alpine:
		return CompareAlpine, nil
	case RedHat, "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE", "Mageia", "openEuler":
		return CompareRPM, nil
	case PyPI:
		return ComparePyPI, nil
	case Maven:
		return CompareMaven, nil
	case SemVer, Go, NPM, CratesIO:
		return CompareSemVer, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownEcosystem, string(eco))
}

// Compare orders a and b in ecosystem eco: negative when a < b, zero when
// equal, positive when a > b.
func Compare(eco Ecosystem, a, b string) (int, error) {
	cmp, err := Comparer(eco)
	if err != nil {
		return 0, err
	}
	return cmp(a, b), nil
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// cmpNum compares two strings of decimal digits by value, whatever their
// length (no integer overflow on 30-digit components).
func cmpNum(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
