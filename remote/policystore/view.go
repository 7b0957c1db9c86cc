package policystore

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/shared/store"
)

// Override is a group's mode setting, kept apart from the documents.
type Override struct {
	NetworkMode policy.Mode `json:"networkMode,omitempty"`
	ProcessMode policy.Mode `json:"processMode,omitempty"`
}

// storedDoc is one document read from the store.
type storedDoc struct {
	obj    code.Object
	raw    []byte
	modRev uint64
}

// View is the cluster's policy as read at one revision.
type View struct {
	// Set is the effective policy: federated, then local, then learned
	// objects, with mode settings applied.
	Set *policy.Set
	// Revision is the store revision the read reflects.
	Revision uint64
	// Shadowed lists objects left out because a layer of higher precedence
	// has an object of the same kind and name.
	Shadowed []string
	// Problems lists stored documents that could not be read or converted,
	// and what Set.Validate reports, one per line.
	Problems []string

	policyRev  uint64
	fedDocs    map[string]storedDoc // DocKey -> document
	localDocs  map[string]storedDoc
	fedSet     *policy.Set
	localSet   *policy.Set
	learnedSet *policy.Set
	overrides  map[string]Override
	defaults   policy.Defaults
}

// objKey identifies a policy object.
type objKey struct {
	kind policy.Kind
	name string
}

func (k objKey) String() string { return fmt.Sprintf("%s %q", k.kind.Title(), k.name) }

// viewSum identifies the contents of the listed keys: a write adds a
// key or raises the newest ModRevision, a delete lowers the count.
type viewSum struct {
	fedN, polN     int
	fedMax, polMax uint64
}

func sumOf(kvs []store.KV) (int, uint64) {
	var m uint64
	for _, kv := range kvs {
		m = max(m, kv.ModRevision)
	}
	return len(kvs), m
}

// View reads the cluster's policy. The view is shared with other callers
// until the policy changes: it must not be modified.
func (s *Store) View() (*View, error) {
	fedKVs, _ := s.kv.List(PrefixFederated)
	polKVs, rev := s.kv.List(prefixPolicy)
	var sum viewSum
	sum.fedN, sum.fedMax = sumOf(fedKVs)
	sum.polN, sum.polMax = sumOf(polKVs)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != nil && s.sum == sum {
		return s.cached, nil
	}
	v := buildView(fedKVs, polKVs, rev)
	s.cached, s.sum = v, sum
	return v, nil
}

func buildView(fedKVs, polKVs []store.KV, rev uint64) *View {
	v := &View{Revision: rev, fedDocs: map[string]storedDoc{}, localDocs: map[string]storedDoc{},
		learnedSet: &policy.Set{}, overrides: map[string]Override{}}
	for _, kv := range fedKVs {
		obj, err := decodeDoc(kv.Value)
		if err != nil {
			v.Problems = append(v.Problems, fmt.Sprintf("federated document %s: %v", kv.Key, err))
			continue
		}
		v.fedDocs[strings.TrimPrefix(kv.Key, PrefixFederated)] = storedDoc{obj: obj, raw: kv.Value, modRev: kv.ModRevision}
	}
	for _, kv := range polKVs {
		var err error
		switch k := kv.Key; {
		case k == KeyRevision:
			v.policyRev = kv.ModRevision
		case k == KeyDefaults:
			err = json.Unmarshal(kv.Value, &v.defaults)
		case strings.HasPrefix(k, PrefixObjects):
			var obj code.Object
			if obj, err = decodeDoc(kv.Value); err == nil {
				v.localDocs[strings.TrimPrefix(k, PrefixObjects)] = storedDoc{obj: obj, raw: kv.Value, modRev: kv.ModRevision}
			}
		case strings.HasPrefix(k, PrefixLearnedGroups):
			var g policy.Group
			if err = json.Unmarshal(kv.Value, &g); err == nil {
				g.Source, g.Revision = policy.SourceLearned, 0
				v.learnedSet.Groups = append(v.learnedSet.Groups, g)
			}
		case strings.HasPrefix(k, PrefixLearnedRules):
			var r policy.NetworkRule
			if err = json.Unmarshal(kv.Value, &r); err == nil {
				r.Source, r.Revision = policy.SourceLearned, 0
				v.learnedSet.NetworkRules = append(v.learnedSet.NetworkRules, r)
			}
		case strings.HasPrefix(k, PrefixLearnedProcesses):
			var r policy.ProcessRule
			if err = json.Unmarshal(kv.Value, &r); err == nil {
				r.Source, r.Revision = policy.SourceLearned, 0
				v.learnedSet.ProcessRules = append(v.learnedSet.ProcessRules, r)
			}
		case strings.HasPrefix(k, PrefixModes):
			var o Override
			if err = json.Unmarshal(kv.Value, &o); err == nil {
				v.overrides[strings.TrimPrefix(k, PrefixModes)] = o
			}
		}
		if err != nil {
			v.Problems = append(v.Problems, fmt.Sprintf("%s: %v", kv.Key, err))
		}
	}
	var problems []string
	v.fedSet, problems = convertDocs(v.fedDocs, policy.SourceFederated)
	v.Problems = append(v.Problems, problems...)
	setFederatedRevisions(v.fedSet, v.fedDocs)
	v.localSet, problems = convertDocs(v.localDocs, policy.SourceCode)
	v.Problems = append(v.Problems, problems...)
	v.learnedSet.Normalize()
	v.Set, v.Shadowed = compose(v.fedSet, v.localSet, v.learnedSet, v.defaults, v.overrides)
	v.Problems = append(v.Problems, validationLines(v.Set.Validate())...)
	return v
}

// sortedDocs returns the documents in key order.
func sortedDocs(docs map[string]storedDoc) []code.Object {
	out := make([]code.Object, 0, len(docs))
	for _, k := range slices.Sorted(maps.Keys(docs)) {
		out = append(out, docs[k].obj)
	}
	return out
}

// convertDocs converts documents with source src. When they do not
// convert together, it keeps every document that converts with those
// before it and reports the others.
func convertDocs(docs map[string]storedDoc, src policy.Source) (*policy.Set, []string) {
	all := sortedDocs(docs)
	set, err := code.ToSet(all, src)
	if err == nil {
		return set, nil
	}
	var kept []code.Object
	var problems []string
	set = &policy.Set{}
	for _, o := range all {
		s, err := code.ToSet(append(slices.Clone(kept), o), src)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %s left out: %v", src, docTitle(o), err))
			continue
		}
		kept = append(kept, o)
		set = s
	}
	return set, problems
}

// docRevision is the revision a federated document's objects carry.
func docRevision(d storedDoc) uint64 {
	if s := annotations(d.obj)[AnnotationRevision]; s != "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return d.modRev
}

// setFederatedRevisions gives every federated object the revision of the
// newest document that defines it.
func setFederatedRevisions(set *policy.Set, docs map[string]storedDoc) {
	revs := map[objKey]uint64{}
	var newest uint64
	for _, d := range docs {
		r := docRevision(d)
		newest = max(newest, r)
		one, err := code.ToSet([]code.Object{d.obj}, policy.SourceFederated)
		if err != nil {
			continue
		}
		forEachObject(one, func(k objKey, _ *policy.Meta) { revs[k] = max(revs[k], r) })
	}
	forEachObject(set, func(k objKey, m *policy.Meta) {
		m.Revision = revs[k]
		if m.Revision == 0 {
			m.Revision = max(newest, 1)
		}
	})
}

// forEachObject calls f with every named object of s.
func forEachObject(s *policy.Set, f func(objKey, *policy.Meta)) {
	for i := range s.Groups {
		f(objKey{policy.KindGroup, s.Groups[i].Name}, &s.Groups[i].Meta)
	}
	for i := range s.NetworkRules {
		f(objKey{policy.KindNetworkRule, s.NetworkRules[i].Name}, &s.NetworkRules[i].Meta)
	}
	for i := range s.ProcessRules {
		f(objKey{policy.KindProcessRule, s.ProcessRules[i].Name}, &s.ProcessRules[i].Meta)
	}
	for i := range s.FileRules {
		f(objKey{policy.KindFileRule, s.FileRules[i].Name}, &s.FileRules[i].Meta)
	}
	for i := range s.AdmissionRules {
		f(objKey{policy.KindAdmissionRule, s.AdmissionRules[i].Name}, &s.AdmissionRules[i].Meta)
	}
	for i := range s.ResponseRules {
		f(objKey{policy.KindResponseRule, s.ResponseRules[i].Name}, &s.ResponseRules[i].Meta)
	}
}

// layer appends the objects of src whose kind and name no earlier layer
// has, and reports the others.
func layer[T any](dst *[]T, src []T, kind policy.Kind, meta func(*T) *policy.Meta, seen map[objKey]policy.Source, shadowed *[]string) {
	for i := range src {
		m := meta(&src[i])
		k := objKey{kind, m.Name}
		if winner, ok := seen[k]; ok {
			*shadowed = append(*shadowed, fmt.Sprintf("%s %s is shadowed by a %s one", m.Source, k, winner))
			continue
		}
		seen[k] = m.Source
		*dst = append(*dst, src[i])
	}
}

// compose builds the effective set from its layers, highest precedence
// first, and applies the mode settings to every group but federated ones.
func compose(fed, local, learned *policy.Set, defaults policy.Defaults, overrides map[string]Override) (*policy.Set, []string) {
	out := &policy.Set{Defaults: defaults}
	seen := map[objKey]policy.Source{}
	var shadowed []string
	for _, s := range []*policy.Set{fed, local, learned} {
		if out.Admission == (policy.AdmissionSettings{}) {
			out.Admission = s.Admission
		}
		layer(&out.Groups, s.Groups, policy.KindGroup, func(x *policy.Group) *policy.Meta { return &x.Meta }, seen, &shadowed)
		layer(&out.NetworkRules, s.NetworkRules, policy.KindNetworkRule, func(x *policy.NetworkRule) *policy.Meta { return &x.Meta }, seen, &shadowed)
		layer(&out.ProcessRules, s.ProcessRules, policy.KindProcessRule, func(x *policy.ProcessRule) *policy.Meta { return &x.Meta }, seen, &shadowed)
		layer(&out.FileRules, s.FileRules, policy.KindFileRule, func(x *policy.FileRule) *policy.Meta { return &x.Meta }, seen, &shadowed)
		layer(&out.AdmissionRules, s.AdmissionRules, policy.KindAdmissionRule, func(x *policy.AdmissionRule) *policy.Meta { return &x.Meta }, seen, &shadowed)
		layer(&out.ResponseRules, s.ResponseRules, policy.KindResponseRule, func(x *policy.ResponseRule) *policy.Meta { return &x.Meta }, seen, &shadowed)
	}
	for i := range out.Groups {
		g := &out.Groups[i]
		o, ok := overrides[g.Name]
		if !ok || g.Source == policy.SourceFederated {
			continue
		}
		if o.NetworkMode != "" {
			g.NetworkMode = o.NetworkMode
		}
		if o.ProcessMode != "" {
			g.ProcessMode = o.ProcessMode
		}
	}
	out.Normalize()
	return out, shadowed
}

// validationLines splits a Validate error into one line per problem.
func validationLines(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, validationLines(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// firstField returns the field of the first validation error in err.
func firstField(err error) string {
	var ve *policy.ValidationError
	if errors.As(err, &ve) {
		return ve.Field
	}
	return ""
}
