package compile

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// Reserved identities. Dynamic identities are at least FirstDynamicID.
const (
	// IDUnknown is no identity: an address the table does not know.
	IDUnknown uint32 = 0
	// IDNodes is the reserved group "nodes": the cluster's hosts.
	IDNodes uint32 = 1
	// IDExternal is the reserved group "external": any address that is not
	// a workload, a node, or in an address group.
	IDExternal uint32 = 2
	// IDUngrouped is a workload that is a member of no group.
	IDUngrouped uint32 = 3
	// FirstDynamicID is the lowest identity given to a set of groups.
	FirstDynamicID uint32 = 256
)

// Identity is one set of groups.
type Identity struct {
	ID     uint32   `json:"id"`
	Groups []string `json:"groups"`
}

// Endpoint maps an address prefix to an identity. Lookups use the longest
// matching prefix; 0.0.0.0/0 and ::/0 are always present.
type Endpoint struct {
	Prefix netip.Prefix `json:"prefix"`
	ID     uint32       `json:"id"`
}

// FQDN maps a domain-name pattern ("*.example.com") of an address group to
// its identity; the datapath maps addresses it sees resolved for the name.
type FQDN struct {
	Pattern string `json:"pattern"`
	ID      uint32 `json:"id"`
}

// Verdict is one entry of the policy map. Proto 0 is any protocol and is
// consulted only when no entry of the packet's protocol matches; PortLo and
// PortHi 0,0 is every port. App, when set, applies once the flow's L7
// protocol is detected and overrides the entry without App.
type Verdict struct {
	SrcID  uint32        `json:"src"`
	DstID  uint32        `json:"dst"`
	Proto  uint8         `json:"proto"`
	PortLo uint16        `json:"portLo"`
	PortHi uint16        `json:"portHi"`
	App    string        `json:"app,omitempty"`
	Action policy.Action `json:"action"`
	RuleID uint32        `json:"rule"`
}

// VerdictKey identifies a verdict entry.
type VerdictKey struct {
	SrcID  uint32 `json:"src"`
	DstID  uint32 `json:"dst"`
	Proto  uint8  `json:"proto"`
	PortLo uint16 `json:"portLo"`
	PortHi uint16 `json:"portHi"`
	App    string `json:"app,omitempty"`
}

// Key returns the verdict's key.
func (v Verdict) Key() VerdictKey {
	return VerdictKey{v.SrcID, v.DstID, v.Proto, v.PortLo, v.PortHi, v.App}
}

// Profile is what an identity's workloads run under: modes and the process
// and file rules of all its groups.
type Profile struct {
	ID          uint32          `json:"id"`
	NetworkMode policy.Mode     `json:"networkMode"`
	ProcessMode policy.Mode     `json:"processMode"`
	Baseline    policy.Baseline `json:"baseline"`
	Processes   []ProcessEntry  `json:"processes,omitempty"`
	Files       []FileEntry     `json:"files,omitempty"`
}

// ProcessEntry is one process rule, in precedence order within a profile.
type ProcessEntry struct {
	Process string        `json:"process"`
	Path    string        `json:"path"`
	Action  policy.Action `json:"action"`
	RuleID  uint32        `json:"rule"`
}

// FileEntry is one file rule.
type FileEntry struct {
	Filter       string              `json:"filter"`
	Recursive    bool                `json:"recursive,omitempty"`
	Behavior     policy.FileBehavior `json:"behavior"`
	Applications []string            `json:"applications,omitempty"`
	RuleID       uint32              `json:"rule"`
}

// WorkloadIdentity says which identity a workload has.
type WorkloadIdentity struct {
	Workload string `json:"workload"`
	Node     string `json:"node,omitempty"`
	ID       uint32 `json:"id"`
}

// RuleName maps a rule id back to the rule.
type RuleName struct {
	ID   uint32      `json:"id"`
	Kind policy.Kind `json:"kind"`
	Name string      `json:"name"`
}

// Table is a compiled policy: cluster-wide when Node is empty, otherwise
// what one node's agent enforces (verdicts, profiles and workloads of the
// identities running there, and every identity, endpoint and FQDN). Every
// list is sorted.
type Table struct {
	Node       string             `json:"node,omitempty"`
	Identities []Identity         `json:"identities"`
	Endpoints  []Endpoint         `json:"endpoints"`
	FQDNs      []FQDN             `json:"fqdns,omitempty"`
	Verdicts   []Verdict          `json:"verdicts"`
	Profiles   []Profile          `json:"profiles"`
	Workloads  []WorkloadIdentity `json:"workloads"`
	Rules      []RuleName         `json:"rules,omitempty"`
}

func compareVerdictKey(a, b VerdictKey) int {
	return cmp.Or(cmp.Compare(a.SrcID, b.SrcID), cmp.Compare(a.DstID, b.DstID),
		strings.Compare(a.App, b.App), cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.PortLo, b.PortLo), cmp.Compare(a.PortHi, b.PortHi))
}

func compareVerdict(a, b Verdict) int { return compareVerdictKey(a.Key(), b.Key()) }

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// sort puts every list of t in its canonical order, empty lists non-nil.
func (t *Table) sort() {
	t.Identities = nonNil(t.Identities)
	t.Endpoints = nonNil(t.Endpoints)
	t.FQDNs = nonNil(t.FQDNs)
	t.Verdicts = nonNil(t.Verdicts)
	t.Profiles = nonNil(t.Profiles)
	t.Workloads = nonNil(t.Workloads)
	t.Rules = nonNil(t.Rules)
	slices.SortFunc(t.Identities, func(a, b Identity) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(t.Endpoints, func(a, b Endpoint) int { return comparePrefix(a.Prefix, b.Prefix) })
	slices.SortFunc(t.FQDNs, func(a, b FQDN) int { return strings.Compare(a.Pattern, b.Pattern) })
	slices.SortFunc(t.Verdicts, compareVerdict)
	slices.SortFunc(t.Profiles, func(a, b Profile) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(t.Workloads, func(a, b WorkloadIdentity) int { return strings.Compare(a.Workload, b.Workload) })
	slices.SortFunc(t.Rules, func(a, b RuleName) int { return cmp.Compare(a.ID, b.ID) })
}

// ForNode returns the part of a cluster-wide table one node enforces:
// verdicts with a source or destination identity that has a workload on the
// node, the profiles and workloads of that node, and every identity,
// endpoint and FQDN. Rule names stay with the controller.
func (t *Table) ForNode(node string) *Table {
	local := map[uint32]bool{}
	out := &Table{Node: node,
		Identities: slices.Clone(t.Identities),
		Endpoints:  slices.Clone(t.Endpoints),
		FQDNs:      slices.Clone(t.FQDNs),
	}
	for _, w := range t.Workloads {
		if w.Node == node {
			local[w.ID] = true
			out.Workloads = append(out.Workloads, w)
		}
	}
	for _, v := range t.Verdicts {
		if local[v.SrcID] || local[v.DstID] {
			out.Verdicts = append(out.Verdicts, v)
		}
	}
	for _, p := range t.Profiles {
		if local[p.ID] {
			out.Profiles = append(out.Profiles, p)
		}
	}
	out.sort()
	return out
}

// RuleID returns the id of a named rule in t, if present.
func (t *Table) RuleID(kind policy.Kind, name string) (uint32, bool) {
	for _, r := range t.Rules {
		if r.Kind == kind && r.Name == name {
			return r.ID, true
		}
	}
	return 0, false
}

// IdentityOf returns the identity a workload has in t.
func (t *Table) IdentityOf(workload string) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(t.Workloads, workload, func(w WorkloadIdentity, id string) int { return strings.Compare(w.Workload, id) })
	if !ok {
		return 0, false
	}
	return t.Workloads[i].ID, true
}

// Lookup finds the verdict a table gives a packet, as the datapath does:
// the App entry first when app is known, then the packet's protocol, then
// protocol 0. ok is false when no entry matches.
func (t *Table) Lookup(src, dst uint32, proto uint8, port uint16, app string) (Verdict, bool) {
	find := func(app string, proto uint8) (Verdict, bool) {
		for _, v := range t.Verdicts {
			if v.SrcID != src || v.DstID != dst || v.App != app || v.Proto != proto {
				continue
			}
			if (v.PortLo == 0 && v.PortHi == 0) || (port >= v.PortLo && port <= v.PortHi) {
				return v, true
			}
		}
		return Verdict{}, false
	}
	if app != "" {
		if v, ok := find(app, proto); ok {
			return v, true
		}
		if v, ok := find(app, policy.ProtoAny); ok {
			return v, true
		}
	}
	if v, ok := find("", proto); ok {
		return v, true
	}
	return find("", policy.ProtoAny)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
