package version

import "strings"

// mvnToken is one item of a Maven version: its separator ('.' or '-', or
// "" for the first) and its value, lower-cased and normalised.
type mvnToken struct {
	sep   string
	value string
	null  bool // padding added to match the other version's length
}

var mvnQualifiers = []string{"alpha", "beta", "milestone", "rc", "snapshot", "", "sp"}

func mvnQualifierRank(q string) int {
	for i, k := range mvnQualifiers {
		if k == q {
			return i
		}
	}
	return len(mvnQualifiers)
}

func parseMaven(s string) []mvnToken {
	var toks []mvnToken
	sep := ""
	for {
		k := strings.IndexAny(s, ".-")
		raw := s
		if k >= 0 {
			raw = s[:k]
		}
		// split at digit/non-digit transitions; later pieces are '-' separated
		pieces := splitTransitions(raw)
		for n, p := range pieces {
			psep := sep
			if n > 0 {
				psep = "-"
			}
			p = strings.ToLower(p)
			switch p {
			case "":
				p = "0"
			case "cr":
				p = "rc"
			case "ga", "final", "release":
				p = ""
			}
			if n < len(pieces)-1 {
				switch p {
				case "a":
					p = "alpha"
				case "b":
					p = "beta"
				case "m":
					p = "milestone"
				}
			}
			if allDigits(p) {
				p = strings.TrimLeft(p, "0")
				if p == "" {
					p = "0"
				}
			}
			toks = append(toks, mvnToken{sep: psep, value: p})
		}
		if k < 0 {
			break
		}
		sep = s[k : k+1]
		s = s[k+1:]
	}
	// Trim trailing null values, then repeat before each remaining hyphen
	// from the end to the start.
	i := len(toks) - 1
	for i > 0 {
		if v := toks[i].value; v == "0" || v == "" {
			toks = append(toks[:i], toks[i+1:]...)
			i--
			continue
		}
		for i >= 0 && toks[i].sep != "-" {
			i--
		}
		i--
	}
	return toks
}

func splitTransitions(s string) []string {
	if s == "" {
		return []string{""}
	}
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if isDigit(s[i]) != isDigit(s[i-1]) {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

func mvnPad(other mvnToken) mvnToken {
	if other.sep == "-" {
		return mvnToken{sep: "-", value: "", null: true}
	}
	if other.value == "sp" {
		return mvnToken{sep: ".", value: "", null: true}
	}
	return mvnToken{sep: ".", value: "0", null: true}
}

// mvnSepRank orders separators when they differ:
// ".qualifier" < "-qualifier" < "-number" < ".number".
func mvnSepRank(t mvnToken) int {
	num := allDigits(t.value)
	switch {
	case num && t.sep == "-":
		return 2
	case num:
		return 3
	case t.sep == "-":
		return 1
	}
	return 0
}

func mvnLess(a, b mvnToken) bool {
	if a.sep == b.sep {
		an, bn := allDigits(a.value), allDigits(b.value)
		if an && bn {
			return cmpNum(a.value, b.value) < 0
		}
		if an && !a.null {
			return false
		}
		if bn && !b.null {
			return true
		}
		ra, rb := mvnQualifierRank(a.value), mvnQualifierRank(b.value)
		if ra == len(mvnQualifiers) && rb == len(mvnQualifiers) {
			return a.value < b.value
		}
		return ra < rb
	}
	return mvnSepRank(a) < mvnSepRank(b)
}

// CompareMaven orders two Maven versions as Maven's ComparableVersion does
// (as specified for version ranges in the POM reference).
func CompareMaven(a, b string) int {
	ta, tb := parseMaven(a), parseMaven(b)
	if len(ta) == len(tb) {
		eq := true
		for i := range ta {
			if ta[i].sep != tb[i].sep || ta[i].value != tb[i].value {
				eq = false
				break
			}
		}
		if eq {
			return 0
		}
	}
	for i := 0; i < max(len(ta), len(tb)); i++ {
		var x, y mvnToken
		if i < len(ta) {
			x = ta[i]
		} else {
			x = mvnPad(tb[i])
		}
		if i < len(tb) {
			y = tb[i]
		} else {
			y = mvnPad(ta[i])
		}
		if x.sep == y.sep && x.value == y.value {
			continue
		}
		if mvnLess(x, y) {
			return -1
		}
		return 1
	}
	return 1
}
