//go:build linux

package datapath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// TestPrivilegedDirectParseAgrees checks the two ways the program reads an
// IPv4 packet against each other: a packet without IP options, read straight
// from the buffer, and the same packet behind a 4-byte option (a NOP
// run), read with bpf_skb_load_bytes. For every case both must get the same
// verdict, and the same event: kind, ports, protocol and payload.
func TestPrivilegedDirectParseAgrees(t *testing.T) {
	skipUnlessRoot(t)
	tcp := func(dport uint16, flags byte, doff uint8, payload int) []byte {
		h := tcpHeader(0, dport, doff)
		h[13] = flags
		binary.BigEndian.PutUint32(h[4:], 0x01020304)
		if doff > 5 {
			h = append(h, bytes.Repeat([]byte{1}, int(doff-5)*4)...) // TCP NOP options
		}
		return append(h, bytes.Repeat([]byte{'x'}, payload)...)
	}
	udp := func(dport uint16, payload int) []byte {
		h := make([]byte, 8)
		binary.BigEndian.PutUint16(h[2:], dport)
		binary.BigEndian.PutUint16(h[4:], uint16(8+payload))
		return append(h, bytes.Repeat([]byte{'u'}, payload)...)
	}
	type variant struct {
		name  string
		proto uint8
		l4    []byte
		edit  func(ip []byte) // applied to the IP header after it is built
	}
	totDelta := func(d int) func([]byte) {
		return func(ip []byte) {
			binary.BigEndian.PutUint16(ip[2:], uint16(int(binary.BigEndian.Uint16(ip[2:]))+d))
		}
	}
	cases := []variant{
		{"tcp syn", unix.IPPROTO_TCP, tcp(8080, 0x02, 5, 0), nil},
		{"tcp ack with payload", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 40), nil},
		{"tcp with options and payload", unix.IPPROTO_TCP, tcp(8080, 0x18, 8, 7), nil},
		{"tcp to a denied port", unix.IPPROTO_TCP, tcp(7005, 0x18, 5, 3), nil},
		{"tcp to no rule", unix.IPPROTO_TCP, tcp(9999, 0x02, 5, 0), nil},
		{"tcp data offset 2", unix.IPPROTO_TCP, tcp(8080, 0x18, 2, 30), nil},
		{"tcp data offset past the packet", unix.IPPROTO_TCP, tcp(8080, 0x18, 15, 0), nil},
		{"total length short of the payload", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 40), totDelta(-25)},
		{"total length inside the tcp header", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 40), totDelta(-50)},
		{"total length inside the ip header", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 0), totDelta(-25)},
		{"total length zero", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 10), func(ip []byte) { ip[2], ip[3] = 0, 0 }},
		{"total length past the packet", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 10), totDelta(100)},
		{"don't fragment set", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 10), func(ip []byte) { ip[6] = 0x40 }},
		{"first fragment", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 10), func(ip []byte) { ip[6] = 0x20 }},
		{"later fragment", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 10), func(ip []byte) { ip[7] = 0x10 }},
		{"reserved flag set", unix.IPPROTO_TCP, tcp(8080, 0x18, 5, 10), func(ip []byte) { ip[6] = 0x80 }},
		{"udp with payload", unix.IPPROTO_UDP, udp(5353, 30), nil},
		{"udp, short payload", unix.IPPROTO_UDP, udp(5353, 2), nil},
		{"udp to no rule", unix.IPPROTO_UDP, udp(5000, 30), nil},
	}
	for _, mode := range []Mode{ModeDiscover, ModeProtect} {
		d := openDatapath(t, testConfig(t))
		t.Cleanup(func() { d.Destroy() })
		if err := d.ApplyTable(baseTable(mode)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if err := d.objs.Endpoints.Put(uint64(1), bpf.DatapathEndpoint{Identity: uint32(idA)}); err != nil {
			t.Fatalf("endpoint: %v", err)
		}
		log := startEvents(d)
		// Every case runs twice, without options (sport 20000+2i) and with
		// them (the next port); events are compared once all have arrived.
		verdicts := make([][2]uint32, len(cases))
		for i, tc := range cases {
			for v, ihl := range []int{5, 6} {
				l4 := bytes.Clone(tc.l4)
				binary.BigEndian.PutUint16(l4, uint16(20000+2*i+v))
				ip := ipv4Packet(ihl, tc.proto, l4)
				if ihl == 6 {
					copy(ip[20:24], []byte{1, 1, 1, 0}) // NOP NOP NOP EOL
				}
				if tc.edit != nil {
					tc.edit(ip)
				}
				r, _, err := d.objs.PalisadeTcxIngress.Benchmark(eth(0x0800, ip), 1, nil)
				if err != nil {
					t.Fatalf("%s: run: %v", tc.name, err)
				}
				verdicts[i][v] = r
			}
		}
		// The reader hands events over within milliseconds: wait until
		// none has come for half a second.
		events := func() []FlowEvent {
			log.mu.Lock()
			defer log.mu.Unlock()
			return append([]FlowEvent(nil), log.events...)
		}
		for n, deadline := -1, time.Now().Add(10*time.Second); time.Now().Before(deadline); {
			if m := len(events()); m == n {
				break
			} else {
				n = m
			}
			time.Sleep(500 * time.Millisecond)
		}
		bySport := map[uint16][]FlowEvent{}
		for _, e := range events() {
			bySport[e.SrcPort] = append(bySport[e.SrcPort], e)
		}
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%s/%s", mode, tc.name), func(t *testing.T) {
				got := verdicts[i]
				if got[0] != got[1] {
					t.Fatalf("verdict without options %d, with options %d", int32(got[0]), int32(got[1]))
				}
				a, b := bySport[uint16(20000+2*i)], bySport[uint16(20000+2*i+1)]
				if len(a) != len(b) {
					t.Fatalf("%d events without options, %d with them:\n%+v\n%+v", len(a), len(b), a, b)
				}
				for k := range a {
					x, y := a[k], b[k]
					if x.Kind != y.Kind || x.DstPort != y.DstPort || x.Proto != y.Proto || x.Action != y.Action ||
						x.Violation != y.Violation || x.Dropped != y.Dropped || x.Fragment != y.Fragment ||
						x.SrcAddr != y.SrcAddr || x.DstAddr != y.DstAddr || !bytes.Equal(x.Payload, y.Payload) {
						t.Fatalf("events differ:\nwithout options %+v\nwith options    %+v", x, y)
					}
				}
			})
		}
		if err := log.stop(); err != nil {
			t.Fatalf("events: %v", err)
		}
	}
}
