package version

import "strings"

// CompareRPM orders two rpm versions ([epoch:]version[-release]) with
// rpmvercmp, including '~' (sorts before anything) and '^' (sorts after the
// end of the string but before anything else).
func CompareRPM(a, b string) int {
	ea, va, ra := splitRPM(a)
	eb, vb, rb := splitRPM(b)
	if c := rpmvercmp(ea, eb); c != 0 {
		return c
	}
	if c := rpmvercmp(va, vb); c != 0 {
		return c
	}
	return rpmvercmp(ra, rb)
}

func splitRPM(s string) (epoch, ver, rel string) {
	epoch = "0"
	if e, rest, ok := strings.Cut(s, ":"); ok && (e == "" || allDigits(e)) {
		if e != "" {
			epoch = e
		}
		s = rest
	}
	if v, r, ok := strings.Cut(s, "-"); ok {
		return epoch, v, "-" + r
	}
	return epoch, s, ""
}

func rpmSeparator(c byte) bool { return !isLetter(c) && !isDigit(c) && c != '~' && c != '^' }

func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	if a == "" {
		return -1
	}
	if b == "" {
		return 1
	}
	i, j := 0, 0
	for {
		for i < len(a) && rpmSeparator(a[i]) {
			i++
		}
		for j < len(b) && rpmSeparator(b[j]) {
			j++
		}
		at, bt := i < len(a) && a[i] == '~', j < len(b) && b[j] == '~'
		if at || bt {
			if at && bt {
				i++
				j++
				continue
			}
			if at {
				return -1
			}
			return 1
		}
		ac, bc := i < len(a) && a[i] == '^', j < len(b) && b[j] == '^'
		if ac || bc {
			if ac && bc {
				i++
				j++
				continue
			}
			if ac {
				if j == len(b) {
					return 1
				}
				return -1
			}
			if i == len(a) {
				return -1
			}
			return 1
		}
		if i == len(a) || j == len(b) {
			break
		}
		digits := isDigit(a[i])
		same := isLetter
		if digits {
			same = isDigit
		}
		si := i
		for i < len(a) && same(a[i]) {
			i++
		}
		sj := j
		for j < len(b) && same(b[j]) {
			j++
		}
		sa, sb := a[si:i], b[sj:j]
		if sb == "" {
			if digits {
				return 1
			}
			return -1
		}
		if digits {
			if c := cmpNum(sa, sb); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	return sign((len(a) - i) - (len(b) - j))
}
