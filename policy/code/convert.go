package code

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// ErrConvert is returned for documents that decode but do not make a
// consistent policy.
var ErrConvert = errors.New("code: cannot convert")

// reservedKeys are criteria keys that are not pod labels.
func reservedKey(k string) (policy.Key, bool) {
	switch k {
	case "namespace", "domain":
		return policy.KeyNamespace, true
	case "image":
		return policy.KeyImage, true
	case "node":
		return policy.KeyNode, true
	case "container":
		return policy.KeyContainer, true
	case "address":
		return policy.KeyAddress, true
	case "service":
		return policy.KeyService, true
	}
	return "", false
}

// criterionFromYAML maps a YAML criterion to the model.
func criterionFromYAML(c Criterion) (policy.Criterion, error) {
	out := policy.Criterion{Op: policy.Op(c.Op), Value: c.Value}
	switch {
	case c.Key == "":
		return out, errors.New("criterion without a key")
	case strings.HasPrefix(c.Key, "ns:"):
		out.Key, out.Label = policy.KeyNSLabel, strings.TrimPrefix(c.Key, "ns:")
	case strings.HasPrefix(c.Key, "label:"):
		out.Key, out.Label = policy.KeyLabel, strings.TrimPrefix(c.Key, "label:")
	default:
		if k, ok := reservedKey(c.Key); ok {
			out.Key = k
		} else {
			out.Key, out.Label = policy.KeyLabel, c.Key
		}
	}
	return out, nil
}

// criterionToYAML maps a model criterion to YAML.
func criterionToYAML(c policy.Criterion) Criterion {
	out := Criterion{Op: string(c.Op), Value: c.Value}
	switch c.Key {
	case policy.KeyLabel:
		out.Key = c.Label
		if _, reserved := reservedKey(c.Label); reserved || strings.HasPrefix(c.Label, "ns:") || strings.HasPrefix(c.Label, "label:") {
			out.Key = "label:" + c.Label
		}
	case policy.KeyNSLabel:
		out.Key = "ns:" + c.Label
	default:
		out.Key = string(c.Key)
	}
	return out
}

// builder assembles a set from documents, merging groups and rules that
// several documents define identically.
type builder struct {
	src      policy.Source
	set      policy.Set
	groups   map[string]int // name -> index in set.Groups
	groupDoc map[string]string
	rules    map[string]int
	ruleDoc  map[string]string
	admDoc   string
}

func docName(o Object) string {
	if sr, ok := o.(*SecurityRule); ok && sr.Metadata.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", o.GetKind(), sr.Metadata.Namespace, o.GetName())
	}
	return fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
}

// ToSet converts documents into a policy set whose objects all have source
// src (SourceCode for policy as code, SourceFederated on a primary, which
// then sets revisions). References to groups that the documents do not
// define are kept; [policy.Set.Validate] reports those that stay unknown.
func ToSet(objs []Object, src policy.Source) (*policy.Set, error) {
	b := &builder{src: src, groups: map[string]int{}, groupDoc: map[string]string{}, rules: map[string]int{}, ruleDoc: map[string]string{}}
	for _, o := range objs {
		var err error
		switch d := o.(type) {
		case *SecurityRule:
			err = b.securityRule(d)
		case *GroupDefinition:
			_, err = b.selector(d.Spec.Selector, docName(d), "spec.selector", true)
		case *AdmissionRule:
			err = b.admission(d)
		default:
			err = fmt.Errorf("%w: unsupported object %T", ErrConvert, o)
		}
		if err != nil {
			return nil, err
		}
	}
	b.set.Normalize()
	return &b.set, nil
}

// Load decodes a YAML stream and converts it with source src.
func Load(data []byte, src policy.Source) (*policy.Set, error) {
	objs, err := Decode(data)
	if err != nil {
		return nil, err
	}
	return ToSet(objs, src)
}

func (b *builder) meta(name, comment string) policy.Meta {
	return policy.Meta{Name: name, Source: b.src, Comment: comment}
}

// selector defines (or refers to) the group a selector names; it returns
// the group's name. A selector without criteria refers to a group defined
// elsewhere, or to a reserved group.
func (b *builder) selector(s Selector, doc, field string, define bool) (string, error) {
	if s.Name == "" {
		return "", fmt.Errorf("%w: %s: %s.name is missing", ErrConvert, doc, field)
	}
	if len(s.Criteria) == 0 {
		if define {
			return "", fmt.Errorf("%w: %s: %s: group %q has no criteria", ErrConvert, doc, field, s.Name)
		}
		return s.Name, nil
	}
	if policy.IsReservedGroup(s.Name) {
		return "", fmt.Errorf("%w: %s: %s: %q is a reserved group and takes no criteria", ErrConvert, doc, field, s.Name)
	}
	g := policy.Group{Meta: b.meta(s.Name, s.Comment)}
	for i, c := range s.Criteria {
		mc, err := criterionFromYAML(c)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %s.criteria[%d]: %v", ErrConvert, doc, field, i, err)
		}
		g.Criteria = append(g.Criteria, mc)
	}
	return s.Name, b.addGroup(g, doc)
}

func (b *builder) addGroup(g policy.Group, doc string) error {
	i, ok := b.groups[g.Name]
	if !ok {
		b.groups[g.Name] = len(b.set.Groups)
		b.groupDoc[g.Name] = doc
		b.set.Groups = append(b.set.Groups, g)
		return nil
	}
	old := &b.set.Groups[i]
	if !reflect.DeepEqual(old.Criteria, g.Criteria) {
		return fmt.Errorf("%w: %s: group %q conflicts with its definition in %s: different criteria", ErrConvert, doc, g.Name, b.groupDoc[g.Name])
	}
	if old.Comment == "" {
		old.Comment = g.Comment
	}
	return nil
}

func (b *builder) addRule(r policy.NetworkRule, doc string) error {
	if i, ok := b.rules[r.Name]; ok {
		if reflect.DeepEqual(b.set.NetworkRules[i], r) {
			return nil // the same rule exported in both of its groups
		}
		return fmt.Errorf("%w: %s: network rule %q conflicts with its definition in %s", ErrConvert, doc, r.Name, b.ruleDoc[r.Name])
	}
	b.rules[r.Name] = len(b.set.NetworkRules)
	b.ruleDoc[r.Name] = doc
	b.set.NetworkRules = append(b.set.NetworkRules, r)
	return nil
}

func (b *builder) securityRule(d *SecurityRule) error {
	doc := docName(d)
	ns := d.Metadata.Namespace
	switch d.Kind {
	case KindSecurityRule:
		if ns == "" {
			return fmt.Errorf("%w: %s: metadata.namespace is missing (use ClusterSecurityRule for rules across namespaces)", ErrConvert, doc)
		}
	case KindClusterSecurityRule:
		if ns != "" {
			return fmt.Errorf("%w: %s: metadata.namespace is set on a cluster-wide kind", ErrConvert, doc)
		}
	}
	sel := d.Spec.Target.Selector
	if ns != "" && len(sel.Criteria) == 0 && sel.Name != "" {
		// Adding the namespace criterion below would turn a reference into
		// a definition of the whole namespace: say so instead.
		return fmt.Errorf("%w: %s: spec.target.selector: group %q has no criteria; a rule's target defines its group (give its criteria, or use ClusterSecurityRule with the same criteria as the group's definition)", ErrConvert, doc, sel.Name)
	}
	if ns != "" {
		// A namespaced rule's target stays inside its namespace.
		found := false
		for _, c := range sel.Criteria {
			if k, _ := reservedKey(c.Key); k == policy.KeyNamespace {
				found = true
				if c.Op != "=" || c.Value != ns {
					return fmt.Errorf("%w: %s: spec.target.selector: namespace criterion %s %s %q does not match metadata.namespace %q", ErrConvert, doc, c.Key, c.Op, c.Value, ns)
				}
			}
		}
		if !found {
			sel.Criteria = append(slices.Clone(sel.Criteria), Criterion{Key: "namespace", Op: "=", Value: ns})
		}
	}
	target, err := b.selector(sel, doc, "spec.target.selector", true)
	if err != nil {
		return err
	}
	g := &b.set.Groups[b.groups[target]]
	modes := []struct {
		field string
		in    string
		out   *policy.Mode
	}{{"spec.target.mode", d.Spec.Target.Mode, &g.NetworkMode}, {"spec.target.processMode", d.Spec.Target.ProcessMode, &g.ProcessMode}}
	for _, m := range modes {
		if m.in == "" {
			continue
		}
		mode, err := policy.ParseMode(m.in)
		if err != nil {
			return fmt.Errorf("%w: %s: %s: %q is not Discover, Monitor or Protect", ErrConvert, doc, m.field, m.in)
		}
		if *m.out != "" && *m.out != mode {
			return fmt.Errorf("%w: %s: %s: group %q already has mode %s", ErrConvert, doc, m.field, target, *m.out)
		}
		*m.out = mode
	}
	if pp := d.Spec.ProcessProfile; pp != nil && pp.Baseline != "" {
		switch strings.ToLower(pp.Baseline) {
		case "basic", "default":
			g.Baseline = policy.BaselineBasic
		case "zerodrift", "zero-drift", "zero_drift":
			g.Baseline = policy.BaselineZeroDrift
		default:
			return fmt.Errorf("%w: %s: spec.processProfile.baseline: %q is not basic or zeroDrift", ErrConvert, doc, pp.Baseline)
		}
	}
	for _, dl := range []struct {
		dir  string
		list []NetworkPolicy
	}{{"ingress", d.Spec.Ingress}, {"egress", d.Spec.Egress}} {
		dir := dl.dir
		for i, np := range dl.list {
			field := fmt.Sprintf("spec.%s[%d]", dir, i)
			peer, err := b.selector(np.Selector, doc, field+".selector", false)
			if err != nil {
				return err
			}
			r := policy.NetworkRule{Meta: b.meta(np.Name, np.Comment), Ports: np.Ports, Action: policy.Action(np.Action), Disabled: np.Disabled}
			if r.Name == "" {
				r.Name = fmt.Sprintf("%s-%s-%d", target, dir, i)
			}
			if np.Ports == "any" {
				r.Ports = ""
			}
			for _, a := range np.Applications {
				if !strings.EqualFold(a, "any") {
					r.Applications = append(r.Applications, a)
				}
			}
			r.From, r.To = peer, target
			if dir == "egress" {
				r.From, r.To = target, peer
			}
			if err := b.addRule(r, doc); err != nil {
				return err
			}
		}
	}
	for _, p := range d.Spec.Process {
		b.set.ProcessRules = append(b.set.ProcessRules, policy.ProcessRule{
			Meta: b.meta(ProcessRuleName(target, p.Name, p.Path), ""), Group: target, Process: p.Name, Path: p.Path, Action: policy.Action(p.Action)})
	}
	for _, f := range d.Spec.File {
		b.set.FileRules = append(b.set.FileRules, policy.FileRule{
			Meta: b.meta(FileRuleName(target, f.Filter), ""), Group: target, Filter: f.Filter, Recursive: f.Recursive,
			Behavior: fileBehavior(f.Behavior), Applications: f.Applications})
	}
	return nil
}

// ProcessRuleName is the name a process rule of a security rule gets.
func ProcessRuleName(group, process, path string) string {
	return group + ":" + process + ":" + path
}

// FileRuleName is the name a file rule of a security rule gets.
func FileRuleName(group, filter string) string { return group + ":" + filter }

func fileBehavior(s string) policy.FileBehavior {
	switch s {
	case "monitor_change", "monitorChange":
		return policy.FileMonitorChange
	case "block_access", "blockAccess":
		return policy.FileBlockAccess
	}
	return policy.FileBehavior(s)
}

func (b *builder) admission(d *AdmissionRule) error {
	doc := docName(d)
	if d.Spec.Mode != "" {
		m, err := policy.ParseMode(d.Spec.Mode)
		if err != nil || (m != policy.ModeMonitor && m != policy.ModeProtect) {
			return fmt.Errorf("%w: %s: spec.mode: %q is not monitor or protect", ErrConvert, doc, d.Spec.Mode)
		}
		if b.set.Admission.Mode != "" && b.set.Admission.Mode != m {
			return fmt.Errorf("%w: %s: spec.mode %s conflicts with mode %s in %s", ErrConvert, doc, m, b.set.Admission.Mode, b.admDoc)
		}
		b.set.Admission.Mode = m
	}
	enabled := d.Spec.Enabled == nil || *d.Spec.Enabled
	if b.admDoc != "" && enabled != b.set.Admission.Enabled {
		return fmt.Errorf("%w: %s: spec.enabled conflicts with %s", ErrConvert, doc, b.admDoc)
	}
	b.set.Admission.Enabled = enabled
	b.admDoc = doc
	for _, e := range d.Spec.Rules {
		r := policy.AdmissionRule{Meta: b.meta(e.Name, e.Comment), Action: policy.Action(e.Action), Disabled: e.Disabled}
		for _, c := range e.Containers {
			r.Containers = append(r.Containers, policy.ContainerKind(c))
		}
		for _, c := range e.Criteria {
			r.Criteria = append(r.Criteria, policy.AdmissionCriterion{Name: c.Name, Op: c.Op, Value: c.Value})
		}
		b.set.AdmissionRules = append(b.set.AdmissionRules, r)
	}
	return nil
}
