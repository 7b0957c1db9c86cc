//go:build linux

package datapath

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/bpf"
)

const (
	tcxNext = ^uint32(0) // TCX_NEXT (-1)
	tcxDrop = 2
)

// denyAllDatapath is a datapath in Protect with no verdicts: nothing IP may
// pass but neighbour discovery. Test runs see loopback (ifindex 1) as the
// workload's interface.
func denyAllDatapath(t testing.TB) *Datapath {
	t.Helper()
	cfg := testConfig(t)
	d := openDatapath(t, cfg)
	t.Cleanup(func() { d.Destroy() })
	tab := baseTable(ModeProtect)
	tab.Verdicts = nil
	if err := d.ApplyTable(tab); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := d.objs.Endpoints.Put(uint64(1), bpf.DatapathEndpoint{Identity: uint32(idA)}); err != nil {
		t.Fatalf("endpoint: %v", err)
	}
	return d
}

func eth(ethertype uint16, l3 []byte) []byte {
	f := make([]byte, 14)
	binary.BigEndian.PutUint16(f[12:], ethertype)
	return append(f, l3...)
}

func ipv6Packet(nexthdr uint8, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = nexthdr
	h[7] = 64
	src, dst := netip.MustParseAddr("fd99:1::2").As16(), netip.MustParseAddr("fd99:2::2").As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	return append(h, payload...)
}

// extHeaders chains n hop-by-hop/destination option headers ending in last.
func extHeaders(n int, last uint8, payload []byte) (uint8, []byte) {
	next := last
	out := payload
	for i := 0; i < n; i++ {
		h := make([]byte, 8)
		h[0] = next
		out = append(h, out...)
		next = 60
	}
	return next, out
}

// TestPrivilegedHostileFrames runs the program on crafted frames. Frames
// cut inside the IP header are not here: the kernel's test run refuses to
// build them (TestPrivilegedHostilePackets sends truncated TCP for real).
func TestPrivilegedHostileFrames(t *testing.T) {
	skipUnlessRoot(t)
	d := denyAllDatapath(t)
	udp := []byte{0x9c, 0x40, 0x14, 0xe9, 0, 12, 0, 0, 'd', 'a', 't', 'a'}
	tcpSyn := tcpHeader(40000, 8080, 5)
	ns := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 16)...)
	tests := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"arp passes", eth(0x0806, make([]byte, 28)), tcxNext},
		{"neighbour solicitation passes", eth(0x86dd, ipv6Packet(58, ns)), tcxNext},
		{"plain tcp denied", eth(0x0800, ipv4Packet(5, 6, tcpSyn)), tcxDrop},
		{"ipv4 header length 4 words", eth(0x0800, ipv4Packet(4, 6, tcpSyn)), tcxDrop},
		{"ipv4 with options", eth(0x0800, ipv4Packet(8, 6, tcpSyn)), tcxDrop},
		{"ipv4 total length below header", func() []byte {
			p := ipv4Packet(5, 6, tcpSyn)
			binary.BigEndian.PutUint16(p[2:], 12)
			return eth(0x0800, p)
		}(), tcxDrop},
		{"tcp cut in the header", eth(0x0800, ipv4Packet(5, 6, tcpSyn[:10])), tcxDrop},
		{"tcp data offset 2", eth(0x0800, ipv4Packet(5, 6, tcpHeader(40000, 8080, 2))), tcxDrop},
		{"ipv4 later fragment, first unseen", func() []byte {
			p := ipv4Packet(5, 17, udp)
			binary.BigEndian.PutUint16(p[6:], 100) // offset 800 bytes
			return eth(0x0800, p)
		}(), tcxDrop},
		{"ipv4 version 6 in ipv4 frame", func() []byte {
			p := ipv4Packet(5, 6, tcpSyn)
			p[0] = 0x65
			return eth(0x0800, p)
		}(), tcxDrop},
		{"ipv6 udp denied", eth(0x86dd, ipv6Packet(17, udp)), tcxDrop},
		{"ipv6 two extension headers", func() []byte {
			nh, pl := extHeaders(2, 17, udp)
			return eth(0x86dd, ipv6Packet(nh, pl))
		}(), tcxDrop},
		{"ipv6 seven extension headers", func() []byte {
			nh, pl := extHeaders(7, 58, ns)
			return eth(0x86dd, ipv6Packet(nh, pl))
		}(), tcxDrop},
		{"ipv6 extension header past the end", func() []byte {
			nh, pl := extHeaders(1, 17, nil)
			pl[1] = 200
			return eth(0x86dd, ipv6Packet(nh, pl))
		}(), tcxDrop},
		{"vlan tagged ipv4", eth(0x8100, append([]byte{0, 1, 0x08, 0}, ipv4Packet(5, 6, tcpSyn)...)), tcxDrop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := d.objs.PalisadeTcxIngress.Benchmark(tc.frame, 1, nil)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got != tc.want {
				t.Errorf("program returned %d, want %d", int32(got), int32(tc.want))
			}
		})
	}
}

// FuzzPrivilegedDatapathProgram feeds arbitrary frames to the program in a
// Protect datapath with no verdicts: an IPv4 frame must never pass, and an
// IPv6 frame may pass only as ICMPv6 (neighbour discovery) possibly behind
// extension headers.
func FuzzPrivilegedDatapathProgram(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root: runs eBPF programs")
	}
	f.Add(eth(0x0800, ipv4Packet(5, 6, tcpHeader(1, 2, 5))))
	f.Add(eth(0x0800, ipv4Packet(7, 17, []byte{0, 53, 0, 53, 0, 8, 0, 0})))
	f.Add(eth(0x86dd, ipv6Packet(6, tcpHeader(1, 2, 5))))
	nh, pl := extHeaders(3, 44, make([]byte, 16))
	f.Add(eth(0x86dd, ipv6Packet(nh, pl)))
	f.Add(eth(0x0806, make([]byte, 28)))
	d := denyAllDatapath(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return
		}
		got, _, err := d.objs.PalisadeTcxIngress.Benchmark(frame, 1, nil)
		if errors.Is(err, unix.EINVAL) {
			return // the kernel builds no skb from a frame cut inside the IP header
		}
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		if got != tcxNext {
			return
		}
		switch binary.BigEndian.Uint16(frame[12:]) {
		case 0x0800:
			t.Fatalf("IPv4 frame passed a deny-all Protect policy: %x", frame)
		case 0x86dd:
			if len(frame) < 54 {
				t.Fatalf("short IPv6 frame passed: %x", frame)
			}
			if n := frame[20]; n != unix.IPPROTO_ICMPV6 && n != 0 && n != 43 && n != 44 && n != 51 && n != 60 {
				t.Fatalf("IPv6 frame with next header %d passed: %x", n, frame)
			}
		}
	})
}
