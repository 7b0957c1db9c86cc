package policystore

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
)

// Export writes the effective policy as a YAML stream: the federated
// documents as stored, marked palisade.dev/source: federated (with their
// palisade.dev/revision), the local documents with mode settings written
// into their targets, and the learned groups and rules as documents marked
// palisade.dev/source: learned. Mode settings that no document can carry
// and the default modes are written as comments at the top.
func (v *View) Export() ([]byte, error) {
	var notes []string
	if d := v.defaults; d != (policy.Defaults{}) {
		notes = append(notes, fmt.Sprintf("default modes: network %s, process %s", orDiscover(d.NetworkMode), orDiscover(d.ProcessMode)))
	}
	var objs []code.Object
	for _, k := range slices.Sorted(maps.Keys(v.fedDocs)) {
		d := v.fedDocs[k]
		rev := docRevision(d)
		objs = append(objs, withAnnotations(d.obj, func(a map[string]string) {
			a[AnnotationSource] = annotationSourceFed
			a[AnnotationRevision] = strconv.FormatUint(rev, 10)
		}))
	}
	carried := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(v.localDocs)) {
		o := v.localDocs[k].obj
		if sr, ok := o.(*code.SecurityRule); ok {
			name := sr.Spec.Target.Selector.Name
			if g := v.Set.Group(name); g != nil && g.Source == policy.SourceCode {
				if ov, ok := v.overrides[name]; ok && ov != (Override{}) {
					c := *sr
					if ov.NetworkMode != "" {
						c.Spec.Target.Mode = title(ov.NetworkMode)
					}
					if ov.ProcessMode != "" {
						c.Spec.Target.ProcessMode = title(ov.ProcessMode)
					}
					o = &c
					carried[name] = true
				}
			}
		}
		objs = append(objs, o)
	}
	learned := &policy.Set{}
	isLearned := map[string]bool{}
	for _, g := range v.Set.Groups {
		if g.Source == policy.SourceLearned {
			learned.Groups = append(learned.Groups, g)
			isLearned[g.Name] = true
			carried[g.Name] = true
		}
	}
	for _, r := range v.Set.NetworkRules {
		if r.Source != policy.SourceLearned {
			continue
		}
		if !isLearned[r.From] && !isLearned[r.To] {
			notes = append(notes, fmt.Sprintf("learned network rule %q (%s -> %s, %s) joins no learned group and is not exported", r.Name, r.From, r.To, orAny(r.Ports)))
			continue
		}
		learned.NetworkRules = append(learned.NetworkRules, r)
	}
	for _, r := range v.Set.ProcessRules {
		if r.Source != policy.SourceLearned {
			continue
		}
		if !isLearned[r.Group] {
			notes = append(notes, fmt.Sprintf("learned process rule %q (%s: %s) joins no learned group and is not exported", r.Name, r.Group, r.Path))
			continue
		}
		learned.ProcessRules = append(learned.ProcessRules, r)
	}
	ldocs, err := code.FromSet(learned)
	if err != nil {
		return nil, fmt.Errorf("export learned policy: %w", err)
	}
	for _, o := range ldocs {
		objs = append(objs, withAnnotations(o, func(a map[string]string) { a[AnnotationSource] = annotationSourceLrnd }))
	}
	for _, g := range slices.Sorted(maps.Keys(v.overrides)) {
		ov := v.overrides[g]
		grp := v.Set.Group(g)
		if carried[g] || ov == (Override{}) || grp == nil || grp.Source == policy.SourceFederated {
			continue
		}
		notes = append(notes, fmt.Sprintf("mode setting of group %q: network %s, process %s (set with palisade mode set)", g, orDash(ov.NetworkMode), orDash(ov.ProcessMode)))
	}
	body, err := code.EncodeObjects(objs)
	if err != nil {
		return nil, fmt.Errorf("export policy: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Palisade policy at revision %d\n", v.Revision)
	for _, n := range notes {
		fmt.Fprintf(&b, "# %s\n", n)
	}
	b.Write(body)
	return b.Bytes(), nil
}

func title(m policy.Mode) string {
	s := string(m)
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func orDiscover(m policy.Mode) policy.Mode {
	if m == "" {
		return policy.ModeDiscover
	}
	return m
}

func orDash(m policy.Mode) string {
	if m == "" {
		return "-"
	}
	return string(m)
}

func orAny(p string) string {
	if p == "" {
		return "any"
	}
	return p
}
