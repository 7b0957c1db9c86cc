package code

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// Op is what applying a document does to one object.
type Op string

// The change operations.
const (
	OpCreate    Op = "create"
	OpUpdate    Op = "update"
	OpDelete    Op = "delete"
	OpUnchanged Op = "unchanged"
)

// Change is one line of a plan.
type Change struct {
	Kind policy.Kind `json:"kind"`
	Name string      `json:"name"`
	Op   Op          `json:"op"`
	// Fields lists the top-level fields an update changes.
	Fields []string `json:"fields,omitempty"`
	// Replaces is the source of the object an update takes over, when it
	// is not the incoming source.
	Replaces policy.Source `json:"replaces,omitempty"`
}

func (c Change) String() string {
	s := fmt.Sprintf("%-9s %s %q", c.Op, c.Kind.Title(), c.Name)
	if len(c.Fields) > 0 {
		s += " (" + strings.Join(c.Fields, ", ") + ")"
	}
	if c.Replaces != "" {
		s += fmt.Sprintf(" [replaces a %s object]", c.Replaces)
	}
	return s
}

// Report is what applying a set would do.
type Report struct {
	Changes []Change `json:"changes"`
	// Settings lists changed cluster settings ("admission.mode").
	Settings []string `json:"settings,omitempty"`
}

// Changed reports whether the plan changes anything.
func (r *Report) Changed() bool {
	if len(r.Settings) > 0 {
		return true
	}
	for _, c := range r.Changes {
		if c.Op != OpUnchanged {
			return true
		}
	}
	return false
}

// String renders the plan one change per line, unchanged objects left out.
func (r *Report) String() string {
	var b strings.Builder
	for _, c := range r.Changes {
		if c.Op != OpUnchanged {
			b.WriteString(c.String())
			b.WriteByte('\n')
		}
	}
	for _, s := range r.Settings {
		fmt.Fprintf(&b, "update    setting %s\n", s)
	}
	if b.Len() == 0 {
		return "no changes\n"
	}
	return b.String()
}

// PlanOptions tune Plan and Apply.
type PlanOptions struct {
	// Prune deletes objects of the incoming source that the incoming set
	// does not contain.
	Prune bool
}

// ErrReadOnly is returned when an incoming object would replace a
// federated object from another source.
var ErrReadOnly = fmt.Errorf("%w: federated objects are read-only here", ErrConvert)

// object is one named policy object of any kind, for planning.
type object struct {
	kind  policy.Kind
	name  string
	meta  *policy.Meta
	value any
}

func objects(s *policy.Set) []object {
	var out []object
	for i := range s.Groups {
		out = append(out, object{policy.KindGroup, s.Groups[i].Name, &s.Groups[i].Meta, &s.Groups[i]})
	}
	for i := range s.NetworkRules {
		out = append(out, object{policy.KindNetworkRule, s.NetworkRules[i].Name, &s.NetworkRules[i].Meta, &s.NetworkRules[i]})
	}
	for i := range s.ProcessRules {
		out = append(out, object{policy.KindProcessRule, s.ProcessRules[i].Name, &s.ProcessRules[i].Meta, &s.ProcessRules[i]})
	}
	for i := range s.FileRules {
		out = append(out, object{policy.KindFileRule, s.FileRules[i].Name, &s.FileRules[i].Meta, &s.FileRules[i]})
	}
	for i := range s.AdmissionRules {
		out = append(out, object{policy.KindAdmissionRule, s.AdmissionRules[i].Name, &s.AdmissionRules[i].Meta, &s.AdmissionRules[i]})
	}
	for i := range s.ResponseRules {
		out = append(out, object{policy.KindResponseRule, s.ResponseRules[i].Name, &s.ResponseRules[i].Meta, &s.ResponseRules[i]})
	}
	return out
}

type objKey struct {
	kind policy.Kind
	name string
}

// changedFields lists the exported top-level fields that differ, Kind
// ignored.
func changedFields(a, b any) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if f.Name == "Meta" {
			ma, mb := va.Field(i).Interface().(policy.Meta), vb.Field(i).Interface().(policy.Meta)
			ma.Kind, mb.Kind = "", ""
			if ma.Comment != mb.Comment {
				out = append(out, "comment")
			}
			if ma.Source != mb.Source {
				out = append(out, "source")
			}
			if ma.Revision != mb.Revision {
				out = append(out, "revision")
			}
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name := f.Name
			if tag := f.Tag.Get("json"); tag != "" {
				name, _, _ = strings.Cut(tag, ",")
			}
			out = append(out, name)
		}
	}
	return out
}

// Plan reports what applying incoming onto current would do, without
// changing either. Objects are matched by kind and name.
func Plan(current, incoming *policy.Set, opts PlanOptions) (*Report, error) {
	rep := &Report{}
	cur := map[objKey]object{}
	for _, o := range objects(current) {
		cur[objKey{o.kind, o.name}] = o
	}
	in := map[objKey]bool{}
	var src policy.Source
	for _, o := range objects(incoming) {
		k := objKey{o.kind, o.name}
		in[k] = true
		src = o.meta.Source
		old, ok := cur[k]
		switch {
		case !ok:
			rep.Changes = append(rep.Changes, Change{Kind: o.kind, Name: o.name, Op: OpCreate})
		case old.meta.Source == policy.SourceFederated && o.meta.Source != policy.SourceFederated:
			return nil, fmt.Errorf("%w: %s %q", ErrReadOnly, o.kind.Title(), o.name)
		default:
			fields := changedFields(old.value, o.value)
			c := Change{Kind: o.kind, Name: o.name, Op: OpUpdate, Fields: fields}
			if len(fields) == 0 {
				c = Change{Kind: o.kind, Name: o.name, Op: OpUnchanged}
			}
			if old.meta.Source != o.meta.Source {
				c.Replaces = old.meta.Source
			}
			rep.Changes = append(rep.Changes, c)
		}
	}
	if opts.Prune && src != "" {
		for _, o := range objects(current) {
			if o.meta.Source == src && !in[objKey{o.kind, o.name}] {
				rep.Changes = append(rep.Changes, Change{Kind: o.kind, Name: o.name, Op: OpDelete})
			}
		}
	}
	if incoming.Admission != current.Admission && (incoming.Admission.Mode != "" || len(incoming.AdmissionRules) > 0) {
		if incoming.Admission.Mode != current.Admission.Mode {
			rep.Settings = append(rep.Settings, fmt.Sprintf("admission.mode: %q -> %q", current.Admission.Mode, incoming.Admission.Mode))
		}
		if incoming.Admission.Enabled != current.Admission.Enabled {
			rep.Settings = append(rep.Settings, fmt.Sprintf("admission.enabled: %v -> %v", current.Admission.Enabled, incoming.Admission.Enabled))
		}
	}
	slices.SortFunc(rep.Changes, func(a, b Change) int {
		if a.Kind != b.Kind {
			return strings.Compare(string(a.Kind), string(b.Kind))
		}
		return strings.Compare(a.Name, b.Name)
	})
	return rep, nil
}

// Apply returns current with incoming applied (objects created or
// replaced by name, and with Prune deleted), the plan, and an error when
// the result does not validate. Neither input is changed.
func Apply(current, incoming *policy.Set, opts PlanOptions) (*policy.Set, *Report, error) {
	rep, err := Plan(current, incoming, opts)
	if err != nil {
		return nil, nil, err
	}
	out := policy.Set{Defaults: current.Defaults, Admission: current.Admission, ResponseRules: slices.Clone(current.ResponseRules)}
	if incoming.Admission.Mode != "" || len(incoming.AdmissionRules) > 0 {
		out.Admission = incoming.Admission
	}
	drop := map[objKey]bool{}
	for _, c := range rep.Changes {
		if c.Op == OpDelete || c.Op == OpUpdate || c.Op == OpUnchanged {
			drop[objKey{c.Kind, c.Name}] = true
		}
	}
	keep := func(k policy.Kind, name string) bool { return !drop[objKey{k, name}] }
	for _, g := range current.Groups {
		if keep(policy.KindGroup, g.Name) {
			out.Groups = append(out.Groups, g)
		}
	}
	for _, r := range current.NetworkRules {
		if keep(policy.KindNetworkRule, r.Name) {
			out.NetworkRules = append(out.NetworkRules, r)
		}
	}
	for _, r := range current.ProcessRules {
		if keep(policy.KindProcessRule, r.Name) {
			out.ProcessRules = append(out.ProcessRules, r)
		}
	}
	for _, r := range current.FileRules {
		if keep(policy.KindFileRule, r.Name) {
			out.FileRules = append(out.FileRules, r)
		}
	}
	for _, r := range current.AdmissionRules {
		if keep(policy.KindAdmissionRule, r.Name) {
			out.AdmissionRules = append(out.AdmissionRules, r)
		}
	}
	out.ResponseRules = slices.DeleteFunc(out.ResponseRules, func(r policy.ResponseRule) bool { return !keep(policy.KindResponseRule, r.Name) })
	out.Groups = append(out.Groups, incoming.Groups...)
	out.NetworkRules = append(out.NetworkRules, incoming.NetworkRules...)
	out.ProcessRules = append(out.ProcessRules, incoming.ProcessRules...)
	out.FileRules = append(out.FileRules, incoming.FileRules...)
	out.AdmissionRules = append(out.AdmissionRules, incoming.AdmissionRules...)
	out.ResponseRules = append(out.ResponseRules, incoming.ResponseRules...)
	out.Normalize()
	if err := out.Validate(); err != nil {
		return nil, rep, err
	}
	return &out, rep, nil
}
