package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// Limits on criteria, so that hostile input stays small.
const (
	maxCriteria      = 64
	maxValueLen      = 1024
	maxRegexLen      = 1024
	maxLabelNameLen  = 317 // prefix (253) + "/" + name (63)
	maxNameLen       = 253
	maxFQDNLen       = 253
	maxListItems     = 1024
	maxApplications  = 64
	maxContainerKind = 3
)

// Glob reports whether s matches pattern, where * matches any run of
// characters (including none) and ? matches exactly one character. It runs
// in time proportional to len(pattern)*len(s) at worst.
func Glob(pattern, s string) bool {
	p, n := 0, 0
	starP, starN := -1, 0
	for n < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[n]):
			p++
			n++
		case p < len(pattern) && pattern[p] == '*':
			starP, starN = p, n
			p++
		case starP >= 0:
			starN++
			p, n = starP+1, starN
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func hasWildcard(s string) bool { return strings.ContainsAny(s, "*?") }

// valueMatcher is one compiled criterion value.
type valueMatcher struct {
	op    Op
	value string
	re    *regexp.Regexp
}

// match applies the positive form of the operator (= for !=, regex for !regex).
func (m *valueMatcher) match(s string) bool {
	switch m.op {
	case OpEqual, OpNotEqual:
		if hasWildcard(m.value) {
			return Glob(m.value, s)
		}
		return s == m.value
	case OpContains:
		return strings.Contains(s, m.value)
	case OpPrefix:
		return strings.HasPrefix(s, m.value)
	case OpRegex, OpNotRegex:
		return m.re.MatchString(s)
	}
	return false
}

func negative(op Op) bool { return op == OpNotEqual || op == OpNotRegex }

// keyMatcher holds the compiled criteria of one key (and label name).
type keyMatcher struct {
	key   Key
	label string
	pos   []valueMatcher
	neg   []valueMatcher
}

// Selector is a compiled list of group criteria.
type Selector struct {
	keys     []keyMatcher
	address  bool
	prefixes []netip.Prefix
	fqdns    []string
}

// CompileRegex compiles a criterion regular expression with the package's
// length limit. Go regular expressions run in linear time, so no pattern
// can make matching hang.
func CompileRegex(expr string) (*regexp.Regexp, error) {
	if len(expr) > maxRegexLen {
		return nil, fmt.Errorf("%w: regex is %d bytes long (limit %d)", ErrBadCriterion, len(expr), maxRegexLen)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%w: bad regex %q: %v", ErrBadCriterion, expr, regexpProblem(err))
	}
	return re, nil
}

func regexpProblem(err error) string {
	var e *syntax.Error
	if errors.As(err, &e) {
		return string(e.Code)
	}
	return err.Error()
}

// CompileSelector checks and compiles group criteria.
func CompileSelector(criteria []Criterion) (*Selector, error) {
	if len(criteria) == 0 {
		return nil, fmt.Errorf("%w: no criteria", ErrBadCriterion)
	}
	if len(criteria) > maxCriteria {
		return nil, fmt.Errorf("%w: %d criteria (limit %d)", ErrBadCriterion, len(criteria), maxCriteria)
	}
	sel := &Selector{}
	byKey := map[string]int{}
	for i, c := range criteria {
		if err := checkCriterion(c); err != nil {
			return nil, fmt.Errorf("%w (criterion %d)", err, i+1)
		}
		if c.Key == KeyAddress {
			sel.address = true
			if p, err := netip.ParsePrefix(c.Value); err == nil {
				sel.prefixes = append(sel.prefixes, p.Masked())
			} else if a, err := netip.ParseAddr(c.Value); err == nil {
				sel.prefixes = append(sel.prefixes, netip.PrefixFrom(a, a.BitLen()))
			} else {
				sel.fqdns = append(sel.fqdns, strings.ToLower(c.Value))
			}
			continue
		}
		vm := valueMatcher{op: c.Op, value: c.Value}
		if c.Op == OpRegex || c.Op == OpNotRegex {
			re, err := CompileRegex(c.Value)
			if err != nil {
				return nil, fmt.Errorf("%w (criterion %d)", err, i+1)
			}
			vm.re = re
		}
		id := string(c.Key) + "\x00" + c.Label
		k, ok := byKey[id]
		if !ok {
			k = len(sel.keys)
			byKey[id] = k
			sel.keys = append(sel.keys, keyMatcher{key: c.Key, label: c.Label})
		}
		if negative(c.Op) {
			sel.keys[k].neg = append(sel.keys[k].neg, vm)
		} else {
			sel.keys[k].pos = append(sel.keys[k].pos, vm)
		}
	}
	if sel.address && len(sel.keys) > 0 {
		return nil, fmt.Errorf("%w: address criteria cannot be combined with other keys", ErrBadCriterion)
	}
	slices.SortFunc(sel.prefixes, comparePrefix)
	sel.prefixes = slices.Compact(sel.prefixes)
	slices.Sort(sel.fqdns)
	sel.fqdns = slices.Compact(sel.fqdns)
	return sel, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func checkCriterion(c Criterion) error {
	switch c.Key {
	case KeyNamespace, KeyImage, KeyNode, KeyContainer, KeyService:
		if c.Label != "" {
			return fmt.Errorf("%w: key %q takes no label name", ErrBadCriterion, c.Key)
		}
	case KeyLabel, KeyNSLabel:
		if c.Label == "" {
			return fmt.Errorf("%w: key %q needs a label name", ErrBadCriterion, c.Key)
		}
		if len(c.Label) > maxLabelNameLen || strings.ContainsAny(c.Label, " \t\r\n") {
			return fmt.Errorf("%w: bad label name %q", ErrBadCriterion, truncate(c.Label))
		}
	case KeyAddress:
		if c.Op != OpEqual {
			return fmt.Errorf("%w: address takes only the = operator, not %q", ErrBadCriterion, c.Op)
		}
		return checkAddress(c.Value)
	default:
		return fmt.Errorf("%w: unknown key %q", ErrBadCriterion, truncate(string(c.Key)))
	}
	switch c.Op {
	case OpEqual, OpNotEqual, OpContains, OpPrefix, OpRegex, OpNotRegex:
	default:
		return fmt.Errorf("%w: unknown operator %q (want =, !=, contains, prefix, regex or !regex)", ErrBadCriterion, truncate(string(c.Op)))
	}
	if len(c.Value) > maxValueLen {
		return fmt.Errorf("%w: value is %d bytes long (limit %d)", ErrBadCriterion, len(c.Value), maxValueLen)
	}
	if c.Value == "" && c.Op != OpEqual && c.Op != OpNotEqual {
		return fmt.Errorf("%w: %s needs a value", ErrBadCriterion, c.Op)
	}
	return nil
}

func checkAddress(v string) error {
	if _, err := netip.ParsePrefix(v); err == nil {
		return nil
	}
	if a, err := netip.ParseAddr(v); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("%w: %q: addresses with a zone are not supported", ErrBadCriterion, truncate(v))
		}
		return nil
	}
	if strings.Contains(v, "/") || strings.Count(v, ":") > 1 {
		return fmt.Errorf("%w: %q is not a valid IP address or CIDR", ErrBadCriterion, truncate(v))
	}
	name := strings.ToLower(v)
	name = strings.TrimPrefix(name, "*.")
	if name == "" || len(v) > maxFQDNLen {
		return fmt.Errorf("%w: %q is not a valid address or domain name", ErrBadCriterion, truncate(v))
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: %q is not a valid address or domain name", ErrBadCriterion, truncate(v))
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%w: %q is not a valid address or domain name", ErrBadCriterion, truncate(v))
			}
		}
	}
	return nil
}

// truncate keeps error messages short when the input is huge.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}

// IsAddress reports whether the selector selects addresses (an address
// group) rather than workloads.
func (s *Selector) IsAddress() bool { return s.address }

// Prefixes returns the IP prefixes of an address group, sorted.
func (s *Selector) Prefixes() []netip.Prefix { return s.prefixes }

// FQDNs returns the domain-name patterns of an address group, sorted.
func (s *Selector) FQDNs() []string { return s.fqdns }

// MatchAddress reports whether addr is inside one of an address group's prefixes.
func (s *Selector) MatchAddress(addr netip.Addr) bool {
	for _, p := range s.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// MatchFQDN reports whether a domain name matches one of an address group's
// patterns ("*.example.com" matches "a.example.com", not "example.com").
func (s *Selector) MatchFQDN(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, f := range s.fqdns {
		if rest, ok := strings.CutPrefix(f, "*."); ok {
			if strings.HasSuffix(name, "."+rest) {
				return true
			}
		} else if name == f {
			return true
		}
	}
	return false
}

// MatchWorkload reports whether w meets the criteria. Address groups match
// no workload: they select external addresses.
func (s *Selector) MatchWorkload(w *Workload) bool {
	if s.address {
		return false
	}
	var buf [4]string
	for i := range s.keys {
		k := &s.keys[i]
		vals := attribute(w, k.key, k.label, buf[:0])
		if len(k.pos) > 0 && !anyMatch(k.pos, vals) {
			return false
		}
		for j := range k.neg {
			for _, v := range vals {
				if k.neg[j].match(v) {
					return false
				}
			}
		}
	}
	return true
}

func anyMatch(ms []valueMatcher, vals []string) bool {
	for i := range ms {
		for _, v := range vals {
			if ms[i].match(v) {
				return true
			}
		}
	}
	return false
}

// attribute returns the values of a workload attribute. A missing label
// yields no values: positive criteria fail and negative ones hold.
func attribute(w *Workload, k Key, label string, buf []string) []string {
	switch k {
	case KeyNamespace:
		return append(buf, w.Namespace)
	case KeyService:
		return append(buf, w.Service)
	case KeyNode:
		return append(buf, w.Node)
	case KeyLabel:
		if v, ok := w.Labels[label]; ok {
			return append(buf, v)
		}
	case KeyNSLabel:
		if v, ok := w.NamespaceLabels[label]; ok {
			return append(buf, v)
		}
	case KeyImage:
		for _, c := range w.Containers {
			buf = append(buf, c.Image)
		}
	case KeyContainer:
		for _, c := range w.Containers {
			buf = append(buf, c.Name)
		}
	}
	return buf
}
