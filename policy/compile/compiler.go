package compile

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// ErrBadInput is returned for a workload, node or policy object the
// compiler cannot use.
var ErrBadInput = errors.New("compile: bad input")

// Input is everything a compile needs.
type Input struct {
	// Policy is the cluster's policy. Only groups, network, process and
	// file rules and the default modes matter here.
	Policy *policy.Set
	// Workloads are the cluster's workloads.
	Workloads []policy.Workload
	// Nodes are the cluster's hosts; their addresses map to [IDNodes].
	Nodes []Node
	// Previous, when set, is a table whose identity and rule ids are kept
	// for the same groups and rules where no collision forbids it.
	Previous *Table
}

// Node is one host of the cluster.
type Node struct {
	Name      string       `json:"name"`
	Addresses []netip.Addr `json:"addresses,omitempty"`
}

// Compile compiles a whole input into a cluster-wide table; use
// [Table.ForNode] for a node's share. The output depends only on the
// input's content, not on the order of its lists.
func Compile(in Input) (*Table, error) {
	c := NewCompiler()
	if in.Previous != nil {
		c.prefer(in.Previous)
	}
	if _, err := c.Load(in); err != nil {
		return nil, err
	}
	return c.Table(), nil
}

type groupPair struct{ from, to string }

type pairKey struct{ src, dst uint32 }

type groupState struct {
	g   policy.Group
	sel *policy.Selector
}

type netRule struct {
	r     policy.NetworkRule
	ports []policy.PortRange
	apps  []string
}

type workloadState struct {
	w      policy.Workload
	groups []string
	ident  *identity // nil until the first flush
	node   string    // node of the last flush
	addrs  []netip.Prefix
	gone   bool
}

// identity is one set of groups and what refers to it.
type identity struct {
	id       uint32
	key      string
	groups   []string
	refs     int            // workloads, address prefixes and fqdns using it
	nodes    map[string]int // workloads per node
	reserved bool           // never released
	address  bool           // an address (external) identity: no profile
}

// Compiler compiles policy incrementally. Each method applies one change
// and returns the resulting [Delta]. A Compiler is not safe for concurrent
// use; callers serialise their calls.
type Compiler struct {
	defaults  policy.Defaults
	groups    map[string]*groupState
	netRules  map[string]*netRule
	procRules map[string]*policy.ProcessRule
	fileRules map[string]*policy.FileRule

	byPair      map[groupPair][]*netRule
	byGroup     map[string]map[string]*netRule // group -> rules naming it
	procByGroup map[string]map[string]*policy.ProcessRule
	fileByGroup map[string]map[string]*policy.FileRule

	workloads map[string]*workloadState
	nodes     map[string]Node

	idents      map[string]*identity
	byID        map[uint32]*identity
	groupIdents map[string]map[uint32]*identity
	identIDs    *allocator
	ruleIDs     *allocator

	pairs    map[pairKey][]Verdict
	bySrc    map[uint32]map[uint32]struct{}
	byDst    map[uint32]map[uint32]struct{}
	profiles map[uint32]Profile

	claims    map[netip.Prefix]map[string]uint32 // host prefix -> claimant -> id
	addrKeys  map[netip.Prefix]*identity         // address-group prefixes
	fqdnKeys  map[string]*identity
	endpoints map[netip.Prefix]uint32
	fqdns     map[string]uint32

	f *flush
}

// NewCompiler returns an empty compiler: no policy, no workloads.
func NewCompiler() *Compiler {
	c := &Compiler{
		groups: map[string]*groupState{}, netRules: map[string]*netRule{},
		procRules: map[string]*policy.ProcessRule{}, fileRules: map[string]*policy.FileRule{},
		byPair: map[groupPair][]*netRule{}, byGroup: map[string]map[string]*netRule{},
		procByGroup: map[string]map[string]*policy.ProcessRule{}, fileByGroup: map[string]map[string]*policy.FileRule{},
		workloads: map[string]*workloadState{}, nodes: map[string]Node{},
		idents: map[string]*identity{}, byID: map[uint32]*identity{}, groupIdents: map[string]map[uint32]*identity{},
		identIDs: newAllocator(FirstDynamicID), ruleIDs: newAllocator(1),
		pairs: map[pairKey][]Verdict{}, bySrc: map[uint32]map[uint32]struct{}{}, byDst: map[uint32]map[uint32]struct{}{},
		profiles: map[uint32]Profile{},
		claims:   map[netip.Prefix]map[string]uint32{}, addrKeys: map[netip.Prefix]*identity{},
		fqdnKeys: map[string]*identity{}, endpoints: map[netip.Prefix]uint32{}, fqdns: map[string]uint32{},
	}
	for _, r := range []struct {
		id     uint32
		groups []string
	}{{IDNodes, []string{policy.GroupNodes}}, {IDExternal, []string{policy.GroupExternal}}, {IDUngrouped, []string{}}} {
		id := &identity{id: r.id, key: identityKey(r.groups), groups: r.groups, reserved: true, nodes: map[string]int{}, address: r.id != IDUngrouped}
		c.idents[id.key] = id
		c.byID[id.id] = id
		for _, g := range r.groups {
			c.groupIdents[g] = map[uint32]*identity{id.id: id}
		}
	}
	c.endpoints[netip.MustParsePrefix("0.0.0.0/0")] = IDExternal
	c.endpoints[netip.MustParsePrefix("::/0")] = IDExternal
	c.profiles[IDUngrouped] = c.profile(c.byID[IDUngrouped])
	return c
}

// prefer seeds the allocators with the ids of a previous table.
func (c *Compiler) prefer(t *Table) {
	c.identIDs.preferred = map[string]uint32{}
	for _, id := range t.Identities {
		c.identIDs.preferred[identityKey(id.Groups)] = id.ID
	}
	c.ruleIDs.preferred = map[string]uint32{}
	for _, r := range t.Rules {
		c.ruleIDs.preferred[ruleKey(r.Kind, r.Name)] = r.ID
	}
}

func identityKey(groups []string) string { return strings.Join(groups, "\n") }

func ruleKey(k policy.Kind, name string) string { return string(k) + "\x00" + name }

// Load replaces the compiler's whole input and returns the change.
func (c *Compiler) Load(in Input) (*Delta, error) {
	if in.Policy == nil {
		in.Policy = &policy.Set{}
	}
	if err := in.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	ws := map[string]bool{}
	for i := range in.Workloads {
		if err := checkWorkload(&in.Workloads[i]); err != nil {
			return nil, err
		}
		if ws[in.Workloads[i].ID] {
			return nil, fmt.Errorf("%w: workload %q listed twice", ErrBadInput, in.Workloads[i].ID)
		}
		ws[in.Workloads[i].ID] = true
	}
	ns := map[string]bool{}
	for _, n := range in.Nodes {
		if n.Name == "" || ns[n.Name] {
			return nil, fmt.Errorf("%w: node %q is unnamed or listed twice", ErrBadInput, n.Name)
		}
		ns[n.Name] = true
	}
	c.begin()
	c.setPolicy(in.Policy)
	for id := range c.workloads {
		if !ws[id] {
			c.deleteWorkload(id)
		}
	}
	for i := range in.Workloads {
		c.upsertWorkload(in.Workloads[i])
	}
	for name := range c.nodes {
		if !ns[name] {
			c.deleteNode(name)
		}
	}
	for _, n := range in.Nodes {
		c.upsertNode(n)
	}
	return c.finish(), nil
}

// SetPolicy replaces the policy, recomputing only what changed objects touch.
func (c *Compiler) SetPolicy(p *policy.Set) (*Delta, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	c.begin()
	c.setPolicy(p)
	return c.finish(), nil
}

func (c *Compiler) setPolicy(p *policy.Set) {
	c.setDefaults(p.Defaults)
	keep := map[string]bool{}
	for _, g := range p.Groups {
		keep[g.Name] = true
		_ = c.setGroup(g) // validated
	}
	for name := range c.groups {
		if !keep[name] {
			c.deleteGroup(name)
		}
	}
	clear(keep)
	for _, r := range p.NetworkRules {
		keep[r.Name] = true
		_ = c.setNetworkRule(r)
	}
	for name := range c.netRules {
		if !keep[name] {
			c.deleteNetworkRule(name)
		}
	}
	clear(keep)
	for _, r := range p.ProcessRules {
		keep[r.Name] = true
		c.setProcessRule(r)
	}
	for name := range c.procRules {
		if !keep[name] {
			c.deleteProcessRule(name)
		}
	}
	clear(keep)
	for _, r := range p.FileRules {
		keep[r.Name] = true
		c.setFileRule(r)
	}
	for name := range c.fileRules {
		if !keep[name] {
			c.deleteFileRule(name)
		}
	}
}

// SetDefaults changes the default modes.
func (c *Compiler) SetDefaults(d policy.Defaults) *Delta {
	c.begin()
	c.setDefaults(d)
	return c.finish()
}

// UpsertGroup adds or changes a group.
func (c *Compiler) UpsertGroup(g policy.Group) (*Delta, error) {
	if err := policy.CheckName(g.Name); err != nil || policy.IsReservedGroup(g.Name) {
		return nil, fmt.Errorf("%w: group %q: bad or reserved name", ErrBadInput, g.Name)
	}
	if _, err := policy.CompileSelector(g.Criteria); err != nil {
		return nil, fmt.Errorf("%w: group %q: %w", ErrBadInput, g.Name, err)
	}
	c.begin()
	_ = c.setGroup(g)
	return c.finish(), nil
}

// DeleteGroup removes a group; rules naming it then match nothing.
func (c *Compiler) DeleteGroup(name string) *Delta {
	c.begin()
	c.deleteGroup(name)
	return c.finish()
}

// UpsertNetworkRule adds or changes a network rule.
func (c *Compiler) UpsertNetworkRule(r policy.NetworkRule) (*Delta, error) {
	if err := policy.CheckName(r.Name); err != nil {
		return nil, fmt.Errorf("%w: network rule: %w", ErrBadInput, err)
	}
	if _, err := parseRule(r); err != nil {
		return nil, err
	}
	c.begin()
	_ = c.setNetworkRule(r)
	return c.finish(), nil
}

// DeleteNetworkRule removes a network rule.
func (c *Compiler) DeleteNetworkRule(name string) *Delta {
	c.begin()
	c.deleteNetworkRule(name)
	return c.finish()
}

// UpsertProcessRule adds or changes a process rule.
func (c *Compiler) UpsertProcessRule(r policy.ProcessRule) *Delta {
	c.begin()
	c.setProcessRule(r)
	return c.finish()
}

// DeleteProcessRule removes a process rule.
func (c *Compiler) DeleteProcessRule(name string) *Delta {
	c.begin()
	c.deleteProcessRule(name)
	return c.finish()
}

// UpsertFileRule adds or changes a file rule.
func (c *Compiler) UpsertFileRule(r policy.FileRule) *Delta {
	c.begin()
	c.setFileRule(r)
	return c.finish()
}

// DeleteFileRule removes a file rule.
func (c *Compiler) DeleteFileRule(name string) *Delta {
	c.begin()
	c.deleteFileRule(name)
	return c.finish()
}

// UpsertWorkload adds or changes a workload.
func (c *Compiler) UpsertWorkload(w policy.Workload) (*Delta, error) {
	if err := checkWorkload(&w); err != nil {
		return nil, err
	}
	c.begin()
	c.upsertWorkload(w)
	return c.finish(), nil
}

// DeleteWorkload removes a workload.
func (c *Compiler) DeleteWorkload(id string) *Delta {
	c.begin()
	c.deleteWorkload(id)
	return c.finish()
}

// UpsertNode adds or changes a node.
func (c *Compiler) UpsertNode(n Node) (*Delta, error) {
	if n.Name == "" {
		return nil, fmt.Errorf("%w: node without a name", ErrBadInput)
	}
	c.begin()
	c.upsertNode(n)
	return c.finish(), nil
}

// DeleteNode removes a node.
func (c *Compiler) DeleteNode(name string) *Delta {
	c.begin()
	c.deleteNode(name)
	return c.finish()
}

func checkWorkload(w *policy.Workload) error {
	if w.ID == "" {
		return fmt.Errorf("%w: workload without an id", ErrBadInput)
	}
	return nil
}

func parseRule(r policy.NetworkRule) (*netRule, error) {
	ports, err := policy.ParsePorts(r.Ports)
	if err != nil {
		return nil, fmt.Errorf("%w: network rule %q: ports: %w", ErrBadInput, r.Name, err)
	}
	var apps []string
	for _, a := range r.Applications {
		ca, ok := policy.CanonicalApplication(a)
		if !ok {
			return nil, fmt.Errorf("%w: network rule %q: unknown application %q", ErrBadInput, r.Name, a)
		}
		apps = append(apps, ca)
	}
	slices.Sort(apps)
	r.Applications = slices.Clone(r.Applications)
	return &netRule{r: r, ports: ports, apps: slices.Compact(apps)}, nil
}

// --- mutations; each runs between begin and finish ---

func (c *Compiler) setDefaults(d policy.Defaults) {
	if d == c.defaults {
		return
	}
	c.defaults = d
	for id := range c.byID {
		c.f.profiles[id] = struct{}{}
	}
}

func (c *Compiler) setGroup(g policy.Group) error {
	sel, err := policy.CompileSelector(g.Criteria)
	if err != nil {
		return err
	}
	g.Criteria = slices.Clone(g.Criteria)
	old := c.groups[g.Name]
	if old != nil && reflect.DeepEqual(old.g, g) {
		return nil
	}
	c.groups[g.Name] = &groupState{g: g, sel: sel}
	if old == nil || !reflect.DeepEqual(old.g.Criteria, g.Criteria) {
		if sel.IsAddress() || (old != nil && old.sel.IsAddress()) {
			c.f.addr = true
		}
		for id, ws := range c.workloads {
			if ws.gone {
				continue
			}
			in := sel.MatchWorkload(&ws.w)
			if in != slices.Contains(ws.groups, g.Name) {
				ws.groups = toggle(ws.groups, g.Name, in)
				c.f.workloads[id] = struct{}{}
			}
		}
	}
	for id := range c.groupIdents[g.Name] {
		c.f.profiles[id] = struct{}{}
	}
	return nil
}

// toggle adds or removes name in a sorted list.
func toggle(list []string, name string, in bool) []string {
	i, found := slices.BinarySearch(list, name)
	switch {
	case in && !found:
		return slices.Insert(slices.Clone(list), i, name)
	case !in && found:
		return slices.Delete(slices.Clone(list), i, i+1)
	}
	return list
}

func (c *Compiler) deleteGroup(name string) {
	old, ok := c.groups[name]
	if !ok {
		return
	}
	delete(c.groups, name)
	if old.sel.IsAddress() {
		c.f.addr = true
	}
	for id, ws := range c.workloads {
		if slices.Contains(ws.groups, name) {
			ws.groups = toggle(ws.groups, name, false)
			c.f.workloads[id] = struct{}{}
		}
	}
}

func (c *Compiler) touchRulePairs(from, to string) {
	for sid := range c.groupIdents[from] {
		for did := range c.groupIdents[to] {
			c.f.touch(c, pairKey{sid, did})
		}
	}
}

func (c *Compiler) setNetworkRule(r policy.NetworkRule) error {
	nr, err := parseRule(r)
	if err != nil {
		return err
	}
	if old := c.netRules[r.Name]; old != nil {
		if reflect.DeepEqual(old.r, r) {
			return nil
		}
		c.unindexRule(old)
	}
	delete(c.f.goneRules, ruleKey(policy.KindNetworkRule, r.Name))
	c.f.newRules[ruleKey(policy.KindNetworkRule, r.Name)] = RuleName{Kind: policy.KindNetworkRule, Name: r.Name}
	c.netRules[r.Name] = nr
	if nr.r.Disabled {
		return nil
	}
	p := groupPair{r.From, r.To}
	c.byPair[p] = append(c.byPair[p], nr)
	for _, g := range []string{r.From, r.To} {
		if c.byGroup[g] == nil {
			c.byGroup[g] = map[string]*netRule{}
		}
		c.byGroup[g][r.Name] = nr
	}
	c.touchRulePairs(r.From, r.To)
	return nil
}

func (c *Compiler) unindexRule(old *netRule) {
	if old.r.Disabled {
		return
	}
	p := groupPair{old.r.From, old.r.To}
	c.byPair[p] = slices.DeleteFunc(c.byPair[p], func(x *netRule) bool { return x == old })
	if len(c.byPair[p]) == 0 {
		delete(c.byPair, p)
	}
	for _, g := range []string{old.r.From, old.r.To} {
		delete(c.byGroup[g], old.r.Name)
		if len(c.byGroup[g]) == 0 {
			delete(c.byGroup, g)
		}
	}
	c.touchRulePairs(old.r.From, old.r.To)
}

func (c *Compiler) deleteNetworkRule(name string) {
	old := c.netRules[name]
	if old == nil {
		return
	}
	c.unindexRule(old)
	delete(c.netRules, name)
	c.f.goneRules[ruleKey(policy.KindNetworkRule, name)] = struct{}{}
}

func (c *Compiler) markGroupProfiles(group string) {
	for id := range c.groupIdents[group] {
		c.f.profiles[id] = struct{}{}
	}
}

func (c *Compiler) setProcessRule(r policy.ProcessRule) {
	if old := c.procRules[r.Name]; old != nil {
		if *old == r {
			return
		}
		c.deleteProcessRule(r.Name)
	}
	delete(c.f.goneRules, ruleKey(policy.KindProcessRule, r.Name))
	c.f.newRules[ruleKey(policy.KindProcessRule, r.Name)] = RuleName{Kind: policy.KindProcessRule, Name: r.Name}
	c.procRules[r.Name] = &r
	if c.procByGroup[r.Group] == nil {
		c.procByGroup[r.Group] = map[string]*policy.ProcessRule{}
	}
	c.procByGroup[r.Group][r.Name] = &r
	c.markGroupProfiles(r.Group)
}

func (c *Compiler) deleteProcessRule(name string) {
	old := c.procRules[name]
	if old == nil {
		return
	}
	delete(c.procRules, name)
	delete(c.procByGroup[old.Group], name)
	c.markGroupProfiles(old.Group)
	c.f.goneRules[ruleKey(policy.KindProcessRule, name)] = struct{}{}
}

func (c *Compiler) setFileRule(r policy.FileRule) {
	if old := c.fileRules[r.Name]; old != nil {
		if reflect.DeepEqual(*old, r) {
			return
		}
		c.deleteFileRule(r.Name)
	}
	r.Applications = slices.Clone(r.Applications)
	delete(c.f.goneRules, ruleKey(policy.KindFileRule, r.Name))
	c.f.newRules[ruleKey(policy.KindFileRule, r.Name)] = RuleName{Kind: policy.KindFileRule, Name: r.Name}
	c.fileRules[r.Name] = &r
	if c.fileByGroup[r.Group] == nil {
		c.fileByGroup[r.Group] = map[string]*policy.FileRule{}
	}
	c.fileByGroup[r.Group][r.Name] = &r
	c.markGroupProfiles(r.Group)
}

func (c *Compiler) deleteFileRule(name string) {
	old := c.fileRules[name]
	if old == nil {
		return
	}
	delete(c.fileRules, name)
	delete(c.fileByGroup[old.Group], name)
	c.markGroupProfiles(old.Group)
	c.f.goneRules[ruleKey(policy.KindFileRule, name)] = struct{}{}
}

func (c *Compiler) upsertWorkload(w policy.Workload) {
	ws := c.workloads[w.ID]
	if ws != nil && !ws.gone && reflect.DeepEqual(ws.w, w) {
		return
	}
	if ws == nil {
		ws = &workloadState{}
		c.workloads[w.ID] = ws
	}
	ws.w, ws.gone = w, false
	ws.groups = ws.groups[:0:0]
	for name, gs := range c.groups {
		if gs.sel.MatchWorkload(&w) {
			ws.groups = append(ws.groups, name)
		}
	}
	slices.Sort(ws.groups)
	c.f.workloads[w.ID] = struct{}{}
}

func (c *Compiler) deleteWorkload(id string) {
	if ws := c.workloads[id]; ws != nil {
		ws.gone = true
		c.f.workloads[id] = struct{}{}
	}
}

func nodeClaimant(name string) string { return "0node/" + name }

func hostPrefixes(addrs []netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		if a.IsValid() {
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func (c *Compiler) upsertNode(n Node) {
	c.deleteNode(n.Name)
	c.nodes[n.Name] = n
	for _, p := range hostPrefixes(n.Addresses) {
		c.claim(p, nodeClaimant(n.Name), IDNodes)
	}
}

func (c *Compiler) deleteNode(name string) {
	n, ok := c.nodes[name]
	if !ok {
		return
	}
	delete(c.nodes, name)
	for _, p := range hostPrefixes(n.Addresses) {
		c.unclaim(p, nodeClaimant(name))
	}
}

func (c *Compiler) claim(p netip.Prefix, who string, id uint32) {
	if c.claims[p] == nil {
		c.claims[p] = map[string]uint32{}
	}
	c.claims[p][who] = id
	c.f.endpoints[p] = struct{}{}
}

func (c *Compiler) unclaim(p netip.Prefix, who string) {
	delete(c.claims[p], who)
	if len(c.claims[p]) == 0 {
		delete(c.claims, p)
	}
	c.f.endpoints[p] = struct{}{}
}
