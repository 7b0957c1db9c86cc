package datapath

import (
	"fmt"
	"net"
	"net/netip"
)

// LocalEndpoint is a workload of this node that packets of other guarded
// workloads are delivered to directly.
type LocalEndpoint struct {
	Ifindex int              // host-side veth, as given to AttachInterface
	Addrs   []netip.Addr     // the workload's addresses on that interface
	MAC     net.HardwareAddr // the workload's own interface (the veth's peer)
	HostMAC net.HardwareAddr // the host-side veth
}

// Validate reports the first field of e that cannot be used.
func (e LocalEndpoint) Validate() error {
	if e.Ifindex <= 0 {
		return fmt.Errorf("%w: local endpoint: Ifindex %d, want > 0", ErrBadEntry, e.Ifindex)
	}
	if len(e.Addrs) == 0 {
		return fmt.Errorf("%w: local endpoint of interface %d: no Addrs", ErrBadEntry, e.Ifindex)
	}
	for _, a := range e.Addrs {
		if !a.IsValid() {
			return fmt.Errorf("%w: local endpoint of interface %d: Addrs holds an invalid address", ErrBadEntry, e.Ifindex)
		}
		if a.Is4In6() {
			return fmt.Errorf("%w: local endpoint of interface %d: address %s is IPv4-mapped; give it as IPv4", ErrBadEntry, e.Ifindex, a)
		}
		if a.Zone() != "" {
			return fmt.Errorf("%w: local endpoint of interface %d: address %s has a zone", ErrBadEntry, e.Ifindex, a)
		}
	}
	for _, m := range []struct {
		name string
		mac  net.HardwareAddr
	}{{"MAC", e.MAC}, {"HostMAC", e.HostMAC}} {
		if len(m.mac) != 6 {
			return fmt.Errorf("%w: local endpoint of interface %d: %s %q is %d bytes, want 6", ErrBadEntry, e.Ifindex, m.name, m.mac.String(), len(m.mac))
		}
	}
	return nil
}
