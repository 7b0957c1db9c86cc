package procguard

import (
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/palisade-sec/palisade/policy"
)

// Mode is a group's process mode.
type Mode uint8

// Modes.
const (
	ModeDiscover Mode = iota // learn every executable that runs
	ModeMonitor              // report executables outside the profile
	ModeProtect              // deny executables outside the profile
)

func (m Mode) String() string {
	switch m {
	case ModeDiscover:
		return "discover"
	case ModeMonitor:
		return "monitor"
	case ModeProtect:
		return "protect"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Group is the process policy of one workload, found by its cgroup (v2) id.
type Group struct {
	Name     string
	CgroupID uint64
	Mode     Mode
	// Allowed holds the executable paths the group may run, as seen from
	// the host.
	Allowed []string
	// Rules are the group's process rules in precedence order; the first
	// that matches an exec decides it, before Allowed is consulted.
	Rules []Rule
	// Files are the group's file rules.
	Files []FileRule
}

// FileRule watches a file or a directory for one group.
type FileRule struct {
	// Path is a file, or a directory whose files the rule covers, as the
	// group's processes see it (inside their root filesystem); its last
	// element may hold * and ? wildcards, which then match file names in
	// the parent directory (at any depth below it when Recursive).
	Path string
	// Recursive extends a directory rule to every level below it.
	Recursive bool
	// Block denies the group's processes any open under the rule in
	// Protect (and reports it in Discover and Monitor); without it only
	// changes are reported.
	Block bool
	// Apps are executables still allowed to open the files of a blocking
	// rule: a full path as the group's processes see it or a base name,
	// with * and ? wildcards.
	Apps []string
	// ID is the compiled rule's id, carried into reports.
	ID uint32
}

// Rule allows or denies executables by process name and path.
type Rule struct {
	// Process matches the executable's base name; "*" matches any, and
	// * and ? are wildcards.
	Process string
	// Path matches the executable's path as the host sees it; "*" matches
	// any, and * and ? are wildcards.
	Path string
	// Deny makes a match a violation (denied in Protect, reported in
	// Discover and Monitor); otherwise a match is allowed.
	Deny bool
}

// Validate reports the first problem of the rule.
func (r Rule) Validate() error {
	switch {
	case r.Process == "":
		return errors.New("procguard: process rule without a process name")
	case r.Path != "*" && !strings.HasPrefix(r.Path, "/"):
		return fmt.Errorf("procguard: process rule path %q is not absolute or *", r.Path)
	}
	return nil
}

func (r Rule) matches(path string) bool {
	return (r.Process == "*" || policy.Glob(r.Process, filepath.Base(path))) && (r.Path == "*" || policy.Glob(r.Path, path))
}

// Validate reports the first problem of the rule.
func (r FileRule) Validate() error {
	if !filepath.IsAbs(r.Path) || filepath.Clean(r.Path) != r.Path {
		return fmt.Errorf("procguard: file rule path %q is not absolute and clean", r.Path)
	}
	if strings.ContainsAny(filepath.Dir(r.Path), "*?") {
		return fmt.Errorf("procguard: file rule path %q has wildcards before its last element", r.Path)
	}
	for _, a := range r.Apps {
		if a == "" {
			return fmt.Errorf("procguard: file rule %q: empty application", r.Path)
		}
	}
	return nil
}

// Glob reports whether the rule's last element holds wildcards.
func (r FileRule) Glob() bool { return strings.ContainsAny(filepath.Base(r.Path), "*?") }

// covers reports whether path falls under the rule.
func (r FileRule) covers(path string) bool {
	if r.Glob() {
		dir, pattern := filepath.Dir(r.Path), filepath.Base(r.Path)
		pdir := filepath.Dir(path)
		if pdir != dir && !(r.Recursive && strings.HasPrefix(pdir, strings.TrimSuffix(dir, "/")+"/")) {
			return false
		}
		return policy.Glob(pattern, filepath.Base(path))
	}
	if path == r.Path {
		return true
	}
	rest, ok := strings.CutPrefix(path, strings.TrimSuffix(r.Path, "/")+"/")
	if !ok {
		return false
	}
	return r.Recursive || !strings.Contains(rest, "/")
}

// Allows reports whether exe (a path as the group's processes see it) is
// one of the rule's applications.
func (r FileRule) Allows(exe string) bool {
	for _, a := range r.Apps {
		if strings.HasPrefix(a, "/") {
			if policy.Glob(a, exe) {
				return true
			}
		} else if policy.Glob(a, filepath.Base(exe)) {
			return true
		}
	}
	return false
}

// Verdict is the outcome of an exec against the policy.
type Verdict uint8

// Verdicts.
const (
	Unguarded Verdict = iota // the process is in no known group
	Allowed                  // in the profile
	Learned                  // not in the profile; added (Discover)
	Violation                // not in the profile; reported (Monitor) or denied (Protect)
)

type group struct {
	name    string
	mode    Mode
	allowed map[string]bool
	rules   []Rule
	files   []FileRule
}

// Policy holds the groups. It is safe for concurrent use.
type Policy struct {
	mu     sync.RWMutex
	groups map[uint64]*group
	// devs holds, by cgroup id, the devices a group's file rules are
	// watched on (SetFileDevices); it outlives a Set of the group.
	devs map[uint64]map[uint64]bool
	// resolved holds, by cgroup id, the group's file rules on the paths
	// their symbolic links lead to (SetResolvedFiles); it outlives a Set.
	resolved map[uint64][]FileRule
}

// NewPolicy returns an empty policy: every exec is unguarded.
func NewPolicy() *Policy {
	return &Policy{groups: map[uint64]*group{}, devs: map[uint64]map[uint64]bool{}, resolved: map[uint64][]FileRule{}}
}

// Set adds or replaces a group.
func (p *Policy) Set(g Group) error {
	if g.CgroupID == 0 {
		return fmt.Errorf("procguard: group %q: cgroup id 0", g.Name)
	}
	if g.Mode > ModeProtect {
		return fmt.Errorf("procguard: group %q: unknown mode %d", g.Name, g.Mode)
	}
	for _, f := range g.Files {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("group %q: %w", g.Name, err)
		}
	}
	for _, r := range g.Rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("group %q: %w", g.Name, err)
		}
	}
	ng := &group{name: g.Name, mode: g.Mode, allowed: map[string]bool{}, rules: append([]Rule(nil), g.Rules...), files: cloneFiles(g.Files)}
	for _, a := range g.Allowed {
		ng.allowed[a] = true
	}
	p.mu.Lock()
	p.groups[g.CgroupID] = ng
	p.mu.Unlock()
	return nil
}

// Remove forgets a group and its file devices.
func (p *Policy) Remove(cgroupID uint64) {
	p.mu.Lock()
	delete(p.groups, cgroupID)
	delete(p.devs, cgroupID)
	delete(p.resolved, cgroupID)
	p.mu.Unlock()
}

// SetResolvedFiles records, for a set group, its file rules on the paths
// their symbolic links lead to in the group's root: the kernel names an
// opened file by where it is (/run/secrets/..., not /var/run/secrets/...
// through a /var/run link), so those rules are matched besides the group's
// own. Rules that fail validation are left out.
func (p *Policy) SetResolvedFiles(cgroupID uint64, rules []FileRule) {
	var keep []FileRule
	for _, r := range rules {
		if r.Validate() == nil {
			keep = append(keep, r)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.groups[cgroupID]; !ok {
		return
	}
	if len(keep) == 0 {
		delete(p.resolved, cgroupID)
		return
	}
	p.resolved[cgroupID] = cloneFiles(keep)
}

// fileRules yields the file rules of group cgroupID, its own then their
// resolved forms, without copying them (CheckFile runs on every watched
// open). The caller holds p.mu.
func (p *Policy) fileRules(cgroupID uint64, g *group) iter.Seq[FileRule] {
	return func(yield func(FileRule) bool) {
		for _, rules := range [2][]FileRule{g.files, p.resolved[cgroupID]} {
			for _, r := range rules {
				if !yield(r) {
					return
				}
			}
		}
	}
}

// SetFileDevices records the devices (st_dev) of the filesystems a set
// group's file rules are watched on, the group's own root filesystem for
// a container. From then on the group's rules cover only files on those
// devices: a rule on /etc/shadow of one container says nothing of
// /etc/shadow of another container or of the host, which the kernel
// names alike. Until it is called the rules cover a path on any device;
// an empty devs makes them cover nothing.
func (p *Policy) SetFileDevices(cgroupID uint64, devs []uint64) {
	set := make(map[uint64]bool, len(devs))
	for _, d := range devs {
		set[d] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.groups[cgroupID]; ok {
		p.devs[cgroupID] = set
	}
}

// onDevice reports whether the file rules of group cgroupID cover files
// on dev. The caller holds p.mu.
func (p *Policy) onDevice(cgroupID, dev uint64) bool {
	set, ok := p.devs[cgroupID]
	return !ok || set[dev]
}

// Has reports whether a group is set on cgroupID.
func (p *Policy) Has(cgroupID uint64) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	_, ok := p.groups[cgroupID]
	return ok
}

// Group returns a group with its current (possibly learned) profile.
func (p *Policy) Group(cgroupID uint64) (Group, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	g, ok := p.groups[cgroupID]
	if !ok {
		return Group{}, false
	}
	out := Group{Name: g.name, CgroupID: cgroupID, Mode: g.mode, Rules: append([]Rule(nil), g.rules...), Files: cloneFiles(g.files)}
	for a := range g.allowed {
		out.Allowed = append(out.Allowed, a)
	}
	sort.Strings(out.Allowed)
	return out, true
}

// Check decides an exec of path in cgroupID. In Discover the path joins the
// profile. deny is true only for a violation in Protect.
func (p *Policy) Check(cgroupID uint64, path string) (v Verdict, mode Mode, deny bool) {
	return p.check(cgroupID, path, true)
}

// Decide decides an exec like Check but never changes the profile: in
// Discover an unknown path is Learned without joining it. The Guard uses
// it, so that the Observer, which reports what is learned, sees every new
// path first.
func (p *Policy) Decide(cgroupID uint64, path string) (v Verdict, mode Mode, deny bool) {
	return p.check(cgroupID, path, false)
}

func (p *Policy) check(cgroupID uint64, path string, learn bool) (v Verdict, mode Mode, deny bool) {
	p.mu.RLock()
	g, ok := p.groups[cgroupID]
	if !ok {
		p.mu.RUnlock()
		return Unguarded, 0, false
	}
	known := g.allowed[path]
	mode = g.mode
	ruled, denied := false, false
	for _, r := range g.rules {
		if r.matches(path) {
			ruled, denied = true, r.Deny
			break
		}
	}
	p.mu.RUnlock()
	switch {
	case ruled && denied:
		return Violation, mode, mode == ModeProtect
	case ruled || known:
		return Allowed, mode, false
	case mode == ModeDiscover && !learn:
		return Learned, mode, false
	case mode == ModeDiscover:
		p.mu.Lock()
		if g2, ok := p.groups[cgroupID]; ok && g2 == g {
			g.allowed[path] = true
		}
		p.mu.Unlock()
		return Learned, mode, false
	case mode == ModeProtect:
		return Violation, mode, true
	}
	return Violation, mode, false
}

// CheckFile decides an open (change false) or a change (change true) of
// path, a file on device dev, by a process in cgroupID. An open matches
// only a blocking rule; a change matches any rule covering the path; a
// file on a device the group's rules are not watched on (SetFileDevices)
// matches none. rule is the first rule that matches; deny is true for an
// open under a blocking rule in Protect (in Discover and Monitor the open
// is allowed and reported). The caller lets the rule's applications
// (FileRule.Allows) through.
func (p *Policy) CheckFile(cgroupID, dev uint64, path string, change bool) (rule FileRule, matched bool, mode Mode, deny bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	g, ok := p.groups[cgroupID]
	if !ok {
		return FileRule{}, false, 0, false
	}
	if !p.onDevice(cgroupID, dev) {
		return FileRule{}, false, g.mode, false
	}
	for r := range p.fileRules(cgroupID, g) {
		if (change || r.Block) && r.covers(path) {
			return r, true, g.mode, !change && g.mode == ModeProtect
		}
	}
	return FileRule{}, false, g.mode, false
}

// FileOwner returns a group with a file rule covering path, a file on
// device dev (the one with the lowest cgroup id when several do). A
// group whose rules are watched on other devices (SetFileDevices) does
// not own the file, so that a change in one container is not put on
// another with the same path.
func (p *Policy) FileOwner(dev uint64, path string) (uint64, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var best uint64
	found := false
	for id, g := range p.groups {
		if !p.onDevice(id, dev) {
			continue
		}
		for r := range p.fileRules(id, g) {
			if r.covers(path) && (!found || id < best) {
				best, found = id, true
			}
		}
	}
	return best, found
}

func cloneFiles(fs []FileRule) []FileRule {
	if fs == nil {
		return nil
	}
	out := make([]FileRule, len(fs))
	for i, f := range fs {
		f.Apps = append([]string(nil), f.Apps...)
		out[i] = f
	}
	return out
}
