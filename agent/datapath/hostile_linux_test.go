//go:build linux

package datapath

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// udpReceiver listens in ns and returns the next datagram, or nil when none
// arrives within 700 ms (dropped).
func udpReceiver(t *testing.T, ns, network, addr string) func(skipWarm bool) []byte {
	t.Helper()
	var pc net.PacketConn
	var err error
	inNetns(t, ns, func() { pc, err = net.ListenPacket(network, addr) })
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	return func(skipWarm bool) []byte {
		buf := make([]byte, 65536)
		pc.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return nil
			}
			if string(buf[:n]) != "warm" || !skipWarm {
				return buf[:n]
			}
		}
	}
}

// sendUDP sends payload from ns with the given socket options applied.
func sendUDP(t *testing.T, ns string, v6 bool, dst net.IP, port int, payload []byte, opts func(fd int) error) {
	t.Helper()
	inNetns(t, ns, func() {
		family := unix.AF_INET
		if v6 {
			family = unix.AF_INET6
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		defer unix.Close(fd)
		if opts != nil {
			if err := opts(fd); err != nil {
				t.Fatalf("socket options: %v", err)
			}
		}
		var sa unix.Sockaddr
		if v6 {
			a := &unix.SockaddrInet6{Port: port}
			copy(a.Addr[:], dst.To16())
			sa = a
		} else {
			a := &unix.SockaddrInet4{Port: port}
			copy(a.Addr[:], dst.To4())
			sa = a
		}
		if err := unix.Sendto(fd, payload, 0, sa); err != nil {
			t.Fatalf("sendto %s:%d: %v", dst, port, err)
		}
	})
}

func TestPrivilegedHostilePackets(t *testing.T) {
	skipUnlessRoot(t)
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	n := newTestNet(t)
	d := openDatapath(t, testConfig(t))
	t.Cleanup(func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	inNetns(t, n.r, func() {
		for _, x := range []struct {
			ifindex int
			id      Identity
		}{{n.raIf, idA}, {n.rbIf, idB}} {
			if err := d.AttachInterface(x.ifindex, x.id); err != nil {
				t.Fatalf("attach: %v", err)
			}
		}
	})
	if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}

	big := bytes.Repeat([]byte("fragment"), 500) // 4000 bytes, MTU 1500
	noDF := func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
	}
	ipOptions := func(fd int) error {
		// NOP, NOP, NOP, end of options: a 24-byte IPv4 header.
		return unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x00")
	}
	v4, v6 := net.ParseIP("10.199.2.2"), net.ParseIP("fd99:2::2")
	recv := map[string]func(bool) []byte{
		"4/5353": udpReceiver(t, n.b, "udp4", "10.199.2.2:5353"),
		"4/5354": udpReceiver(t, n.b, "udp4", "10.199.2.2:5354"),
		"6/5353": udpReceiver(t, n.b, "udp6", "[fd99:2::2]:5353"),
		"6/5354": udpReceiver(t, n.b, "udp6", "[fd99:2::2]:5354"),
	}
	tests := []struct {
		name    string
		v6      bool
		port    int
		payload []byte
		opts    func(int) error
		want    bool
	}{
		{"ipv4 fragments allowed", false, 5353, big, noDF, true},
		{"ipv4 fragments denied", false, 5354, big, noDF, false},
		{"ipv6 fragments allowed", true, 5353, big, nil, true},
		{"ipv6 fragments denied", true, 5354, big, nil, false},
		{"ipv4 options allowed", false, 5353, []byte("opts"), ipOptions, true},
		{"ipv4 options denied", false, 5354, []byte("opts"), ipOptions, false},
	}
	// Resolve neighbours first, so the datagrams below are not queued
	// behind neighbour discovery.
	for _, w := range []struct {
		v6  bool
		dst net.IP
		key string
	}{{false, v4, "4/5353"}, {true, v6, "6/5353"}} {
		var got []byte
		for i := 0; i < 5 && got == nil; i++ {
			sendUDP(t, n.a, w.v6, w.dst, 5353, []byte("warm"), nil)
			got = recv[w.key](false)
		}
		if got == nil {
			t.Fatalf("allowed datagram to %s never arrived", w.dst)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst, fam := v4, "4"
			if tc.v6 {
				dst, fam = v6, "6"
			}
			sendUDP(t, n.a, tc.v6, dst, tc.port, tc.payload, tc.opts)
			got := recv[fam+"/"+itoa(tc.port)](true)
			if tc.want && !bytes.Equal(got, tc.payload) {
				t.Errorf("received %d bytes, want the %d sent", len(got), len(tc.payload))
			}
			if !tc.want && got != nil {
				t.Errorf("denied datagram of %d bytes arrived", len(got))
			}
		})
	}

	t.Run("truncated and inconsistent headers are dropped", func(t *testing.T) {
		before, err := d.Counters()
		if err != nil {
			t.Fatalf("counters: %v", err)
		}
		packets := [][]byte{
			ipv4Packet(5, unix.IPPROTO_TCP, []byte{0x1f, 0x90, 0x1f}),                  // 3 bytes of TCP
			ipv4Packet(5, unix.IPPROTO_UDP, []byte{0x14, 0xe9}),                        // 2 bytes of UDP
			ipv4Packet(5, unix.IPPROTO_TCP, append(tcpHeader(1234, 8080, 2), 0, 0, 0)), // data offset 2 words
		}
		inNetns(t, n.a, func() {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
			if err != nil {
				t.Fatalf("raw socket: %v", err)
			}
			defer unix.Close(fd)
			for i, p := range packets {
				sa := &unix.SockaddrInet4{}
				copy(sa.Addr[:], v4.To4())
				if err := unix.Sendto(fd, p, 0, sa); err != nil {
					t.Fatalf("send packet %d: %v", i, err)
				}
			}
		})
		deadline := time.Now().Add(3 * time.Second)
		for {
			after, err := d.Counters()
			if err != nil {
				t.Fatalf("counters: %v", err)
			}
			if got := after.MalformedDropped - before.MalformedDropped; got >= uint64(len(packets)) {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("malformed drops went up by %d, want %d", got, len(packets))
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func itoa(i int) string {
	b := []byte{}
	for i > 0 || len(b) == 0 {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
	}
	return string(b)
}

// ipv4Packet builds 10.199.1.2 -> 10.199.2.2 with ihl words of header.
func ipv4Packet(ihl int, proto uint8, payload []byte) []byte {
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+len(payload)))
	h[8] = 64
	h[9] = proto
	copy(h[12:], []byte{10, 199, 1, 2})
	copy(h[16:], []byte{10, 199, 2, 2})
	return append(h, payload...)
}

func tcpHeader(sport, dport uint16, doffWords uint8) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = doffWords << 4
	h[13] = 0x02
	return h
}
