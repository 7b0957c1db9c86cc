package policystore

import (
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// GroupInfo is one group as the API lists it.
type GroupInfo struct {
	Name        string        `json:"name"`
	Source      policy.Source `json:"source"`
	Revision    uint64        `json:"revision,omitempty"`
	Comment     string        `json:"comment,omitempty"`
	Criteria    []string      `json:"criteria"`
	NetworkMode policy.Mode   `json:"networkMode"`
	ProcessMode policy.Mode   `json:"processMode"`
	Baseline    string        `json:"baseline,omitempty"`
	// NetworkModeSet and ProcessModeSet are true when a mode setting
	// (palisade mode set), not a document, decides that mode.
	NetworkModeSet bool `json:"networkModeSet,omitempty"`
	ProcessModeSet bool `json:"processModeSet,omitempty"`
	// Members is how many workloads the group selects, when known.
	Members *int `json:"members,omitempty"`
}

// RuleInfo is one rule as the API lists it: a network rule, or (Kind
// processRule) a process rule.
type RuleInfo struct {
	// Order is the rule's position in precedence order among the rules of
	// its kind, from 1.
	Order int `json:"order"`
	// Kind is empty for a network rule and processRule for a process rule.
	Kind         policy.Kind   `json:"kind,omitempty"`
	Name         string        `json:"name"`
	Source       policy.Source `json:"source"`
	Revision     uint64        `json:"revision,omitempty"`
	From         string        `json:"from"`
	To           string        `json:"to"`
	Ports        string        `json:"ports"`
	Applications []string      `json:"applications,omitempty"`
	Action       policy.Action `json:"action"`
	Disabled     bool          `json:"disabled,omitempty"`
	Comment      string        `json:"comment,omitempty"`
	// Group, Process and Path are a process rule's.
	Group   string `json:"group,omitempty"`
	Process string `json:"process,omitempty"`
	Path    string `json:"path,omitempty"`
}

// Filter selects objects of a listing.
type Filter struct {
	// Source keeps objects of one source; empty keeps all.
	Source policy.Source
	// Group keeps groups of that name, and rules from or to it.
	Group string
	// Learned keeps learned rules in a rule listing (Source learned does
	// too).
	Learned bool
}

// Groups lists the effective groups sorted by source precedence, then
// name.
func (v *View) Groups(f Filter) []GroupInfo {
	out := []GroupInfo{}
	for i := range v.Set.Groups {
		g := &v.Set.Groups[i]
		if (f.Source != "" && g.Source != f.Source) || (f.Group != "" && g.Name != f.Group) {
			continue
		}
		nm, pm := v.Set.GroupModes(g)
		gi := GroupInfo{Name: g.Name, Source: g.Source, Revision: g.Revision, Comment: g.Comment, Criteria: []string{},
			NetworkMode: nm, ProcessMode: pm, Baseline: string(g.Baseline)}
		for _, c := range g.Criteria {
			gi.Criteria = append(gi.Criteria, c.String())
		}
		if ov, ok := v.overrides[g.Name]; ok && g.Source != policy.SourceFederated {
			gi.NetworkModeSet, gi.ProcessModeSet = ov.NetworkMode != "", ov.ProcessMode != ""
		}
		out = append(out, gi)
	}
	slices.SortFunc(out, func(a, b GroupInfo) int {
		if d := a.Source.Rank() - b.Source.Rank(); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// Rules lists the effective network rules in precedence order (disabled
// rules where they would be if enabled), then the process rules in
// precedence order within each group.
func (v *View) Rules(f Filter) []RuleInfo {
	rs := make([]*policy.NetworkRule, 0, len(v.Set.NetworkRules))
	for i := range v.Set.NetworkRules {
		rs = append(rs, &v.Set.NetworkRules[i])
	}
	slices.SortStableFunc(rs, policy.CompareNetworkRules)
	out := []RuleInfo{}
	for i, r := range rs {
		if !f.Learned && f.Source != policy.SourceLearned && r.Source == policy.SourceLearned {
			continue
		}
		if (f.Source != "" && r.Source != f.Source) || (f.Group != "" && r.From != f.Group && r.To != f.Group) {
			continue
		}
		ports := r.Ports
		if ports == "" {
			ports = "any"
		}
		out = append(out, RuleInfo{Order: i + 1, Name: r.Name, Source: r.Source, Revision: r.Revision, From: r.From, To: r.To,
			Ports: ports, Applications: r.Applications, Action: r.Action, Disabled: r.Disabled, Comment: r.Comment})
	}
	ps := make([]*policy.ProcessRule, 0, len(v.Set.ProcessRules))
	for i := range v.Set.ProcessRules {
		ps = append(ps, &v.Set.ProcessRules[i])
	}
	slices.SortStableFunc(ps, func(a, b *policy.ProcessRule) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return policy.CompareProcessRules(a, b)
	})
	order := 0
	for i, r := range ps {
		if i == 0 || ps[i-1].Group != r.Group {
			order = 0
		}
		order++
		if !f.Learned && f.Source != policy.SourceLearned && r.Source == policy.SourceLearned {
			continue
		}
		if (f.Source != "" && r.Source != f.Source) || (f.Group != "" && r.Group != f.Group) {
			continue
		}
		out = append(out, RuleInfo{Order: order, Kind: policy.KindProcessRule, Name: r.Name, Source: r.Source, Revision: r.Revision,
			Group: r.Group, Process: r.Process, Path: r.Path, Action: r.Action, Comment: r.Comment})
	}
	return out
}
