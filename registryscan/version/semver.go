package version

import "strings"

// CompareSemVer orders two Semantic Versioning 2.0.0 versions, leniently: a
// leading "v" is ignored, any number of numeric components is accepted
// (components past the third are treated as part of the pre-release), and
// build metadata after '+' does not take part.
func CompareSemVer(a, b string) int {
	na, pa := parseSemVer(a)
	nb, pb := parseSemVer(b)
	for i := 0; i < max(len(na), len(nb)); i++ {
		x, y := "0", "0"
		if i < len(na) {
			x = na[i]
		}
		if i < len(nb) {
			y = nb[i]
		}
		if c := cmpNum(x, y); c != 0 {
			return c
		}
	}
	return comparePrerelease(pa, pb)
}

// parseSemVer splits s into at most three numeric components and the rest
// (pre-release with its leading separator, and build metadata).
func parseSemVer(s string) (nums []string, rest string) {
	s = strings.TrimPrefix(s, "v")
	i := 0
	for i < len(s) {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j > i {
			nums = append(nums, s[i:j])
		}
		if j < len(s) && s[j] == '.' {
			i = j + 1
			continue
		}
		i = j
		break
	}
	rest = s[i:]
	if len(nums) > 3 {
		var b strings.Builder
		for _, n := range nums[3:] {
			b.WriteByte('.')
			b.WriteString(strings.TrimLeft(n, "0"))
			if strings.TrimLeft(n, "0") == "" {
				b.WriteByte('0')
			}
		}
		rest = b.String() + rest
		nums = nums[:3]
	}
	return nums, rest
}

func comparePrerelease(a, b string) int {
	a, _, _ = strings.Cut(a, "+")
	b, _, _ = strings.Cut(b, "+")
	a = strings.TrimPrefix(a, "-")
	b = strings.TrimPrefix(b, "-")
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	return compareIdentifiers(strings.Split(a, "."), strings.Split(b, "."), false)
}

// compareIdentifiers compares dot-separated identifiers: numeric ones by
// value, others lexically. numericHigh says whether a numeric identifier
// sorts above an alphanumeric one (PEP 440 local versions) or below
// (SemVer pre-releases).
func compareIdentifiers(a, b []string, numericHigh bool) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		an, bn := allDigits(a[i]), allDigits(b[i])
		var c int
		switch {
		case an && bn:
			c = cmpNum(a[i], b[i])
		case !an && !bn:
			c = strings.Compare(a[i], b[i])
		case an:
			c = -1
			if numericHigh {
				c = 1
			}
		default:
			c = 1
			if numericHigh {
				c = -1
			}
		}
		if c != 0 {
			return c
		}
	}
	return sign(len(a) - len(b))
}
