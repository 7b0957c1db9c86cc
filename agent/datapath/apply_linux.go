//go:build linux

package datapath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// How a change reaches the maps.
//
// The programs read three maps per new flow (identities, modes, policy), so
// a change cannot be one atomic write. We write every new or changed entry
// first, then delete the stale ones, then bump the generation. Policy map
// entries are disjoint port prefixes within a (src, dst, proto), so while
// both old and new entries are present a longest-prefix lookup returns
// either the old or the new verdict for that port, never a verdict from
// neither. Established flows keep their conntrack verdict until the
// generation changes, and are then decided again against the complete new
// policy.
//
// We chose this over double-buffered maps because a policy map holds up to a
// million prefixes and a second copy would double the memory of every node
// for a window that is a few milliseconds long. If any write fails (map
// full, out of memory), the writes done so far are undone, the previous
// policy stays in force and the error says why.

// ApplyTable replaces the whole policy with t.
func (d *Datapath) ApplyTable(t Table) error {
	next, err := stateFromTable(t)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.commit(next, nil)
}

// ApplyDiff changes the policy in force by diff.
func (d *Datapath) ApplyDiff(diff Diff) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	next, pairs, err := d.st.apply(diff)
	if err != nil {
		return err
	}
	return d.commit(next, pairs)
}

// Table returns the policy in force.
func (d *Datapath) Table() Table {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := Table{Modes: map[Identity]Mode{}}
	for p, id := range d.st.endpoints {
		t.Endpoints = append(t.Endpoints, EndpointEntry{Prefix: p, Identity: id})
	}
	for _, m := range d.st.verdicts {
		for _, v := range m {
			t.Verdicts = append(t.Verdicts, v)
		}
	}
	for id, m := range d.st.modes {
		t.Modes[id] = m
	}
	return t
}

// configDirty in dp_config.pad marks a change in progress.
const configDirty = 1

const batchSize = 4096

// batchPut writes keys[i]=vals[i] in batches and returns how many were
// written.
func batchPut[K, V any](m *ebpf.Map, keys []K, vals []V) (int, error) {
	done := 0
	for done < len(keys) {
		end := min(done+batchSize, len(keys))
		n, err := m.BatchUpdate(keys[done:end], vals[done:end], nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := done; i < end; i++ {
				if err := m.Put(keys[i], vals[i]); err != nil {
					return i, err
				}
			}
			n, err = end-done, nil
		}
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// batchDelete deletes keys, ignoring keys already gone.
func batchDelete[K any](m *ebpf.Map, keys []K) error {
	for done := 0; done < len(keys); {
		end := min(done+batchSize, len(keys))
		n, err := m.BatchDelete(keys[done:end], nil)
		if err == nil {
			done = end
			continue
		}
		// Missing key or no batch support: one by one from where it stopped.
		for i := done + max(n, 0); i < end; i++ {
			if err := m.Delete(keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return err
			}
		}
		done = end
	}
	return nil
}

// writeSet is the writes to one map: new keys and changed keys with their
// previous values, for undo.
type writeSet[K, V any] struct {
	keys []K
	vals []V
	old  []*V // nil: key was absent
}

func (w *writeSet[K, V]) add(k K, v V, old *V) {
	w.keys = append(w.keys, k)
	w.vals = append(w.vals, v)
	w.old = append(w.old, old)
}

// apply writes the set; on failure it undoes what it wrote.
func (w *writeSet[K, V]) apply(m *ebpf.Map) (int, error) {
	return batchPut(m, w.keys, w.vals)
}

// undo reverts the first n writes.
func (w *writeSet[K, V]) undo(m *ebpf.Map, n int) error {
	var errs []error
	for i := 0; i < n; i++ {
		var err error
		if w.old[i] != nil {
			err = m.Put(w.keys[i], *w.old[i])
		} else {
			err = m.Delete(w.keys[i])
		}
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// commit moves the maps from d.st to next. pairs limits the verdict work to
// the (src, dst) pairs a diff touched; nil recompiles everything.
func (d *Datapath) commit(next *state, pairs map[[2]Identity]bool) error {
	var oldPol map[policyKey]policyValue
	if pairs == nil && d.dirty {
		var err error
		if oldPol, err = d.readPolicy(); err != nil {
			return err
		}
	} else {
		oldPol = compileVerdicts(d.st, pairs)
	}
	newPol := compileVerdicts(next, pairs)
	touched := pairList(pairs, d.st, next)

	var pol writeSet[bpf.DatapathPolicyKey, bpf.DatapathPolicyValue]
	added := 0
	for k, v := range newPol {
		nv := encodePolicyValue(v)
		ov, ok := oldPol[k]
		switch {
		case !ok:
			added++
			pol.add(encodePolicyKey(k), nv, nil)
		case ov != v:
			o := encodePolicyValue(ov)
			pol.add(encodePolicyKey(k), nv, &o)
		}
	}
	if need := d.policyCount + added; need > int(d.cfg.PolicyMaxEntries) {
		return fmt.Errorf("%w: policy map needs %d port prefixes while the change is applied, capacity %d; previous policy kept", ErrMapFull, need, d.cfg.PolicyMaxEntries)
	}
	var ids writeSet[bpf.DatapathLpmKey, uint32]
	for p, id := range next.endpoints {
		oid, ok := d.st.endpoints[p]
		switch {
		case !ok:
			ids.add(lpmKey(p), uint32(id), nil)
		case oid != id:
			o := uint32(oid)
			ids.add(lpmKey(p), uint32(id), &o)
		}
	}
	if need := len(d.st.endpoints) + len(ids.keys); need > int(d.cfg.IdentityMaxEntries) {
		return fmt.Errorf("%w: identity map needs %d prefixes while the change is applied, capacity %d; previous policy kept", ErrMapFull, need, d.cfg.IdentityMaxEntries)
	}
	var modes writeSet[uint32, bpf.DatapathModeValue]
	for id, m := range next.modes {
		om, ok := d.st.modes[id]
		switch {
		case !ok:
			modes.add(uint32(id), bpf.DatapathModeValue{Mode: uint32(m)}, nil)
		case om != m:
			modes.add(uint32(id), bpf.DatapathModeValue{Mode: uint32(m)}, &bpf.DatapathModeValue{Mode: uint32(om)})
		}
	}
	var recs writeSet[verdictRecordKey, verdictRecordValue]
	for pair := range touched {
		for vid, v := range next.verdicts[pair] {
			ov, ok := d.st.verdict(vid)
			if ok && ov == v {
				continue
			}
			k, val := encodeVerdictRecord(v)
			if ok {
				_, o := encodeVerdictRecord(ov)
				recs.add(k, val, &o)
			} else {
				recs.add(k, val, nil)
			}
		}
	}
	if n := next.nverdicts; n > int(d.cfg.VerdictMaxEntries) {
		return fmt.Errorf("%w: %d verdict entries, capacity %d; previous policy kept", ErrMapFull, n, d.cfg.VerdictMaxEntries)
	}

	// A change that writes and deletes nothing (the same table applied
	// again, as a restarted agent does) leaves the generation alone:
	// established flows have nothing to be decided again against. A
	// change cut short earlier (dirty) still goes through, so flows
	// admitted against the partial maps are decided again.
	if !d.dirty && len(pol.keys) == 0 && len(ids.keys) == 0 && len(modes.keys) == 0 && len(recs.keys) == 0 &&
		!hasStale(oldPol, newPol, d.st, next, touched) {
		d.st = next
		return nil
	}

	if err := d.writeConfig(d.gen, true); err != nil {
		return fmt.Errorf("mark change in progress: %w", err)
	}
	d.dirty = true

	// Phase 1: writes. Policy before identities and modes, so a newly
	// identified address meets its policy. On failure, undo in reverse.
	type step struct {
		what  string
		apply func() (int, error)
		undo  func(int) error
	}
	steps := []step{
		{"write policy", func() (int, error) { return pol.apply(d.objs.Policy) }, func(n int) error { return pol.undo(d.objs.Policy, n) }},
		{"write identities", func() (int, error) { return ids.apply(d.objs.Identities) }, func(n int) error { return ids.undo(d.objs.Identities, n) }},
		{"write modes", func() (int, error) { return modes.apply(d.objs.Modes) }, func(n int) error { return modes.undo(d.objs.Modes, n) }},
		{"record verdicts", func() (int, error) { return recs.apply(d.verdicts) }, func(n int) error { return recs.undo(d.verdicts, n) }},
	}
	written := make([]int, len(steps))
	for i, s := range steps {
		n, err := s.apply()
		written[i] = n
		if err == nil {
			continue
		}
		var uerrs []error
		for j := i; j >= 0; j-- {
			uerrs = append(uerrs, steps[j].undo(written[j]))
		}
		if uerr := errors.Join(uerrs...); uerr != nil {
			d.log.Error("datapath rollback incomplete", "err", uerr)
			return fmt.Errorf("%s: %w (rollback incomplete: %v)", s.what, err, uerr)
		}
		d.clearDirty()
		return fmt.Errorf("%s: %w; previous policy kept", s.what, err)
	}

	// Phase 2: deletes. Nothing left to undo: a failure here leaves extra
	// entries, and the dirty mark makes the next full table remove them.
	var errs []error
	var stalePol []bpf.DatapathPolicyKey
	for k := range oldPol {
		if _, ok := newPol[k]; !ok {
			stalePol = append(stalePol, encodePolicyKey(k))
		}
	}
	if err := batchDelete(d.objs.Policy, stalePol); err != nil {
		errs = append(errs, fmt.Errorf("delete policy prefixes: %w", err))
	}
	var staleIDs []bpf.DatapathLpmKey
	for p := range d.st.endpoints {
		if _, ok := next.endpoints[p]; !ok {
			staleIDs = append(staleIDs, lpmKey(p))
		}
	}
	if err := batchDelete(d.objs.Identities, staleIDs); err != nil {
		errs = append(errs, fmt.Errorf("delete identities: %w", err))
	}
	var staleModes []uint32
	for id := range d.st.modes {
		if _, ok := next.modes[id]; !ok {
			staleModes = append(staleModes, uint32(id))
		}
	}
	if err := batchDelete(d.objs.Modes, staleModes); err != nil {
		errs = append(errs, fmt.Errorf("delete modes: %w", err))
	}
	var staleRecs []verdictRecordKey
	for pair := range touched {
		for vid, v := range d.st.verdicts[pair] {
			if _, ok := next.verdict(vid); !ok {
				k, _ := encodeVerdictRecord(v)
				staleRecs = append(staleRecs, k)
			}
		}
	}
	if err := batchDelete(d.verdicts, staleRecs); err != nil {
		errs = append(errs, fmt.Errorf("delete verdict records: %w", err))
	}

	// Phase 3: established flows are decided again.
	d.st = next
	d.policyCount += added - len(stalePol)
	gen := d.gen + 1
	dirty := len(errs) > 0
	if err := d.writeConfig(gen, dirty); err != nil {
		errs = append(errs, fmt.Errorf("bump generation: %w", err))
	} else {
		d.gen, d.dirty = gen, dirty
	}
	if d.dirty {
		// Recount from the map: the deletes did not all happen.
		if pol, err := d.readPolicy(); err == nil {
			d.policyCount = len(pol)
		}
	}
	d.log.Debug("datapath policy applied", "generation", d.gen, "prefixes_added", added, "prefixes_deleted", len(stalePol))
	return errors.Join(errs...)
}

// hasStale reports whether moving from cur to next deletes any map entry.
func hasStale(oldPol, newPol map[policyKey]policyValue, cur, next *state, touched map[[2]Identity]bool) bool {
	for k := range oldPol {
		if _, ok := newPol[k]; !ok {
			return true
		}
	}
	for p := range cur.endpoints {
		if _, ok := next.endpoints[p]; !ok {
			return true
		}
	}
	for id := range cur.modes {
		if _, ok := next.modes[id]; !ok {
			return true
		}
	}
	for pair := range touched {
		for vid := range cur.verdicts[pair] {
			if _, ok := next.verdict(vid); !ok {
				return true
			}
		}
	}
	return false
}

func (d *Datapath) clearDirty() {
	if err := d.writeConfig(d.gen, false); err == nil {
		d.dirty = false
	}
}

// Counters are the per-verdict packet counters, summed over CPUs.
type Counters struct {
	Established       uint64 // passed on a conntrack hit
	NewAllowed        uint64 // new flow allowed by a rule (Monitor, Protect)
	DiscoverPassed    uint64 // new flow passed in Discover
	MonitorPassed     uint64 // violation passed in Monitor
	ProtectDropped    uint64 // violation dropped in Protect
	MalformedPassed   uint64 // unparseable packet passed (not Protect)
	MalformedDropped  uint64 // unparseable packet dropped (Protect)
	NoEndpoint        uint64 // packet on an interface or cgroup with no endpoint entry
	NonIP             uint64 // not IPv4 or IPv6
	NeighborDiscovery uint64 // ICMPv6 neighbour/router discovery, always passed
	UnknownFragment   uint64 // non-first fragment whose first fragment was not seen
	Revalidated       uint64 // established packet decided again after a policy change
	EventsLost        uint64 // ring buffer full
	Expired           uint64 // conntrack entry found past its idle timeout
	AppAllowed        uint64 // pending flow whose application the policy allows
	AppViolations     uint64 // pending flow whose application the policy does not allow
	LocalRedirected   uint64 // delivered straight into a workload of this node (LocalDelivery)
}

// Counters reads the per-verdict counters.
func (d *Datapath) Counters() (Counters, error) {
	var c Counters
	fields := []*uint64{&c.Established, &c.NewAllowed, &c.DiscoverPassed, &c.MonitorPassed, &c.ProtectDropped,
		&c.MalformedPassed, &c.MalformedDropped, &c.NoEndpoint, &c.NonIP, &c.NeighborDiscovery,
		&c.UnknownFragment, &c.Revalidated, &c.EventsLost, &c.Expired, &c.AppAllowed, &c.AppViolations, &c.LocalRedirected}
	if len(fields) != int(bpf.DatapathCounterCOUNTER_MAX) {
		return c, fmt.Errorf("datapath: %d counters known, programs have %d", len(fields), bpf.DatapathCounterCOUNTER_MAX)
	}
	for i, f := range fields {
		var per []uint64
		if err := d.objs.Counters.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range per {
			*f += v
		}
	}
	return c, nil
}

// RuleCounters returns the number of new flows each rule decided, by rule ID.
func (d *Datapath) RuleCounters() (map[uint32]uint64, error) {
	out := map[uint32]uint64{}
	var k uint32
	var per []bpf.DatapathRuleCounter
	it := d.objs.RuleCounters.Iterate()
	for it.Next(&k, &per) {
		var sum uint64
		for _, v := range per {
			sum += v.Flows
		}
		out[k] = sum
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate rule counters: %w", err)
	}
	return out, nil
}

// Generation is bumped after every applied change.
func (d *Datapath) Generation() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}
