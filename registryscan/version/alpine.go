package version

import (
	"regexp"
	"strings"
)

// apkVersion is an Alpine version:
// number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}.
type apkVersion struct {
	original string
	invalid  bool
	numbers  []string
	letter   byte
	suffixes []apkSuffix
	build    string
	rest     string
}

type apkSuffix struct {
	weight int
	number string
}

// apkSuffixWeight orders the suffixes apk knows. A version without a
// suffix weighs the same as "_cvs", as in apk-tools 2.x, whose ordering the
// fixtures record.
var apkSuffixRE = regexp.MustCompile(`_(alpha|beta|pre|rc|cvs|svn|git|hg|p)(\d*)`)

const apkNoSuffix = 5

func apkSuffixWeight(s string) int {
	switch s {
	case "alpha":
		return 0
	case "beta":
		return 1
	case "pre":
		return 2
	case "rc":
		return 3
	case "cvs":
		return 5
	case "svn":
		return 6
	case "git":
		return 7
	case "hg":
		return 8
	}
	return 9 // p
}

func parseAPK(s string) apkVersion {
	v := apkVersion{original: s, build: "0"}
	// numbers: ((\d+)\.?)*
	i := 0
	start := 0
	for i < len(s) && isDigit(s[i]) {
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		v.numbers = append(v.numbers, s[start:i])
		if i < len(s) && s[i] == '.' {
			i++
			start = i
			if i >= len(s) || !isDigit(s[i]) {
				v.numbers = append(v.numbers, "")
				break
			}
			continue
		}
		break
	}
	s = s[i:]
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		v.letter = s[0]
		s = s[1:]
	}
	if strings.IndexByte(s, '_') < 0 {
		goto hash
	}
	for _, m := range apkSuffixRE.FindAllStringSubmatch(s, -1) {
		n := m[2]
		if n == "" {
			n = "0"
		}
		v.suffixes = append(v.suffixes, apkSuffix{weight: apkSuffixWeight(m[1]), number: n})
		s = strings.TrimPrefix(s, m[0])
	}
hash:
	if strings.HasPrefix(s, "~") {
		j := 1
		for j < len(s) && (isDigit(s[j]) || (s[j] >= 'a' && s[j] <= 'f')) {
			j++
		}
		if j > 1 {
			s = s[j:]
		}
	}
	if s != "" {
		if strings.HasPrefix(s, "-r") {
			j := 2
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j > 2 {
				v.build = s[2:j]
			}
			s = s[j:]
		} else {
			v.invalid = true
		}
	}
	v.rest = s
	return v
}

// CompareAlpine orders two Alpine package versions as apk-tools 2.x does.
func CompareAlpine(a, b string) int {
	va, vb := parseAPK(a), parseAPK(b)
	if va.invalid && vb.invalid {
		return strings.Compare(a, b)
	}
	for i := 0; i < max(len(va.numbers), len(vb.numbers)); i++ {
		na, nb := "0", "0"
		if i < len(va.numbers) {
			na = va.numbers[i]
		}
		if i < len(vb.numbers) {
			nb = vb.numbers[i]
		}
		// After the first component a leading zero makes the component
		// compare as a string (apk's "fractional" rule).
		var c int
		if i > 0 && i < len(va.numbers) && i < len(vb.numbers) &&
			((na != "" && na[0] == '0') || (nb != "" && nb[0] == '0')) {
			c = strings.Compare(na, nb)
		} else {
			c = cmpNum(na, nb)
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case va.letter == 0 && vb.letter != 0:
		return -1
	case va.letter != 0 && vb.letter == 0:
		return 1
	case va.letter != vb.letter:
		return sign(int(va.letter) - int(vb.letter))
	}
	for i := 0; i < max(len(va.suffixes), len(vb.suffixes)); i++ {
		sa, sb := apkSuffix{weight: apkNoSuffix, number: "0"}, apkSuffix{weight: apkNoSuffix, number: "0"}
		if i < len(va.suffixes) {
			sa = va.suffixes[i]
		}
		if i < len(vb.suffixes) {
			sb = vb.suffixes[i]
		}
		if sa.weight != sb.weight {
			return sign(sa.weight - sb.weight)
		}
		if c := cmpNum(sa.number, sb.number); c != 0 {
			return c
		}
	}
	if c := cmpNum(va.build, vb.build); c != 0 {
		return c
	}
	switch {
	case va.rest == "" && vb.rest != "":
		return 1
	case va.rest != "" && vb.rest == "":
		return -1
	}
	return 0
}
