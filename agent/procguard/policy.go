package procguard

import (
	"fmt"
	"sort"
	"sync"
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
}

// Policy holds the groups. It is safe for concurrent use.
type Policy struct {
	mu     sync.RWMutex
	groups map[uint64]*group
}

// NewPolicy returns an empty policy: every exec is unguarded.
func NewPolicy() *Policy { return &Policy{groups: map[uint64]*group{}} }

// Set adds or replaces a group.
func (p *Policy) Set(g Group) error {
	if g.CgroupID == 0 {
		return fmt.Errorf("procguard: group %q: cgroup id 0", g.Name)
	}
	if g.Mode > ModeProtect {
		return fmt.Errorf("procguard: group %q: unknown mode %d", g.Name, g.Mode)
	}
	ng := &group{name: g.Name, mode: g.Mode, allowed: map[string]bool{}}
	for _, a := range g.Allowed {
		ng.allowed[a] = true
	}
	p.mu.Lock()
	p.groups[g.CgroupID] = ng
	p.mu.Unlock()
	return nil
}

// Remove forgets a group.
func (p *Policy) Remove(cgroupID uint64) {
	p.mu.Lock()
	delete(p.groups, cgroupID)
	p.mu.Unlock()
}

// Group returns a group with its current (possibly learned) profile.
func (p *Policy) Group(cgroupID uint64) (Group, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	g, ok := p.groups[cgroupID]
	if !ok {
		return Group{}, false
	}
	out := Group{Name: g.name, CgroupID: cgroupID, Mode: g.mode}
	for a := range g.allowed {
		out.Allowed = append(out.Allowed, a)
	}
	sort.Strings(out.Allowed)
	return out, true
}

// Check decides an exec of path in cgroupID. In Discover the path joins the
// profile. deny is true only for a violation in Protect.
func (p *Policy) Check(cgroupID uint64, path string) (v Verdict, mode Mode, deny bool) {
	p.mu.RLock()
	g, ok := p.groups[cgroupID]
	if !ok {
		p.mu.RUnlock()
		return Unguarded, 0, false
	}
	known := g.allowed[path]
	mode = g.mode
	p.mu.RUnlock()
	switch {
	case known:
		return Allowed, mode, false
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
