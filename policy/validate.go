package policy

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxProblems bounds how many problems Validate reports.
const maxProblems = 100

// validator collects the problems of a set.
type validator struct {
	errs    []error
	dropped int
}

func (v *validator) add(k Kind, name, field, format string, args ...any) {
	if len(v.errs) >= maxProblems {
		v.dropped++
		return
	}
	v.errs = append(v.errs, &ValidationError{Kind: k, Name: truncate(name), Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if v.dropped > 0 {
		v.errs = append(v.errs, fmt.Errorf("%w: %d more problems not shown", ErrInvalid, v.dropped))
	}
	return errors.Join(v.errs...)
}

// Validate checks a whole set: names, sources and revisions, criteria,
// regular expressions, ports, references to groups, and conflicting
// duplicates. The error joins one [ValidationError] per problem, each naming
// the object, the field and the problem; it is nil when the set is valid.
func (s *Set) Validate() error {
	v := &validator{}
	if s.Defaults.NetworkMode != "" && s.Defaults.NetworkMode.Strictness() < 0 {
		v.errs = append(v.errs, fmt.Errorf("%w: defaults: networkMode: %q is not discover, monitor or protect", ErrInvalid, s.Defaults.NetworkMode))
	}
	if s.Defaults.ProcessMode != "" && s.Defaults.ProcessMode.Strictness() < 0 {
		v.errs = append(v.errs, fmt.Errorf("%w: defaults: processMode: %q is not discover, monitor or protect", ErrInvalid, s.Defaults.ProcessMode))
	}
	if m := s.Admission.Mode; m != "" && m != ModeMonitor && m != ModeProtect {
		v.errs = append(v.errs, fmt.Errorf("%w: admission: mode: %q is not monitor or protect", ErrInvalid, m))
	}

	groups := map[string]*Group{}
	for i := range s.Groups {
		g := &s.Groups[i]
		if !v.meta(KindGroup, &g.Meta) {
			continue
		}
		if IsReservedGroup(g.Name) {
			v.add(KindGroup, g.Name, "name", "%q is a reserved group and cannot be defined", g.Name)
			continue
		}
		if prev, dup := groups[g.Name]; dup {
			v.duplicate(KindGroup, g.Name, reflect.DeepEqual(prev, g))
			continue
		}
		groups[g.Name] = g
		if _, err := CompileSelector(g.Criteria); err != nil {
			v.add(KindGroup, g.Name, "criteria", "%s", problem(err))
		}
		v.mode(KindGroup, g.Name, "networkMode", g.NetworkMode)
		v.mode(KindGroup, g.Name, "processMode", g.ProcessMode)
		switch g.Baseline {
		case "", BaselineBasic, BaselineZeroDrift:
		default:
			v.add(KindGroup, g.Name, "baseline", "%q is not basic or zeroDrift", truncate(string(g.Baseline)))
		}
	}
	ref := func(k Kind, name, field, group string, m *Meta) {
		if group == "" {
			v.add(k, name, field, "missing group")
			return
		}
		if IsReservedGroup(group) {
			return
		}
		g, ok := groups[group]
		if !ok {
			v.add(k, name, field, "unknown group %q", truncate(group))
			return
		}
		if m.Source == SourceFederated && g.Source != SourceFederated {
			v.add(k, name, field, "federated rule refers to non-federated group %q", group)
		}
	}
	s.validateNetwork(v, ref)

	procs := map[string]*ProcessRule{}
	for i := range s.ProcessRules {
		r := &s.ProcessRules[i]
		if !v.meta(KindProcessRule, &r.Meta) {
			continue
		}
		if prev, dup := procs[r.Name]; dup {
			v.duplicate(KindProcessRule, r.Name, reflect.DeepEqual(prev, r))
			continue
		}
		procs[r.Name] = r
		ref(KindProcessRule, r.Name, "group", r.Group, &r.Meta)
		if r.Process == "" {
			v.add(KindProcessRule, r.Name, "process", "missing process name")
		}
		if r.Path != "*" && !strings.HasPrefix(r.Path, "/") {
			v.add(KindProcessRule, r.Name, "path", "%q is not an absolute path or *", truncate(r.Path))
		} else if len(r.Path) > 4096 {
			v.add(KindProcessRule, r.Name, "path", "path is %d bytes long (limit 4096)", len(r.Path))
		}
		v.action(KindProcessRule, r.Name, r.Action)
	}
	procKey := map[string]string{}
	for _, r := range s.ProcessRules {
		k := fmt.Sprintf("%s\x00%d\x00%s\x00%s", r.Group, r.Source.Rank(), r.Process, r.Path)
		if other, ok := procKey[k]; ok && other != r.Name && procs[other] != nil && procs[other].Action != r.Action {
			v.add(KindProcessRule, r.Name, "action", "conflicts with process rule %q: same group, process and path with the opposite action", other)
		}
		procKey[k] = r.Name
	}

	files := map[string]*FileRule{}
	for i := range s.FileRules {
		r := &s.FileRules[i]
		if !v.meta(KindFileRule, &r.Meta) {
			continue
		}
		if prev, dup := files[r.Name]; dup {
			v.duplicate(KindFileRule, r.Name, reflect.DeepEqual(prev, r))
			continue
		}
		files[r.Name] = r
		ref(KindFileRule, r.Name, "group", r.Group, &r.Meta)
		if !strings.HasPrefix(r.Filter, "/") {
			v.add(KindFileRule, r.Name, "filter", "%q is not an absolute path", truncate(r.Filter))
		} else if len(r.Filter) > 4096 {
			v.add(KindFileRule, r.Name, "filter", "filter is %d bytes long (limit 4096)", len(r.Filter))
		}
		if r.Behavior != FileMonitorChange && r.Behavior != FileBlockAccess {
			v.add(KindFileRule, r.Name, "behavior", "%q is not monitorChange or blockAccess", truncate(string(r.Behavior)))
		}
	}

	adm := map[string]*AdmissionRule{}
	for i := range s.AdmissionRules {
		r := &s.AdmissionRules[i]
		if !v.meta(KindAdmissionRule, &r.Meta) {
			continue
		}
		if prev, dup := adm[r.Name]; dup {
			v.duplicate(KindAdmissionRule, r.Name, reflect.DeepEqual(prev, r))
			continue
		}
		adm[r.Name] = r
		v.action(KindAdmissionRule, r.Name, r.Action)
		for _, c := range r.Containers {
			if c != ContainersMain && c != ContainersInit && c != ContainersEphemeral {
				v.add(KindAdmissionRule, r.Name, "containers", "%q is not containers, initContainers or ephemeralContainers", truncate(string(c)))
			}
		}
		if len(r.Criteria) == 0 {
			v.add(KindAdmissionRule, r.Name, "criteria", "no criteria")
		}
		if len(r.Criteria) > maxCriteria {
			v.add(KindAdmissionRule, r.Name, "criteria", "%d criteria (limit %d)", len(r.Criteria), maxCriteria)
			continue
		}
		for j, c := range r.Criteria {
			if err := CheckAdmissionCriterion(c); err != nil {
				v.add(KindAdmissionRule, r.Name, fmt.Sprintf("criteria[%d]", j), "%s", problem(err))
			}
		}
	}

	resp := map[string]*ResponseRule{}
	for i := range s.ResponseRules {
		r := &s.ResponseRules[i]
		if !v.meta(KindResponseRule, &r.Meta) {
			continue
		}
		if prev, dup := resp[r.Name]; dup {
			v.duplicate(KindResponseRule, r.Name, reflect.DeepEqual(prev, r))
			continue
		}
		resp[r.Name] = r
		if !r.Event.valid() {
			v.add(KindResponseRule, r.Name, "event", "unknown event kind %q", truncate(string(r.Event)))
		}
		if r.Group != "" {
			ref(KindResponseRule, r.Name, "group", r.Group, &r.Meta)
		}
		if len(r.Actions) == 0 {
			v.add(KindResponseRule, r.Name, "actions", "no actions")
		}
		for _, a := range r.Actions {
			switch a {
			case ResponseWebhook:
				u, err := url.Parse(r.Webhook)
				if r.Webhook == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					v.add(KindResponseRule, r.Name, "webhook", "%q is not an http or https URL", truncate(r.Webhook))
				}
			case ResponseQuarantine, ResponseSuppressLog:
			default:
				v.add(KindResponseRule, r.Name, "actions", "unknown action %q", truncate(string(a)))
			}
		}
	}
	return v.err()
}

func (s *Set) validateNetwork(v *validator, ref func(k Kind, name, field, group string, m *Meta)) {
	rules := map[string]*NetworkRule{}
	type key struct {
		from, to, ports, apps string
		rank                  int
	}
	seen := map[key]*NetworkRule{}
	for i := range s.NetworkRules {
		r := &s.NetworkRules[i]
		if !v.meta(KindNetworkRule, &r.Meta) {
			continue
		}
		if prev, dup := rules[r.Name]; dup {
			v.duplicate(KindNetworkRule, r.Name, reflect.DeepEqual(prev, r))
			continue
		}
		rules[r.Name] = r
		ref(KindNetworkRule, r.Name, "from", r.From, &r.Meta)
		ref(KindNetworkRule, r.Name, "to", r.To, &r.Meta)
		ports, err := ParsePorts(r.Ports)
		if err != nil {
			v.add(KindNetworkRule, r.Name, "ports", "%s", problem(err))
		}
		v.action(KindNetworkRule, r.Name, r.Action)
		if len(r.Applications) > maxApplications {
			v.add(KindNetworkRule, r.Name, "applications", "%d applications (limit %d)", len(r.Applications), maxApplications)
		}
		apps := make([]string, 0, len(r.Applications))
		for _, a := range r.Applications {
			c, ok := CanonicalApplication(a)
			if !ok {
				v.add(KindNetworkRule, r.Name, "applications", "unknown application %q", truncate(a))
				continue
			}
			apps = append(apps, c)
		}
		if err != nil || r.Disabled {
			continue
		}
		slices.Sort(apps)
		k := key{r.From, r.To, FormatPorts(ports), strings.Join(apps, ","), r.Source.Rank()}
		if other, ok := seen[k]; ok && other.Action != r.Action {
			v.add(KindNetworkRule, r.Name, "action", "conflicts with network rule %q: same from, to, ports and applications with the opposite action", other.Name)
		}
		seen[k] = r
	}
}

// meta checks what every object carries; false means the object is too
// broken (no usable name) to check further.
func (v *validator) meta(k Kind, m *Meta) bool {
	if m.Kind != "" && m.Kind != k {
		v.add(k, m.Name, "kind", "%q is not %q", truncate(string(m.Kind)), k)
	}
	if err := CheckName(m.Name); err != nil {
		v.add(k, m.Name, "name", "%s", err)
		return false
	}
	if !m.Source.Valid() {
		v.add(k, m.Name, "source", "%q is not federated, code, user or learned", truncate(string(m.Source)))
	}
	if m.Source == SourceFederated && m.Revision == 0 {
		v.add(k, m.Name, "revision", "federated object has no primary revision")
	}
	if m.Source != SourceFederated && m.Revision != 0 {
		v.add(k, m.Name, "revision", "only federated objects carry a primary revision")
	}
	return true
}

func (v *validator) duplicate(k Kind, name string, identical bool) {
	if identical {
		v.add(k, name, "name", "defined twice")
		return
	}
	v.add(k, name, "name", "conflicting duplicate: defined twice with different content")
}

func (v *validator) mode(k Kind, name, field string, m Mode) {
	if m != "" && m.Strictness() < 0 {
		v.add(k, name, field, "%q is not discover, monitor or protect", truncate(string(m)))
	}
}

func (v *validator) action(k Kind, name string, a Action) {
	if !a.Valid() {
		v.add(k, name, "action", "%q is not allow or deny", truncate(string(a)))
	}
}

// CheckName checks an object name: 1 to 253 bytes of printable UTF-8
// without spaces.
func CheckName(name string) error {
	if name == "" {
		return errors.New("missing name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name is %d bytes long (limit %d)", len(name), maxNameLen)
	}
	if !utf8.ValidString(name) {
		return errors.New("name is not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("name %q contains a space or control character", name)
		}
	}
	return nil
}

// CheckAdmissionCriterion checks an admission criterion's name, operator
// and value.
func CheckAdmissionCriterion(c AdmissionCriterion) error {
	t := AdmissionCriterionType(c.Name)
	if t == CriterionUnknown {
		return fmt.Errorf("%w: unknown criterion %q", ErrBadCriterion, truncate(c.Name))
	}
	if !AdmissionOpValid(t, c.Op) {
		return fmt.Errorf("%w: %s: operator %q does not apply", ErrBadCriterion, c.Name, truncate(c.Op))
	}
	if len(c.Value) > maxValueLen*8 {
		return fmt.Errorf("%w: %s: value is %d bytes long (limit %d)", ErrBadCriterion, c.Name, len(c.Value), maxValueLen*8)
	}
	switch t {
	case CriterionNumber:
		if _, err := strconv.ParseUint(strings.TrimSpace(c.Value), 10, 32); err != nil {
			return fmt.Errorf("%w: %s: %q is not a count", ErrBadCriterion, c.Name, truncate(c.Value))
		}
	case CriterionBool:
		if _, err := strconv.ParseBool(strings.TrimSpace(c.Value)); err != nil {
			return fmt.Errorf("%w: %s: %q is not true or false", ErrBadCriterion, c.Name, truncate(c.Value))
		}
	case CriterionSet:
		if c.Op == AdmOpRegex || c.Op == AdmOpNotRegex {
			if _, err := CompileRegex(c.Value); err != nil {
				return fmt.Errorf("%w: %s: %s", ErrBadCriterion, c.Name, problem(err))
			}
			return nil
		}
		items := SplitList(c.Value)
		if len(items) == 0 {
			return fmt.Errorf("%w: %s: empty value", ErrBadCriterion, c.Name)
		}
		if len(items) > maxListItems {
			return fmt.Errorf("%w: %s: %d items (limit %d)", ErrBadCriterion, c.Name, len(items), maxListItems)
		}
	}
	return nil
}

// SplitList splits a comma-separated list, trimming spaces and dropping
// empty items.
func SplitList(s string) []string {
	var out []string
	for _, it := range strings.Split(s, ",") {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}
