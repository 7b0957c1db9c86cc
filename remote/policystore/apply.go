package policystore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/shared/store"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// DryRun plans without writing.
	DryRun bool
	// Prune deletes the local documents the input does not contain.
	Prune bool
	// User is recorded as the author of the change.
	User string
}

// DocChange is what applying does to one stored document.
type DocChange struct {
	Kind      string  `json:"kind"`
	Name      string  `json:"name"`
	Namespace string  `json:"namespace,omitempty"`
	Op        code.Op `json:"op"`
	// Federated marks a federated document found unchanged in the input
	// (as in an export): it is left alone.
	Federated bool `json:"federated,omitempty"`
}

// ApplyResult is the plan of an apply and, unless it was a dry run,
// what was written.
type ApplyResult struct {
	DryRun bool `json:"dryRun"`
	// Applied is true when the change was committed.
	Applied bool `json:"applied"`
	// Revision is the store revision of the commit.
	Revision uint64 `json:"revision,omitempty"`
	// Documents lists each document of the input, and with prune each
	// local document deleted, with what happens to it.
	Documents []DocChange `json:"documents"`
	// Plan lists the policy objects created, updated, unchanged and
	// deleted, and changed settings.
	Plan *code.Report `json:"plan"`
	// ModesReset lists groups whose mode setting is cleared because a
	// document now sets their mode.
	ModesReset []string `json:"modesReset,omitempty"`
	// Skipped lists what an import could not carry over.
	Skipped []code.Skipped `json:"skipped,omitempty"`
}

// ApplyYAML decodes a YAML stream of palisade.dev/v1 documents and
// applies it (see Apply).
func (s *Store) ApplyYAML(ctx context.Context, data []byte, opts ApplyOptions) (*ApplyResult, error) {
	objs, err := code.Decode(data)
	if err != nil {
		return nil, &InvalidError{Field: "body", Problem: err.Error()}
	}
	return s.Apply(ctx, objs, opts)
}

// ImportNeuVector converts NeuVector's exported CRD YAML and applies the
// result (see Apply); what could not be carried over is in Skipped.
func (s *Store) ImportNeuVector(ctx context.Context, data []byte, opts ApplyOptions) (*ApplyResult, error) {
	objs, skipped, err := code.ImportNeuVector(data)
	if err != nil {
		return nil, &InvalidError{Field: "body", Problem: err.Error()}
	}
	res, err := s.Apply(ctx, objs, ApplyOptions{DryRun: opts.DryRun, User: opts.User})
	if err != nil {
		return nil, err
	}
	res.Skipped = skipped
	return res, nil
}

// Apply stores documents as local policy, replacing stored documents of
// the same kind and name (and, with Prune, deleting the others), in one
// conditional transaction: a concurrent policy write makes it fail with a
// store conflict. It refuses (ReadOnlyError) documents that would define an
// object a federated document defines, and (InvalidError) input whose
// effective policy has a validation problem the current one has not.
// Documents marked palisade.dev/source: federated, as an export marks them,
// are accepted when they equal the stored federated document and left alone.
func (s *Store) Apply(ctx context.Context, objs []code.Object, opts ApplyOptions) (*ApplyResult, error) {
	v, err := s.View()
	if err != nil {
		return nil, err
	}
	res := &ApplyResult{DryRun: opts.DryRun}
	incoming := map[string]code.Object{}
	var order []string
	for _, o := range objs {
		key, err := DocKey(o)
		if err != nil {
			return nil, err
		}
		if _, dup := incoming[key]; dup {
			return nil, &InvalidError{Field: "metadata.name", Problem: fmt.Sprintf("%s appears twice in the input", docTitle(o))}
		}
		switch annotations(o)[AnnotationSource] {
		case annotationSourceFed:
			fd, ok := v.fedDocs[key]
			if !ok || !sameDoc(fd.obj, o) {
				return nil, &ReadOnlyError{Object: docTitle(o)}
			}
			res.Documents = append(res.Documents, docChange(o, code.OpUnchanged, true))
			incoming[key] = nil
			continue
		case "":
		default:
			o = withAnnotations(o, func(a map[string]string) { delete(a, AnnotationSource) })
		}
		if _, ok := v.fedDocs[key]; ok {
			return nil, &ReadOnlyError{Object: docTitle(o)}
		}
		incoming[key] = o
		order = append(order, key)
	}
	var inObjs []code.Object
	for _, k := range order {
		inObjs = append(inObjs, incoming[k])
	}
	if _, err := code.ToSet(inObjs, policy.SourceCode); err != nil {
		return nil, &InvalidError{Field: "body", Problem: err.Error()}
	}

	// The new local documents, and what happens to each stored one.
	newDocs := maps.Clone(v.localDocs)
	var ops []store.Op
	var fedConds []store.Cond
	newOverrides := maps.Clone(v.overrides)
	for _, key := range order {
		o := incoming[key]
		raw, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", docTitle(o), err)
		}
		old, exists := v.localDocs[key]
		op := code.OpCreate
		if exists {
			op = code.OpUpdate
			if sameDoc(old.obj, o) {
				op = code.OpUnchanged
			}
		}
		res.Documents = append(res.Documents, docChange(o, op, false))
		newDocs[key] = storedDoc{obj: o, raw: raw}
		fedConds = append(fedConds, store.Cond{Kind: store.CondAbsent, Key: PrefixFederated + key})
		if op == code.OpUnchanged {
			continue
		}
		ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixObjects + key, Value: raw})
		for _, g := range modesSet(old.obj, o) {
			ov, ok := newOverrides[g.group]
			if !ok {
				continue
			}
			if g.process {
				ov.ProcessMode = ""
			} else {
				ov.NetworkMode = ""
			}
			newOverrides[g.group] = ov
		}
	}
	if opts.Prune {
		for _, key := range slices.Sorted(maps.Keys(v.localDocs)) {
			if _, keep := incoming[key]; keep {
				continue
			}
			delete(newDocs, key)
			res.Documents = append(res.Documents, docChange(v.localDocs[key].obj, code.OpDelete, false))
			ops = append(ops, store.Op{Type: store.OpDelete, Key: PrefixObjects + key})
		}
	}
	for _, g := range slices.Sorted(maps.Keys(newOverrides)) {
		ov := newOverrides[g]
		if ov == v.overrides[g] {
			continue
		}
		res.ModesReset = append(res.ModesReset, g)
		if ov == (Override{}) {
			delete(newOverrides, g)
			ops = append(ops, store.Op{Type: store.OpDelete, Key: PrefixModes + g})
			continue
		}
		b, _ := json.Marshal(ov)
		ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixModes + g, Value: b})
	}

	newLocal, err := code.ToSet(sortedDocs(newDocs), policy.SourceCode)
	if err != nil {
		return nil, &InvalidError{Field: "body", Problem: err.Error()}
	}
	res.Plan = plan(v.localSet, newLocal)
	// A local object that a federated one shadows may stay as it is or
	// go, but not be created or changed.
	fedObjs := map[objKey]bool{}
	forEachObject(v.fedSet, func(k objKey, _ *policy.Meta) { fedObjs[k] = true })
	for _, c := range res.Plan.Changes {
		if (c.Op == code.OpCreate || c.Op == code.OpUpdate) && fedObjs[objKey{c.Kind, c.Name}] {
			return nil, &ReadOnlyError{Object: objKey{c.Kind, c.Name}.String()}
		}
	}
	newSet, _ := compose(v.fedSet, newLocal, v.learnedSet, v.defaults, newOverrides)
	if err := newProblems(v.Set, newSet); err != nil {
		return nil, err
	}
	if opts.DryRun || len(ops) == 0 {
		return res, nil
	}
	if len(ops)+1 > store.MaxTxnOps {
		return nil, &InvalidError{Field: "body", Problem: fmt.Sprintf("%d documents change; one apply may change at most %d", len(ops), store.MaxTxnOps-1)}
	}
	cond, bump := v.revisionOps(opts.User, "apply")
	txn := store.Txn{Conds: append([]store.Cond{cond}, fedConds...), Ops: append(ops, bump)}
	rev, err := s.kv.Txn(ctx, txn)
	if err != nil {
		return nil, fmt.Errorf("apply policy: %w", err)
	}
	res.Applied, res.Revision = true, rev
	s.log.Info("applied policy", "documents", len(ops), "rev", rev, "user", opts.User)
	return res, nil
}

func docChange(o code.Object, op code.Op, fed bool) DocChange {
	c := DocChange{Kind: o.GetKind(), Name: o.GetName(), Op: op, Federated: fed}
	if sr, ok := o.(*code.SecurityRule); ok {
		c.Namespace = sr.Metadata.Namespace
	}
	return c
}

// sameDoc compares two documents, ignoring the source and revision marks
// an export adds.
func sameDoc(a, b code.Object) bool {
	strip := func(o code.Object) []byte {
		o = withAnnotations(o, func(m map[string]string) {
			delete(m, AnnotationSource)
			delete(m, AnnotationRevision)
		})
		j, _ := json.Marshal(o)
		return j
	}
	return bytes.Equal(strip(a), strip(b))
}

type modeChange struct {
	group   string
	process bool
}

// modesSet lists the modes the new document sets to a value the old one
// did not: a mode written in code replaces an earlier mode setting.
func modesSet(old, cur code.Object) []modeChange {
	nr, ok := cur.(*code.SecurityRule)
	if !ok {
		return nil
	}
	var ot code.Target
	if or, ok := old.(*code.SecurityRule); ok && or != nil {
		ot = or.Spec.Target
	}
	t := nr.Spec.Target
	var out []modeChange
	if t.Mode != "" && !strings.EqualFold(t.Mode, ot.Mode) {
		out = append(out, modeChange{t.Selector.Name, false})
	}
	if t.ProcessMode != "" && !strings.EqualFold(t.ProcessMode, ot.ProcessMode) {
		out = append(out, modeChange{t.Selector.Name, true})
	}
	return out
}

// plan reports what replacing the local set old with cur does.
func plan(old, cur *policy.Set) *code.Report {
	rep, err := code.Plan(old, cur, code.PlanOptions{})
	if err != nil {
		rep = &code.Report{}
	}
	in := map[objKey]bool{}
	forEachObject(cur, func(k objKey, _ *policy.Meta) { in[k] = true })
	forEachObject(old, func(k objKey, _ *policy.Meta) {
		if !in[k] {
			rep.Changes = append(rep.Changes, code.Change{Kind: k.kind, Name: k.name, Op: code.OpDelete})
		}
	})
	slices.SortStableFunc(rep.Changes, func(a, b code.Change) int {
		if a.Kind != b.Kind {
			return strings.Compare(string(a.Kind), string(b.Kind))
		}
		return strings.Compare(a.Name, b.Name)
	})
	if rep.Changes == nil {
		rep.Changes = []code.Change{}
	}
	return rep
}

// newProblems returns an InvalidError listing the validation problems of
// cur that old does not have, or nil.
func newProblems(old, cur *policy.Set) error {
	had := map[string]bool{}
	for _, l := range validationLines(old.Validate()) {
		had[l] = true
	}
	var fresh []error
	var lines []string
	err := cur.Validate()
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if !had[e.Error()] {
			fresh = append(fresh, e)
			lines = append(lines, e.Error())
		}
	}
	if err != nil {
		walk(err)
	}
	if len(fresh) == 0 {
		return nil
	}
	field := firstField(fresh[0])
	if field == "" {
		field = "body"
	}
	return &InvalidError{Field: field, Problem: strings.Join(lines, "\n")}
}
