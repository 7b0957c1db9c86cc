//go:build linux

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/palisade-sec/palisade/agent/procguard"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// File rules are enforced by the process guard: a profile's file rules
// join its workload's procguard.Group, and the guard watches, besides
// executions, the opens and writes under each rule (Mark.Files). Rule
// paths are the paths as the node sees them.

// fileRules converts a profile's compiled file rules; entries the guard
// cannot take are left out.
func fileRules(entries []compile.FileEntry) []procguard.FileRule {
	var out []procguard.FileRule
	for _, e := range entries {
		r := procguard.FileRule{Path: e.Filter, Recursive: e.Recursive, Block: e.Behavior == policy.FileBlockAccess,
			Apps: slices.Clone(e.Applications), ID: e.RuleID}
		if r.Validate() == nil {
			out = append(out, r)
		}
	}
	return out
}

// fileMarks returns the marks that make the guard see what rules cover: a
// directory mark on a directory rule's directory or on the directory
// holding a file (or the names a wildcard matches), and a mount mark for a
// recursive rule, at its directory or the closest existing one above it.
// A non-recursive rule whose directory does not exist yet gets no mark.
func fileMarks(rules []procguard.FileRule) []procguard.Mark {
	seen := map[procguard.Mark]bool{}
	var out []procguard.Mark
	for _, r := range rules {
		dir := r.Path
		if r.Glob() {
			dir = filepath.Dir(r.Path)
		} else if st, err := os.Stat(r.Path); err != nil || !st.IsDir() {
			if !r.Recursive || err == nil {
				dir = filepath.Dir(r.Path)
			}
		}
		m := procguard.Mark{Path: dir, Scope: procguard.ScopeDirectory, Files: true}
		if r.Recursive {
			for {
				if st, err := os.Stat(dir); err == nil && st.IsDir() {
					break
				}
				dir = filepath.Dir(dir)
			}
			m = procguard.Mark{Path: dir, Scope: procguard.ScopeMount, Files: true}
		} else if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b procguard.Mark) int {
		if a.Path != b.Path {
			if a.Path < b.Path {
				return -1
			}
			return 1
		}
		return int(a.Scope) - int(b.Scope)
	})
	return out
}

// marker places and removes guard marks.
type marker interface {
	AddMark(procguard.Mark) error
	RemoveMark(procguard.Mark) error
}

// syncFileMarks brings the guard's file marks in step with the file rules
// of the workloads under process control: placed holds the marks in place
// and is updated. A mark that cannot be placed is tried again at the next
// sync.
func (a *Agent) syncFileMarks(g marker, placed map[procguard.Mark]bool) {
	want := map[procguard.Mark]bool{}
	for _, m := range fileMarks(a.procs.fileRules()) {
		want[m] = true
		if placed[m] {
			continue
		}
		if err := g.AddMark(m); err != nil {
			a.log.Warn("file guard mark", "path", m.Path, "err", err)
			continue
		}
		placed[m] = true
		a.log.Info("file guard marked", "path", m.Path, "scope", int(m.Scope))
	}
	for m := range placed {
		if want[m] {
			continue
		}
		if err := g.RemoveMark(m); err != nil {
			a.log.Debug("file guard unmark", "path", m.Path, "err", err)
		}
		delete(placed, m)
		a.log.Info("file guard unmarked", "path", m.Path)
	}
}

// fileRules returns the file rules of every workload under process
// control.
func (p *procControl) fileRules() []procguard.FileRule {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []procguard.FileRule
	for _, g := range p.groups {
		out = append(out, g.Files...)
	}
	return out
}

// fileEvent turns what the guard reports of an open or a change under a
// file rule into a security event.
func fileEvent(d procguard.Decision, workload string, now time.Time) (agentproto.Event, bool) {
	e := agentproto.Event{Time: now, Mode: modeName(d.Mode), Workload: workload, Path: d.Path, Rule: d.Rule.ID, Action: "alert"}
	switch {
	case d.Kind == procguard.EventFileOpen && d.Denied:
		e.Kind, e.Action = agentproto.EventFileDenied, "deny"
		e.Message = fmt.Sprintf("%s: open of %s by pid %d denied under the file rule on %s", workload, d.Path, d.Pid, d.Rule.Path)
	case d.Kind == procguard.EventFileOpen:
		e.Kind = agentproto.EventFileViolation
		e.Message = fmt.Sprintf("%s: pid %d opened %s under the blocking file rule on %s", workload, d.Pid, d.Path, d.Rule.Path)
	case d.Kind == procguard.EventFileChange:
		e.Kind = agentproto.EventFileChange
		e.Message = fmt.Sprintf("%s: %s changed (pid %d) under the file rule on %s", workload, d.Path, d.Pid, d.Rule.Path)
	default:
		return agentproto.Event{}, false
	}
	return e, true
}
