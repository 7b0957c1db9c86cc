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
	for _, v := range d.st.verdicts {
		t.Verdicts = append(t.Verdicts, v)
	}
	for id, m := range d.st.modes {
		t.Modes[id] = m
	}
	return t
}

// undoLog records how to revert the writes of a commit.
type undoLog []func() error

func (u undoLog) run() error {
	var errs []error
	for i := len(u) - 1; i >= 0; i-- {
		errs = append(errs, u[i]())
	}
	return errors.Join(errs...)
}

// put writes k=v into m, recording how to restore the previous value.
func put[K, V any](m *ebpf.Map, undo *undoLog, k K, v V, old *V) error {
	if err := m.Put(k, v); err != nil {
		return err
	}
	if old != nil {
		prev := *old
		*undo = append(*undo, func() error { return m.Put(k, prev) })
	} else {
		*undo = append(*undo, func() error { return m.Delete(k) })
	}
	return nil
}

func deleteIgnoreMissing(m *ebpf.Map, k any) error {
	if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// commit moves the maps from d.st to next. pairs limits the verdict work to
// the (src, dst) pairs a diff touched; nil recompiles everything and
// compares with what the policy map actually holds.
func (d *Datapath) commit(next *state, pairs map[[2]Identity]bool) error {
	var oldPol map[policyKey]policyValue
	if pairs == nil {
		var err error
		if oldPol, err = d.readPolicy(); err != nil {
			return err
		}
	} else {
		oldPol = compileVerdicts(d.st.verdicts, pairs)
	}
	newPol := compileVerdicts(next.verdicts, pairs)

	added := 0
	for k := range newPol {
		if _, ok := oldPol[k]; !ok {
			added++
		}
	}
	if need := d.policyCount + added; need > int(d.cfg.PolicyMaxEntries) {
		return fmt.Errorf("%w: policy map needs %d port prefixes while the change is applied, capacity %d; previous policy kept", ErrMapFull, need, d.cfg.PolicyMaxEntries)
	}
	if n := len(next.verdicts); n > int(d.cfg.VerdictMaxEntries) {
		return fmt.Errorf("%w: %d verdict entries, capacity %d; previous policy kept", ErrMapFull, n, d.cfg.VerdictMaxEntries)
	}
	if n := len(next.endpoints) + len(d.st.endpoints); n > int(d.cfg.IdentityMaxEntries) {
		// Worst case while old and new entries coexist.
		newOnly := 0
		for p := range next.endpoints {
			if _, ok := d.st.endpoints[p]; !ok {
				newOnly++
			}
		}
		if need := len(d.st.endpoints) + newOnly; need > int(d.cfg.IdentityMaxEntries) {
			return fmt.Errorf("%w: identity map needs %d prefixes, capacity %d; previous policy kept", ErrMapFull, need, d.cfg.IdentityMaxEntries)
		}
	}

	var undo undoLog
	fail := func(what string, err error) error {
		if uerr := undo.run(); uerr != nil {
			d.log.Error("datapath rollback incomplete", "err", uerr)
			return fmt.Errorf("%s: %w (rollback incomplete: %v)", what, err, uerr)
		}
		return fmt.Errorf("%s: %w; previous policy kept", what, err)
	}

	// Phase 1: writes. Policy before identities and modes, so a newly
	// identified address meets its policy.
	for k, v := range newPol {
		var old *bpf.DatapathPolicyValue
		if ov, ok := oldPol[k]; ok {
			if ov == v {
				continue
			}
			old = &bpf.DatapathPolicyValue{RuleId: ov.RuleID, Action: uint8(ov.Action)}
		}
		nv := bpf.DatapathPolicyValue{RuleId: v.RuleID, Action: uint8(v.Action)}
		if err := put(d.objs.Policy, &undo, encodePolicyKey(k), nv, old); err != nil {
			return fail(fmt.Sprintf("write policy %d->%d proto %d port %d/%d", k.Src, k.Dst, k.Proto, k.Port, k.Bits), err)
		}
	}
	for p, id := range next.endpoints {
		var old *uint32
		if oid, ok := d.st.endpoints[p]; ok {
			if oid == id {
				continue
			}
			o := uint32(oid)
			old = &o
		}
		if err := put(d.objs.Identities, &undo, lpmKey(p), uint32(id), old); err != nil {
			return fail(fmt.Sprintf("write identity of %s", p), err)
		}
	}
	for id, m := range next.modes {
		var old *bpf.DatapathModeValue
		if om, ok := d.st.modes[id]; ok {
			if om == m {
				continue
			}
			old = &bpf.DatapathModeValue{Mode: uint32(om)}
		}
		if err := put(d.objs.Modes, &undo, uint32(id), bpf.DatapathModeValue{Mode: uint32(m)}, old); err != nil {
			return fail(fmt.Sprintf("write mode of identity %d", id), err)
		}
	}
	for vid, v := range next.verdicts {
		var old *verdictRecordValue
		if ov, ok := d.st.verdicts[vid]; ok {
			if ov == v {
				continue
			}
			_, o := encodeVerdictRecord(ov)
			old = &o
		}
		k, val := encodeVerdictRecord(v)
		if err := put(d.verdicts, &undo, k, val, old); err != nil {
			return fail("record verdict entry", err)
		}
	}

	// Phase 2: deletes. Nothing left to undo: a failure here leaves extra
	// entries, which the next full table removes.
	var errs []error
	deleted := 0
	for k := range oldPol {
		if _, ok := newPol[k]; ok {
			continue
		}
		if err := deleteIgnoreMissing(d.objs.Policy, encodePolicyKey(k)); err != nil {
			errs = append(errs, fmt.Errorf("delete policy prefix: %w", err))
			continue
		}
		deleted++
	}
	for p := range d.st.endpoints {
		if _, ok := next.endpoints[p]; !ok {
			if err := deleteIgnoreMissing(d.objs.Identities, lpmKey(p)); err != nil {
				errs = append(errs, fmt.Errorf("delete identity of %s: %w", p, err))
			}
		}
	}
	for id := range d.st.modes {
		if _, ok := next.modes[id]; !ok {
			if err := deleteIgnoreMissing(d.objs.Modes, uint32(id)); err != nil {
				errs = append(errs, fmt.Errorf("delete mode of %d: %w", id, err))
			}
		}
	}
	for vid, v := range d.st.verdicts {
		if _, ok := next.verdicts[vid]; !ok {
			k, _ := encodeVerdictRecord(v)
			if err := deleteIgnoreMissing(d.verdicts, k); err != nil {
				errs = append(errs, fmt.Errorf("delete verdict record: %w", err))
			}
		}
	}

	// Phase 3: established flows are decided again.
	gen := d.gen + 1
	if err := d.objs.Config.Put(uint32(0), bpf.DatapathDpConfig{Generation: gen}); err != nil {
		errs = append(errs, fmt.Errorf("bump generation: %w", err))
	} else {
		d.gen = gen
	}
	d.st = next
	d.policyCount += added - deleted
	d.log.Debug("datapath policy applied", "generation", d.gen, "prefixes_added", added, "prefixes_deleted", deleted)
	return errors.Join(errs...)
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
}

// Counters reads the per-verdict counters.
func (d *Datapath) Counters() (Counters, error) {
	var c Counters
	fields := []*uint64{&c.Established, &c.NewAllowed, &c.DiscoverPassed, &c.MonitorPassed, &c.ProtectDropped,
		&c.MalformedPassed, &c.MalformedDropped, &c.NoEndpoint, &c.NonIP, &c.NeighborDiscovery,
		&c.UnknownFragment, &c.Revalidated, &c.EventsLost}
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
