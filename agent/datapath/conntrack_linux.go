//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// monotonicNow is the clock the programs stamp entries with.
func monotonicNow() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read monotonic clock: %w", err)
	}
	return uint64(ts.Nano()), nil
}

func idleSince(now, seen uint64) time.Duration {
	if seen >= now {
		return 0
	}
	return time.Duration(now - seen)
}

func decodeConn(k bpf.DatapathCtKey, v bpf.DatapathCtEntry, now uint64) Conn {
	family := uint8(6)
	if netip.AddrFrom16(k.Saddr).Is4In6() {
		family = 4
	}
	return Conn{
		Endpoint:  k.Endpoint,
		Dir:       Direction(k.Dir),
		SrcAddr:   addrFrom16(k.Saddr, family),
		DstAddr:   addrFrom16(k.Daddr, family),
		SrcPort:   k.Sport,
		DstPort:   k.Dport,
		Proto:     k.Proto,
		Src:       Identity(v.SrcId),
		Dst:       Identity(v.DstId),
		RuleID:    v.RuleId,
		State:     ConnState(v.State),
		App:       App(v.App),
		Pending:   v.Flags&flagPending != 0,
		Reply:     v.Flags&flagReply != 0,
		Violation: v.Flags&flagViolation != 0,
		Idle:      idleSince(now, v.SeenNs),
	}
}

// Conntrack lists the connection-tracking entries.
func (d *Datapath) Conntrack() ([]Conn, error) {
	now, err := monotonicNow()
	if err != nil {
		return nil, err
	}
	var out []Conn
	var k bpf.DatapathCtKey
	var v bpf.DatapathCtEntry
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		out = append(out, decodeConn(k, v, now))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate conntrack: %w", err)
	}
	return out, nil
}

// SweepConntrack removes the entries idle past their state's timeout and
// returns how many it removed. The programs ignore such entries anyway;
// this gives their room back.
func (d *Datapath) SweepConntrack() (int, error) {
	now, err := monotonicNow()
	if err != nil {
		return 0, err
	}
	var stale []bpf.DatapathCtKey
	var k bpf.DatapathCtKey
	var v bpf.DatapathCtEntry
	it := d.objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		if idleSince(now, v.SeenNs) > d.cfg.Timeouts.timeout(ConnState(v.State)) {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("iterate conntrack: %w", err)
	}
	removed := 0
	for _, k := range stale {
		err := d.objs.Conntrack.Delete(k)
		switch {
		case err == nil:
			removed++
		case errors.Is(err, ebpf.ErrKeyNotExist):
		default:
			return removed, fmt.Errorf("delete expired conntrack entry: %w", err)
		}
	}
	return removed, nil
}

// sweepLoop runs SweepConntrack every SweepInterval until Close.
func (d *Datapath) sweepLoop() {
	defer close(d.sweepDone)
	t := time.NewTicker(d.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-d.stopSweep:
			return
		case <-t.C:
		}
		n, err := d.SweepConntrack()
		if err != nil {
			d.log.Warn("conntrack sweep", "err", err)
			continue
		}
		if n > 0 {
			d.log.Debug("conntrack swept", "removed", n)
		}
	}
}
