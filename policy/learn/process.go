package learn

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
)

// Exec is one executable a workload ran in Discover.
type Exec struct {
	Workload *policy.Workload
	// Path is the executable's absolute path.
	Path string
}

// ProcessName is the process name a learned rule gives an executable: its
// base name.
func ProcessName(p string) string { return path.Base(p) }

// LearnProcesses returns what execs add to current: for each executable
// not covered by a process rule (of any source and action) of a group the
// workload belongs to, a learned allow rule in the workload's learned group
// (the group flows learn into, created when missing). current must be
// valid. The result is the same for the same execs in any order.
func (l *Learner) LearnProcesses(current *policy.Set, execs []Exec) (*Result, error) {
	type groupSel struct {
		name string
		sel  *policy.Selector
	}
	var sels []groupSel
	for _, g := range current.Groups {
		sel, err := policy.CompileSelector(g.Criteria)
		if err != nil {
			return nil, fmt.Errorf("learn: group %q: %w", g.Name, err)
		}
		if !sel.IsAddress() {
			sels = append(sels, groupSel{g.Name, sel})
		}
	}
	byGroup := map[string][]*policy.ProcessRule{}
	for i := range current.ProcessRules {
		r := &current.ProcessRules[i]
		byGroup[r.Group] = append(byGroup[r.Group], r)
	}
	covered := func(w *policy.Workload, group, p string) bool {
		match := func(rs []*policy.ProcessRule) bool {
			for _, r := range rs {
				if (r.Process == "*" || policy.Glob(r.Process, ProcessName(p))) && (r.Path == "*" || policy.Glob(r.Path, p)) {
					return true
				}
			}
			return false
		}
		if match(byGroup[group]) {
			return true
		}
		for _, s := range sels {
			if s.sel.MatchWorkload(w) && match(byGroup[s.name]) {
				return true
			}
		}
		return false
	}
	sorted := make([]Exec, 0, len(execs))
	for _, e := range execs {
		if e.Workload != nil && path.IsAbs(e.Path) && len(e.Path) <= 4096 && !strings.ContainsRune(e.Path, 0) {
			sorted = append(sorted, e)
		}
	}
	slices.SortFunc(sorted, func(a, b Exec) int {
		return strings.Compare(a.Workload.ID+"\x00"+a.Path, b.Workload.ID+"\x00"+b.Path)
	})
	out := &Result{}
	rules := map[string]bool{}
	groups := map[string]bool{}
	for _, e := range sorted {
		g := l.workloadGroup(e.Workload)
		if covered(e.Workload, g.Name, e.Path) {
			continue
		}
		name := l.processRuleName(g.Name, e.Path)
		if rules[name] {
			continue
		}
		rules[name] = true
		out.ProcessRules = append(out.ProcessRules, policy.ProcessRule{
			Meta:  policy.Meta{Name: name, Kind: policy.KindProcessRule, Source: policy.SourceLearned},
			Group: g.Name, Process: ProcessName(e.Path), Path: e.Path, Action: policy.ActionAllow})
		if current.Group(g.Name) == nil && !groups[g.Name] {
			groups[g.Name] = true
			out.Groups = append(out.Groups, g)
		}
	}
	slices.SortFunc(out.Groups, func(a, b policy.Group) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(out.ProcessRules, func(a, b policy.ProcessRule) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// processRuleName names the learned rule of an executable in a group the
// way a security rule's process rules are named (so it exports as one),
// or, when the path would make that name too long or not printable, by the
// group, the process name and a digest of the path.
func (l *Learner) processRuleName(group, p string) string {
	name := code.ProcessRuleName(group, ProcessName(p), p)
	if policy.CheckName(name) == nil {
		return name
	}
	h := sha256.Sum256([]byte(p))
	return fmt.Sprintf("%s:%s:%s", group, sanitize(ProcessName(p)), hex.EncodeToString(h[:8]))
}
