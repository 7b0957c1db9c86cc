//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// Local delivery. A packet a guarded workload sends to another workload
// of this node is decided for both ends at the sender's tcx ingress and,
// if both pass, handed straight into the receiver's namespace
// (bpf_redirect_peer), past host routing and the receiver's egress hook.
// The programs find the receiver in the pinned map local_endpoints, which
// only SetLocalEndpoint fills: it is its own record across restarts.

// localKey encodes an address as the programs key it (IPv4-mapped).
func localKey(a netip.Addr) bpf.DatapathLocalKey {
	return bpf.DatapathLocalKey{Addr: a.As16()}
}

// SetLocalEndpoint records ep as a workload packets of other guarded
// workloads are delivered to directly, replacing what was set for
// ep.Ifindex. With Config.LocalDelivery off it only removes what was set.
func (d *Datapath) SetLocalEndpoint(ep LocalEndpoint) error {
	if err := ep.Validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := map[bpf.DatapathLocalKey]bool{}
	if d.cfg.LocalDelivery {
		v := bpf.DatapathLocalEndpoint{Ifindex: uint32(ep.Ifindex)}
		copy(v.Mac[:], ep.MAC)
		copy(v.HostMac[:], ep.HostMAC)
		for _, a := range ep.Addrs {
			k := localKey(a)
			if err := d.objs.LocalEndpoints.Put(k, v); err != nil {
				return fmt.Errorf("set local endpoint %s of interface %d: %w", a, ep.Ifindex, err)
			}
			keep[k] = true
		}
	}
	return d.removeLocal(func(k bpf.DatapathLocalKey, v bpf.DatapathLocalEndpoint) bool {
		return int(v.Ifindex) == ep.Ifindex && !keep[k]
	})
}

// LocalEndpoints returns the recorded local endpoints' addresses, by
// interface index.
func (d *Datapath) LocalEndpoints() (map[int][]netip.Addr, error) {
	out := map[int][]netip.Addr{}
	var k bpf.DatapathLocalKey
	var v bpf.DatapathLocalEndpoint
	it := d.objs.LocalEndpoints.Iterate()
	for it.Next(&k, &v) {
		out[int(v.Ifindex)] = append(out[int(v.Ifindex)], netip.AddrFrom16(k.Addr).Unmap())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate local endpoints: %w", err)
	}
	return out, nil
}

// removeLocal deletes the local endpoint entries gone says go.
func (d *Datapath) removeLocal(gone func(bpf.DatapathLocalKey, bpf.DatapathLocalEndpoint) bool) error {
	var del []bpf.DatapathLocalKey
	var k bpf.DatapathLocalKey
	var v bpf.DatapathLocalEndpoint
	it := d.objs.LocalEndpoints.Iterate()
	for it.Next(&k, &v) {
		if gone(k, v) {
			del = append(del, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate local endpoints: %w", err)
	}
	var errs []error
	for _, k := range del {
		if err := d.objs.LocalEndpoints.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete local endpoint %s: %w", netip.AddrFrom16(k.Addr).Unmap(), err))
		}
	}
	return errors.Join(errs...)
}
