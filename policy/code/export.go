package code

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/palisade-sec/palisade/policy"
)

// FromSet turns a policy set into documents: one SecurityRule (when the
// group's criteria pin one namespace) or ClusterSecurityRule per group that
// has rules, modes or a baseline; a GroupDefinition per other group; and one
// AdmissionRule named "admission". A network rule goes with its source
// group as egress, or with its destination group as ingress when the source
// is a reserved or address group. Response rules and the default modes are
// cluster settings, not policy as code, and are not exported. The output
// is sorted by kind and name.
func FromSet(s *policy.Set) ([]Object, error) {
	groups := map[string]*policy.Group{}
	for i := range s.Groups {
		groups[s.Groups[i].Name] = &s.Groups[i]
	}
	isAddress := func(name string) bool {
		g := groups[name]
		return g != nil && len(g.Criteria) > 0 && g.Criteria[0].Key == policy.KeyAddress
	}
	type bundle struct {
		ingress, egress []policy.NetworkRule
		process         []policy.ProcessRule
		file            []policy.FileRule
	}
	bundles := map[string]*bundle{}
	get := func(name string) *bundle {
		if bundles[name] == nil {
			bundles[name] = &bundle{}
		}
		return bundles[name]
	}
	for _, r := range s.NetworkRules {
		switch {
		case groups[r.From] != nil && !isAddress(r.From):
			get(r.From).egress = append(get(r.From).egress, r)
		case groups[r.To] != nil:
			get(r.To).ingress = append(get(r.To).ingress, r)
		case groups[r.From] != nil:
			get(r.From).egress = append(get(r.From).egress, r)
		default:
			return nil, fmt.Errorf("%w: network rule %q: neither %q nor %q is a defined group", ErrConvert, r.Name, r.From, r.To)
		}
	}
	for _, r := range s.ProcessRules {
		get(r.Group).process = append(get(r.Group).process, r)
	}
	for _, r := range s.FileRules {
		get(r.Group).file = append(get(r.Group).file, r)
	}
	selector := func(name string) Selector {
		g := groups[name]
		if g == nil {
			return Selector{Name: name}
		}
		sel := Selector{Name: name, Comment: g.Comment}
		for _, c := range g.Criteria {
			sel.Criteria = append(sel.Criteria, criterionToYAML(c))
		}
		return sel
	}
	netPolicy := func(r policy.NetworkRule, peer string) NetworkPolicy {
		np := NetworkPolicy{Name: r.Name, Comment: r.Comment, Selector: selector(peer), Ports: r.Ports, Applications: r.Applications, Action: string(r.Action), Disabled: r.Disabled}
		if np.Ports == "" {
			np.Ports = "any"
		}
		return np
	}
	var out []Object
	for _, g := range s.Groups {
		b := bundles[g.Name]
		delete(bundles, g.Name)
		if b == nil && g.NetworkMode == "" && g.ProcessMode == "" && g.Baseline == "" {
			out = append(out, &GroupDefinition{TypeMeta: TypeMeta{APIVersion, KindGroupDefinition},
				Metadata: ObjectMeta{Name: g.Name}, Spec: GroupDefinitionSpec{Selector: selector(g.Name)}})
			continue
		}
		if b == nil {
			b = &bundle{}
		}
		sr := &SecurityRule{TypeMeta: TypeMeta{APIVersion, KindClusterSecurityRule}, Metadata: ObjectMeta{Name: g.Name}}
		sr.Spec.Target = Target{Selector: selector(g.Name), Mode: title(g.NetworkMode), ProcessMode: title(g.ProcessMode)}
		if ns := pinnedNamespace(&g); ns != "" {
			sr.Kind, sr.Metadata.Namespace = KindSecurityRule, ns
		}
		if g.Baseline != "" {
			sr.Spec.ProcessProfile = &ProcessProfile{Baseline: string(g.Baseline)}
		}
		for _, r := range sortedRules(b.ingress) {
			sr.Spec.Ingress = append(sr.Spec.Ingress, netPolicy(r, r.From))
		}
		for _, r := range sortedRules(b.egress) {
			sr.Spec.Egress = append(sr.Spec.Egress, netPolicy(r, r.To))
		}
		slices.SortFunc(b.process, func(a, c policy.ProcessRule) int { return strings.Compare(a.Name, c.Name) })
		for _, p := range b.process {
			if p.Name != ProcessRuleName(p.Group, p.Process, p.Path) {
				return nil, fmt.Errorf("%w: process rule %q: only rules named %q can be exported", ErrConvert, p.Name, ProcessRuleName(p.Group, p.Process, p.Path))
			}
			sr.Spec.Process = append(sr.Spec.Process, ProcessPolicy{Name: p.Process, Path: p.Path, Action: string(p.Action)})
		}
		slices.SortFunc(b.file, func(a, c policy.FileRule) int { return strings.Compare(a.Name, c.Name) })
		for _, f := range b.file {
			if f.Name != FileRuleName(f.Group, f.Filter) {
				return nil, fmt.Errorf("%w: file rule %q: only rules named %q can be exported", ErrConvert, f.Name, FileRuleName(f.Group, f.Filter))
			}
			sr.Spec.File = append(sr.Spec.File, FilePolicy{Filter: f.Filter, Recursive: f.Recursive, Behavior: string(f.Behavior), Applications: f.Applications})
		}
		out = append(out, sr)
	}
	for name := range bundles {
		return nil, fmt.Errorf("%w: rules refer to group %q, which is not defined", ErrConvert, name)
	}
	if len(s.AdmissionRules) > 0 || s.Admission.Enabled || s.Admission.Mode != "" {
		ar := &AdmissionRule{TypeMeta: TypeMeta{APIVersion, KindAdmissionRule}, Metadata: ObjectMeta{Name: "admission"}}
		ar.Spec.Mode = string(s.Admission.Mode)
		enabled := s.Admission.Enabled
		ar.Spec.Enabled = &enabled
		rules := slices.Clone(s.AdmissionRules)
		slices.SortFunc(rules, func(a, b policy.AdmissionRule) int { return strings.Compare(a.Name, b.Name) })
		for _, r := range rules {
			e := AdmissionEntry{Name: r.Name, Action: string(r.Action), Comment: r.Comment, Disabled: r.Disabled}
			for _, c := range r.Containers {
				e.Containers = append(e.Containers, string(c))
			}
			for _, c := range r.Criteria {
				e.Criteria = append(e.Criteria, AdmissionCriterion{Name: c.Name, Op: c.Op, Value: c.Value})
			}
			ar.Spec.Rules = append(ar.Spec.Rules, e)
		}
		out = append(out, ar)
	}
	slices.SortStableFunc(out, func(a, b Object) int {
		if c := strings.Compare(kindOrder(a.GetKind()), kindOrder(b.GetKind())); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	return out, nil
}

func kindOrder(k string) string {
	switch k {
	case KindGroupDefinition:
		return "1"
	case KindClusterSecurityRule, KindSecurityRule:
		return "2"
	}
	return "3"
}

func sortedRules(rs []policy.NetworkRule) []policy.NetworkRule {
	slices.SortFunc(rs, func(a, b policy.NetworkRule) int { return strings.Compare(a.Name, b.Name) })
	return rs
}

// title renders a mode as NeuVector users write it ("Protect").
func title(m policy.Mode) string {
	if m == "" {
		return ""
	}
	return strings.ToUpper(string(m[:1])) + string(m[1:])
}

// pinnedNamespace returns the namespace a group's criteria confine it to
// (one "namespace = NAME" without wildcards), or "".
func pinnedNamespace(g *policy.Group) string {
	ns := ""
	for _, c := range g.Criteria {
		if c.Key != policy.KeyNamespace {
			continue
		}
		if ns != "" || c.Op != policy.OpEqual || strings.ContainsAny(c.Value, "*?") || c.Value == "" {
			return ""
		}
		ns = c.Value
	}
	return ns
}

// EncodeObjects writes documents as a YAML stream.
func EncodeObjects(objs []Object) ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode %s %q: %w", o.GetKind(), o.GetName(), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// Encode writes a whole policy set as a YAML stream (see [FromSet]).
func Encode(s *policy.Set) ([]byte, error) {
	objs, err := FromSet(s)
	if err != nil {
		return nil, err
	}
	return EncodeObjects(objs)
}
