package compile

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// Delta is what one change did: the change to the cluster-wide table, and
// what each node's agent must apply to its own table.
type Delta struct {
	// Cluster is the change to the cluster-wide table ([Compiler.Table]).
	Cluster TableDiff
	shared  TableDiff
	local   map[string]*TableDiff
}

// ForNode returns the change to one node's table ([Compiler.NodeTable]).
func (d *Delta) ForNode(node string) TableDiff {
	out := TableDiff{}
	out.merge(&d.shared)
	if l := d.local[node]; l != nil {
		out.merge(l)
	}
	return out
}

// Shared reports whether the change touches what every node holds
// (identities, endpoints, FQDNs); if not, only [Delta.Nodes] need it.
func (d *Delta) Shared() bool { return !d.shared.Empty() }

// Nodes lists, sorted, the nodes with a change of their own.
func (d *Delta) Nodes() []string {
	out := make([]string, 0, len(d.local))
	for n := range d.local {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// flush collects what one change touched.
type flush struct {
	workloads map[string]struct{}
	profiles  map[uint32]struct{}
	endpoints map[netip.Prefix]struct{}
	addr      bool
	newRules  map[string]RuleName
	goneRules map[string]struct{}

	pairs       map[pairKey][]Verdict // touched pairs and their verdicts before
	recompute   map[pairKey]struct{}  // touched pairs whose verdicts may change
	oldProfiles map[uint32]*Profile   // touched profiles and their value before (nil: none)
	localBefore map[uint32]map[string]bool
	created     []*identity
	dead        map[uint32]*identity
	wlBefore    map[string]*WorkloadIdentity
}

// touch marks a pair for recomputation.
func (f *flush) touch(c *Compiler, k pairKey) {
	f.keep(c, k)
	f.recompute[k] = struct{}{}
}

// keep records a pair whose verdicts do not change but whose nodes may.
func (f *flush) keep(c *Compiler, k pairKey) {
	if _, ok := f.pairs[k]; !ok {
		f.pairs[k] = c.pairs[k]
	}
}

func (c *Compiler) begin() {
	c.f = &flush{
		workloads: map[string]struct{}{}, profiles: map[uint32]struct{}{},
		endpoints: map[netip.Prefix]struct{}{}, newRules: map[string]RuleName{}, goneRules: map[string]struct{}{},
		pairs: map[pairKey][]Verdict{}, recompute: map[pairKey]struct{}{}, oldProfiles: map[uint32]*Profile{},
		localBefore: map[uint32]map[string]bool{}, dead: map[uint32]*identity{}, wlBefore: map[string]*WorkloadIdentity{},
	}
}

// ref and unref count a use of an identity, per node for workloads.
func (c *Compiler) ref(id *identity, node string, workload bool) {
	id.refs++
	if workload {
		c.noteLocal(id, node)
		id.nodes[node]++
	}
}

func (c *Compiler) unref(id *identity, node string, workload bool) {
	id.refs--
	if workload {
		c.noteLocal(id, node)
		if id.nodes[node]--; id.nodes[node] <= 0 {
			delete(id.nodes, node)
		}
	}
}

func (c *Compiler) noteLocal(id *identity, node string) {
	if id.id == IDUnknown {
		return // created in this flush: step 3 records it
	}
	m := c.f.localBefore[id.id]
	if m == nil {
		m = map[string]bool{}
		c.f.localBefore[id.id] = m
	}
	if _, ok := m[node]; !ok {
		m[node] = id.nodes[node] > 0
	}
}

// identityFor returns the identity of a set of groups, creating it (without
// an id until allocation) when new.
func (c *Compiler) identityFor(groups []string, address bool) *identity {
	key := identityKey(groups)
	if id, ok := c.idents[key]; ok {
		return id
	}
	id := &identity{key: key, groups: groups, nodes: map[string]int{}, address: address}
	c.idents[key] = id
	c.f.created = append(c.f.created, id)
	return id
}

func (c *Compiler) finish() *Delta {
	f := c.f
	d := &Delta{local: map[string]*TableDiff{}}

	// 1. Workloads: move each changed workload to the identity of its groups.
	type claimChange struct {
		ws  *workloadState
		old []netip.Prefix
	}
	var claimChanges []claimChange
	wids := sortedKeys(f.workloads)
	for _, wid := range wids {
		ws := c.workloads[wid]
		if ws.ident != nil {
			f.wlBefore[wid] = &WorkloadIdentity{Workload: wid, Node: ws.node, ID: ws.ident.id}
			c.unref(ws.ident, ws.node, true)
		}
		claimChanges = append(claimChanges, claimChange{ws, ws.addrs})
		if ws.gone {
			ws.ident, ws.addrs = nil, nil
			continue
		}
		var id *identity
		if len(ws.groups) == 0 {
			id = c.byID[IDUngrouped]
		} else {
			id = c.identityFor(slices.Clone(ws.groups), false)
		}
		ws.ident, ws.node = id, ws.w.Node
		c.ref(id, ws.node, true)
		ws.addrs = hostPrefixes(ws.w.Addresses)
	}

	// 2. Address groups: every prefix and FQDN pattern gets the identity of
	// the address groups containing it, plus external.
	if f.addr {
		c.rebuildAddresses()
	}

	// 3. Allocate ids for new identities in key order, so that a full
	// compile is independent of input order.
	slices.SortFunc(f.created, func(a, b *identity) int { return strings.Compare(a.key, b.key) })
	for _, id := range f.created {
		if id.refs == 0 {
			delete(c.idents, id.key)
			continue
		}
		id.id = c.identIDs.assign(id.key)
		c.byID[id.id] = id
		f.localBefore[id.id] = map[string]bool{}
		for n := range id.nodes {
			f.localBefore[id.id][n] = false
		}
		for _, g := range id.groups {
			if c.groupIdents[g] == nil {
				c.groupIdents[g] = map[uint32]*identity{}
			}
			c.groupIdents[g][id.id] = id
		}
		if !id.address {
			f.profiles[id.id] = struct{}{}
		}
		d.shared.UpsertIdentities = append(d.shared.UpsertIdentities, Identity{ID: id.id, Groups: id.groups})
	}
	for _, id := range f.created {
		if id.refs == 0 {
			continue
		}
		for _, g := range id.groups {
			for _, r := range c.byGroup[g] {
				if r.r.From == g {
					for did := range c.groupIdents[r.r.To] {
						f.touch(c, pairKey{id.id, did})
					}
				}
				if r.r.To == g {
					for sid := range c.groupIdents[r.r.From] {
						f.touch(c, pairKey{sid, id.id})
					}
				}
			}
		}
	}

	// 4. Release identities nothing uses any more.
	for _, wid := range wids {
		if b := f.wlBefore[wid]; b != nil {
			c.maybeRelease(c.byID[b.ID])
		}
	}
	for _, id := range f.dead {
		d.shared.DeleteIdentities = append(d.shared.DeleteIdentities, id.id)
	}

	// 5. Endpoints.
	for _, cc := range claimChanges {
		who := "1wl/" + cc.ws.w.ID
		for _, p := range cc.old {
			c.unclaim(p, who)
		}
		if cc.ws.ident != nil {
			for _, p := range cc.ws.addrs {
				c.claim(p, who, cc.ws.ident.id)
			}
		}
	}
	for p := range f.endpoints {
		id, ok := c.endpointID(p)
		old, had := c.endpoints[p]
		switch {
		case ok && (!had || old != id):
			c.endpoints[p] = id
			d.shared.UpsertEndpoints = append(d.shared.UpsertEndpoints, Endpoint{Prefix: p, ID: id})
		case !ok && had:
			delete(c.endpoints, p)
			d.shared.DeleteEndpoints = append(d.shared.DeleteEndpoints, p)
		}
	}
	if f.addr {
		for pat, id := range c.fqdnKeys {
			if old, ok := c.fqdns[pat]; !ok || old != id.id {
				c.fqdns[pat] = id.id
				d.shared.UpsertFQDNs = append(d.shared.UpsertFQDNs, FQDN{Pattern: pat, ID: id.id})
			}
		}
		for pat := range c.fqdns {
			if _, ok := c.fqdnKeys[pat]; !ok {
				delete(c.fqdns, pat)
				d.shared.DeleteFQDNs = append(d.shared.DeleteFQDNs, pat)
			}
		}
	}

	// 6. Rule ids.
	for _, k := range sortedKeys(f.goneRules) {
		if id, ok := c.ruleIDs.get(k); ok {
			c.ruleIDs.release(k)
			d.Cluster.DeleteRules = append(d.Cluster.DeleteRules, id)
		}
	}
	for _, k := range sortedKeys(f.newRules) {
		if _, ok := c.ruleIDs.get(k); ok {
			continue
		}
		rn := f.newRules[k]
		rn.ID = c.ruleIDs.assign(k)
		d.Cluster.UpsertRules = append(d.Cluster.UpsertRules, rn)
	}

	// 7. Identities whose locality changed: their pairs and profiles are
	// new or gone on some nodes even if unchanged.
	for id, nodes := range f.localBefore {
		ident := c.byID[id]
		if ident == nil {
			ident = f.dead[id]
		}
		changed := false
		for n, was := range nodes {
			if was != (ident.nodes[n] > 0) {
				changed = true
				break
			}
		}
		if !changed {
			delete(f.localBefore, id)
			continue
		}
		for dst := range c.bySrc[id] {
			f.keep(c, pairKey{id, dst})
		}
		for src := range c.byDst[id] {
			f.keep(c, pairKey{src, id})
		}
		if !ident.address {
			f.profiles[id] = struct{}{}
		}
	}

	// 8. Resolve touched pairs.
	newPairs := make(map[pairKey][]Verdict, len(f.pairs))
	for k, old := range f.pairs {
		if _, ok := f.recompute[k]; !ok {
			newPairs[k] = old
			continue
		}
		var vs []Verdict
		src, dst := c.byID[k.src], c.byID[k.dst]
		if src != nil && dst != nil {
			vs = c.resolve(src, dst)
		}
		newPairs[k] = vs
		c.storePair(k, vs)
	}

	// 9. Profiles.
	newProfiles := map[uint32]*Profile{}
	for id := range f.profiles {
		if p, ok := c.profiles[id]; ok {
			f.oldProfiles[id] = &p
		} else {
			f.oldProfiles[id] = nil
		}
		ident := c.byID[id]
		if ident == nil || ident.address {
			delete(c.profiles, id)
			newProfiles[id] = nil
			continue
		}
		p := c.profile(ident)
		c.profiles[id] = p
		newProfiles[id] = &p
	}

	// 10. Distribute to the cluster table and to nodes.
	computeNodes := func(id uint32, before bool) map[string]bool {
		out := map[string]bool{}
		ident := c.byID[id]
		if ident == nil {
			ident = f.dead[id]
		}
		if ident == nil {
			return out
		}
		for n := range ident.nodes {
			out[n] = true
		}
		if before {
			for n, was := range f.localBefore[id] {
				if was {
					out[n] = true
				} else {
					delete(out, n)
				}
			}
		}
		return out
	}
	type nodeSets struct{ before, after map[string]bool }
	nodeCache := map[uint32]nodeSets{}
	nodesOf := func(id uint32, before bool) map[string]bool {
		ns, ok := nodeCache[id]
		if !ok {
			ns = nodeSets{computeNodes(id, true), computeNodes(id, false)}
			nodeCache[id] = ns
		}
		if before {
			return ns.before
		}
		return ns.after
	}
	nodeDiff := func(n string) *TableDiff {
		if d.local[n] == nil {
			d.local[n] = &TableDiff{}
		}
		return d.local[n]
	}
	for k, old := range f.pairs {
		nw := newPairs[k]
		diffVerdicts(old, nw, &d.Cluster)
		sb, db, sa, da := nodesOf(k.src, true), nodesOf(k.dst, true), nodesOf(k.src, false), nodesOf(k.dst, false)
		_, changed := f.recompute[k]
		sets := [4]map[string]bool{sb, db, sa, da}
		for i, m := range sets {
			for n := range m {
				if (i >= 1 && sets[0][n]) || (i >= 2 && sets[1][n]) || (i >= 3 && sets[2][n]) {
					continue // visited through an earlier set
				}
				before, after := sb[n] || db[n], sa[n] || da[n]
				if before == after && !changed {
					continue
				}
				var o, w []Verdict
				if before {
					o = old
				}
				if after {
					w = nw
				}
				diffVerdicts(o, w, nodeDiff(n))
			}
		}
	}
	for id, np := range newProfiles {
		op := f.oldProfiles[id]
		diffProfile(id, op, np, &d.Cluster)
		before, after := nodesOf(id, true), nodesOf(id, false)
		for n := range union(before, after) {
			var o, w *Profile
			if before[n] {
				o = op
			}
			if after[n] {
				w = np
			}
			diffProfile(id, o, w, nodeDiff(n))
		}
	}
	for _, wid := range wids {
		ws := c.workloads[wid]
		old := f.wlBefore[wid]
		var nw *WorkloadIdentity
		if ws.ident != nil {
			nw = &WorkloadIdentity{Workload: wid, Node: ws.node, ID: ws.ident.id}
		}
		if ws.gone {
			delete(c.workloads, wid)
		}
		if old != nil && nw != nil && *old == *nw {
			continue
		}
		if old != nil {
			if nw == nil || nw.Node != old.Node {
				nodeDiff(old.Node).DeleteWorkloads = append(nodeDiff(old.Node).DeleteWorkloads, wid)
			}
			if nw == nil {
				d.Cluster.DeleteWorkloads = append(d.Cluster.DeleteWorkloads, wid)
			}
		}
		if nw != nil {
			nodeDiff(nw.Node).UpsertWorkloads = append(nodeDiff(nw.Node).UpsertWorkloads, *nw)
			d.Cluster.UpsertWorkloads = append(d.Cluster.UpsertWorkloads, *nw)
		}
	}
	d.Cluster.merge(&d.shared)
	sortDiff(&d.Cluster)
	sortDiff(&d.shared)
	for n, l := range d.local {
		if l.Empty() {
			delete(d.local, n)
			continue
		}
		sortDiff(l)
	}
	c.f = nil
	return d
}

func union(a, b map[string]bool) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// maybeRelease frees an identity nothing refers to.
func (c *Compiler) maybeRelease(id *identity) {
	if id == nil || id.reserved || id.refs > 0 {
		return
	}
	if _, done := c.f.dead[id.id]; done {
		return
	}
	c.f.dead[id.id] = id
	delete(c.idents, id.key)
	delete(c.byID, id.id)
	c.identIDs.release(id.key)
	for _, g := range id.groups {
		delete(c.groupIdents[g], id.id)
		if len(c.groupIdents[g]) == 0 {
			delete(c.groupIdents, g)
		}
	}
	for dst := range c.bySrc[id.id] {
		c.f.touch(c, pairKey{id.id, dst})
	}
	for src := range c.byDst[id.id] {
		c.f.touch(c, pairKey{src, id.id})
	}
	if !id.address {
		c.f.profiles[id.id] = struct{}{}
	}
}

// rebuildAddresses recomputes the identity of every address-group prefix
// and FQDN pattern.
func (c *Compiler) rebuildAddresses() {
	prefixGroups := map[netip.Prefix][]string{}
	fqdnGroups := map[string][]string{}
	var addrGroups []string
	for name, gs := range c.groups {
		if !gs.sel.IsAddress() {
			continue
		}
		addrGroups = append(addrGroups, name)
		for _, p := range gs.sel.Prefixes() {
			prefixGroups[p] = nil
		}
		for _, q := range gs.sel.FQDNs() {
			fqdnGroups[q] = append(fqdnGroups[q], name)
		}
	}
	slices.Sort(addrGroups)
	// A prefix belongs to every group with a prefix containing it: the
	// longest match then carries all of them.
	for p := range prefixGroups {
		var gs []string
		for _, name := range addrGroups {
			for _, q := range c.groups[name].sel.Prefixes() {
				if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
					gs = append(gs, name)
					break
				}
			}
		}
		prefixGroups[p] = gs
	}
	oldP, oldF := c.addrKeys, c.fqdnKeys
	c.addrKeys, c.fqdnKeys = map[netip.Prefix]*identity{}, map[string]*identity{}
	for p, gs := range prefixGroups {
		id := c.identityFor(addressGroups(gs), true)
		c.ref(id, "", false)
		c.addrKeys[p] = id
		c.f.endpoints[p] = struct{}{}
	}
	for q, gs := range fqdnGroups {
		slices.Sort(gs)
		id := c.identityFor(addressGroups(gs), true)
		c.ref(id, "", false)
		c.fqdnKeys[q] = id
	}
	for p, id := range oldP {
		c.unref(id, "", false)
		c.f.endpoints[p] = struct{}{}
		defer c.maybeRelease(id)
	}
	for _, id := range oldF {
		c.unref(id, "", false)
		defer c.maybeRelease(id)
	}
}

// addressGroups is the group set of an address identity: its address
// groups and external, sorted.
func addressGroups(gs []string) []string {
	out := append(slices.Clone(gs), policy.GroupExternal)
	slices.Sort(out)
	return slices.Compact(out)
}

// endpointID decides which identity a prefix maps to: a host claim (nodes
// before workloads, then by id), else an address group, else external for
// the default routes.
func (c *Compiler) endpointID(p netip.Prefix) (uint32, bool) {
	if cl := c.claims[p]; len(cl) > 0 {
		best := ""
		for who := range cl {
			if best == "" || who < best {
				best = who
			}
		}
		return cl[best], true
	}
	if id, ok := c.addrKeys[p]; ok {
		return id.id, true
	}
	if p.Bits() == 0 {
		return IDExternal, true
	}
	return 0, false
}

func (c *Compiler) storePair(k pairKey, vs []Verdict) {
	if len(vs) == 0 {
		delete(c.pairs, k)
		if m := c.bySrc[k.src]; m != nil {
			delete(m, k.dst)
			if len(m) == 0 {
				delete(c.bySrc, k.src)
			}
		}
		if m := c.byDst[k.dst]; m != nil {
			delete(m, k.src)
			if len(m) == 0 {
				delete(c.byDst, k.dst)
			}
		}
		return
	}
	c.pairs[k] = vs
	if c.bySrc[k.src] == nil {
		c.bySrc[k.src] = map[uint32]struct{}{}
	}
	c.bySrc[k.src][k.dst] = struct{}{}
	if c.byDst[k.dst] == nil {
		c.byDst[k.dst] = map[uint32]struct{}{}
	}
	c.byDst[k.dst][k.src] = struct{}{}
}

// diffVerdicts appends the change from old to new (both sorted) to d.
func diffVerdicts(old, new []Verdict, d *TableDiff) {
	diffSorted(old, new, Verdict.Key, compareVerdictKey, func(a, b Verdict) bool { return a == b }, &d.DeleteVerdicts, &d.UpsertVerdicts)
}

func diffProfile(id uint32, old, new *Profile, d *TableDiff) {
	switch {
	case new == nil && old != nil:
		d.DeleteProfiles = append(d.DeleteProfiles, id)
	case new != nil && (old == nil || !reflect.DeepEqual(*old, *new)):
		d.UpsertProfiles = append(d.UpsertProfiles, *new)
	}
}

func sortDiff(d *TableDiff) {
	slices.SortFunc(d.UpsertIdentities, func(a, b Identity) int { return cmp.Compare(a.ID, b.ID) })
	slices.Sort(d.DeleteIdentities)
	slices.SortFunc(d.UpsertEndpoints, func(a, b Endpoint) int { return comparePrefix(a.Prefix, b.Prefix) })
	slices.SortFunc(d.DeleteEndpoints, comparePrefix)
	slices.SortFunc(d.UpsertFQDNs, func(a, b FQDN) int { return strings.Compare(a.Pattern, b.Pattern) })
	slices.Sort(d.DeleteFQDNs)
	slices.SortFunc(d.UpsertVerdicts, compareVerdict)
	slices.SortFunc(d.DeleteVerdicts, compareVerdictKey)
	slices.SortFunc(d.UpsertProfiles, func(a, b Profile) int { return cmp.Compare(a.ID, b.ID) })
	slices.Sort(d.DeleteProfiles)
	slices.SortFunc(d.UpsertWorkloads, func(a, b WorkloadIdentity) int { return strings.Compare(a.Workload, b.Workload) })
	slices.Sort(d.DeleteWorkloads)
	slices.SortFunc(d.UpsertRules, func(a, b RuleName) int { return cmp.Compare(a.ID, b.ID) })
	slices.Sort(d.DeleteRules)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Table returns the cluster-wide table.
func (c *Compiler) Table() *Table {
	t := &Table{Verdicts: make([]Verdict, 0, len(c.pairs)*2)}
	for _, id := range c.byID {
		t.Identities = append(t.Identities, Identity{ID: id.id, Groups: slices.Clone(id.groups)})
	}
	for p, id := range c.endpoints {
		t.Endpoints = append(t.Endpoints, Endpoint{Prefix: p, ID: id})
	}
	for q, id := range c.fqdns {
		t.FQDNs = append(t.FQDNs, FQDN{Pattern: q, ID: id})
	}
	for _, vs := range c.pairs {
		t.Verdicts = append(t.Verdicts, vs...)
	}
	for _, p := range c.profiles {
		t.Profiles = append(t.Profiles, p)
	}
	for wid, ws := range c.workloads {
		if ws.ident != nil {
			t.Workloads = append(t.Workloads, WorkloadIdentity{Workload: wid, Node: ws.node, ID: ws.ident.id})
		}
	}
	for k, id := range c.ruleIDs.byKey {
		kind, name, _ := strings.Cut(k, "\x00")
		t.Rules = append(t.Rules, RuleName{ID: id, Kind: policy.Kind(kind), Name: name})
	}
	t.sort()
	return t
}

// NodeTable returns one node's table; it equals Table().ForNode(node) but
// costs only what the node holds.
func (c *Compiler) NodeTable(node string) *Table {
	t := &Table{Node: node, Verdicts: []Verdict{}, Profiles: []Profile{}, Workloads: []WorkloadIdentity{}}
	for _, id := range c.byID {
		t.Identities = append(t.Identities, Identity{ID: id.id, Groups: slices.Clone(id.groups)})
	}
	for p, id := range c.endpoints {
		t.Endpoints = append(t.Endpoints, Endpoint{Prefix: p, ID: id})
	}
	for q, id := range c.fqdns {
		t.FQDNs = append(t.FQDNs, FQDN{Pattern: q, ID: id})
	}
	local := map[uint32]bool{}
	for _, id := range c.byID {
		if id.nodes[node] > 0 {
			local[id.id] = true
		}
	}
	for id := range local {
		for dst := range c.bySrc[id] {
			t.Verdicts = append(t.Verdicts, c.pairs[pairKey{id, dst}]...)
		}
		for src := range c.byDst[id] {
			if !local[src] {
				t.Verdicts = append(t.Verdicts, c.pairs[pairKey{src, id}]...)
			}
		}
		if p, ok := c.profiles[id]; ok {
			t.Profiles = append(t.Profiles, p)
		}
	}
	for wid, ws := range c.workloads {
		if ws.ident != nil && ws.node == node {
			t.Workloads = append(t.Workloads, WorkloadIdentity{Workload: wid, Node: ws.node, ID: ws.ident.id})
		}
	}
	t.sort()
	return t
}
