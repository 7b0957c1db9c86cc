//go:build linux

package workload

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config configures a Source.
type Config struct {
	// File is the workloads YAML file.
	File string
	// NetnsDir holds the named network namespaces.
	NetnsDir string
	// HostNetns is the namespace that holds the host side of the veths
	// (where the datapath attaches); "" is this process's namespace.
	HostNetns string
	// Interval is how often the file and the namespaces are checked.
	Interval time.Duration
}

// DefaultConfig reads /etc/palisade/workloads.yaml every second.
func DefaultConfig() Config {
	return Config{File: "/etc/palisade/workloads.yaml", NetnsDir: "/var/run/netns", Interval: time.Second}
}

// Validate reports the first problem of the configuration.
func (c Config) Validate() error {
	switch {
	case c.File == "":
		return fmt.Errorf("workload config: File is empty")
	case !filepath.IsAbs(c.NetnsDir):
		return fmt.Errorf("workload config: NetnsDir %q is not absolute", c.NetnsDir)
	case c.HostNetns != "" && !filepath.IsAbs(c.HostNetns):
		return fmt.Errorf("workload config: HostNetns %q is not absolute", c.HostNetns)
	case c.Interval <= 0:
		return fmt.Errorf("workload config: Interval %s is not positive", c.Interval)
	}
	return nil
}

// Source watches the workloads file and the namespaces it names.
type Source struct {
	cfg Config
	log *slog.Logger
}

// New returns a source.
func New(cfg Config, log *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, log: log}, nil
}

// Run reports every workload as Added on the first scan, then changes as
// the file or the namespaces change, until ctx is done. A file that does
// not parse is reported through the log and the last good list is kept.
// A workload whose namespace cannot be read is absent until it can.
func (s *Source) Run(ctx context.Context, fn func(Change)) error {
	known := map[string]Endpoint{}
	var list []Workload
	var lastFile []byte
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		data, err := os.ReadFile(s.cfg.File)
		switch {
		case err != nil && os.IsNotExist(err):
			list, lastFile = nil, nil
		case err != nil:
			s.log.Warn("read workloads file", "file", s.cfg.File, "err", err)
		case !bytes.Equal(data, lastFile):
			ws, perr := Parse(data)
			if perr != nil {
				s.log.Warn("workloads file rejected; keeping the previous list", "file", s.cfg.File, "err", perr)
			} else {
				list = ws
			}
			lastFile = data
		}
		cur := map[string]Endpoint{}
		resolving := list
		var host HostLinks
		if len(list) > 0 {
			if host, err = ListHostLinks(s.cfg.HostNetns); err != nil {
				s.log.Debug("host namespace unreadable", "netns", s.cfg.HostNetns, "err", err)
				resolving = nil
			}
		}
		for _, w := range resolving {
			ifs, err := host.Resolve(filepath.Join(s.cfg.NetnsDir, w.Netns))
			if err != nil {
				s.log.Debug("workload namespace unreadable", "workload", w.ID(), "err", err)
				continue
			}
			cur[w.ID()] = Endpoint{Workload: w, Interfaces: ifs}
		}
		for _, c := range Diff(known, cur) {
			fn(c)
		}
		known = cur
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// InNetns runs fn on a thread inside the network namespace at path (the
// calling thread's namespace when path is empty).
func InNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	// A fresh goroutine whose thread is discarded if it cannot return to
	// the original namespace.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

type link struct {
	index, peer int
	name, kind  string
	peerNetns   bool
	mac         net.HardwareAddr
}

func dumpLinks() (map[int]link, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETLINK, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("dump links: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("parse links: %w", err)
	}
	out := map[int]link{}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		l := link{index: int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.IFLA_IFNAME:
				l.name = string(bytes.TrimRight(a.Value, "\x00"))
			case unix.IFLA_LINK:
				if len(a.Value) >= 4 {
					l.peer = int(binary.NativeEndian.Uint32(a.Value))
				}
			case unix.IFLA_LINK_NETNSID:
				l.peerNetns = true
			case unix.IFLA_ADDRESS:
				if len(a.Value) == 6 {
					l.mac = net.HardwareAddr(bytes.Clone(a.Value))
				}
			case unix.IFLA_LINKINFO:
				l.kind = linkKind(a.Value)
			}
		}
		out[l.index] = l
	}
	return out, nil
}

// linkKind reads IFLA_INFO_KIND from a nested IFLA_LINKINFO.
func linkKind(b []byte) string {
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:])
		if n < 4 || n > len(b) {
			return ""
		}
		if typ == unix.IFLA_INFO_KIND {
			return string(bytes.TrimRight(b[4:n], "\x00"))
		}
		b = b[min(len(b), (n+3)&^3):]
	}
	return ""
}

func dumpAddrs() (map[int][]netip.Prefix, error) {
	rib, err := syscall.NetlinkRIB(unix.RTM_GETADDR, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("dump addresses: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("parse addresses: %w", err)
	}
	out := map[int][]netip.Prefix{}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWADDR || len(m.Data) < unix.SizeofIfAddrmsg {
			continue
		}
		bits, scope := int(m.Data[1]), m.Data[3]
		index := int(binary.NativeEndian.Uint32(m.Data[4:8]))
		if scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			if a.Attr.Type != unix.IFA_ADDRESS {
				continue
			}
			if addr, ok := netip.AddrFromSlice(a.Value); ok {
				out[index] = append(out[index], netip.PrefixFrom(addr.Unmap(), bits))
			}
		}
	}
	for i := range out {
		slices.SortFunc(out[i], func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	}
	return out, nil
}

// Resolve lists the interfaces of the namespace at netnsPath with their
// global addresses, and, for veths, the peer in hostNetns ("" for this
// process's namespace). A peer is accepted only if it is a veth there whose
// own peer is the workload's interface.
func Resolve(netnsPath, hostNetns string) ([]Interface, error) {
	host, err := ListHostLinks(hostNetns)
	if err != nil {
		return nil, err
	}
	return host.Resolve(netnsPath)
}

// HostLinks is one listing of the links of the namespace holding the host
// side of the veths, so that many workloads resolve against one listing.
type HostLinks struct{ links map[int]link }

// ListHostLinks lists the links of hostNetns ("" for this process's
// namespace).
func ListHostLinks(hostNetns string) (HostLinks, error) {
	var h HostLinks
	err := InNetns(hostNetns, func() error {
		var err error
		h.links, err = dumpLinks()
		return err
	})
	return h, err
}

// Resolve is Resolve(netnsPath, hostNetns) against this listing of
// hostNetns.
func (h HostLinks) Resolve(netnsPath string) ([]Interface, error) {
	var links map[int]link
	var addrs map[int][]netip.Prefix
	err := InNetns(netnsPath, func() error {
		var err error
		if links, err = dumpLinks(); err != nil {
			return err
		}
		addrs, err = dumpAddrs()
		return err
	})
	if err != nil {
		return nil, err
	}
	host := h.links
	var out []Interface
	for _, idx := range slices.Sorted(maps.Keys(links)) {
		l := links[idx]
		if l.name == "lo" {
			continue
		}
		ifc := Interface{Name: l.name, Index: l.index, Kind: l.kind, Addrs: addrs[idx], MAC: l.mac}
		if l.kind == "veth" && l.peerNetns && l.peer > 0 {
			if h, ok := host[l.peer]; ok && h.kind == "veth" && h.peer == l.index {
				ifc.HostIf, ifc.HostIfN, ifc.HostMAC = h.index, h.name, h.mac
			}
		}
		out = append(out, ifc)
	}
	return out, nil
}
