//go:build linux

package datapath

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// netMACs are the MAC addresses of a testNet's interfaces.
type netMACs struct{ a, b, ra, rb net.HardwareAddr }

func (n *testNet) macs(t testing.TB) netMACs {
	t.Helper()
	var m netMACs
	for _, x := range []struct {
		ns, name string
		mac      *net.HardwareAddr
	}{{n.a, "eth0", &m.a}, {n.b, "eth0", &m.b}, {n.r, "ra", &m.ra}, {n.r, "rb", &m.rb}} {
		inNetns(t, x.ns, func() {
			ifc, err := net.InterfaceByName(x.name)
			if err != nil {
				t.Fatalf("interface %s in %s: %v", x.name, x.ns, err)
			}
			*x.mac = ifc.HardwareAddr
		})
	}
	return m
}

// setLocal records a and b as local endpoints of d.
func (n *testNet) setLocal(t testing.TB, d *Datapath) {
	t.Helper()
	m := n.macs(t)
	for _, ep := range []LocalEndpoint{
		{Ifindex: n.raIf, Addrs: []netip.Addr{netip.MustParseAddr("10.199.1.2"), netip.MustParseAddr("fd99:1::2")}, MAC: m.a, HostMAC: m.ra},
		{Ifindex: n.rbIf, Addrs: []netip.Addr{netip.MustParseAddr("10.199.2.2"), netip.MustParseAddr("fd99:2::2")}, MAC: m.b, HostMAC: m.rb},
	} {
		if err := d.SetLocalEndpoint(ep); err != nil {
			t.Fatalf("set local endpoint %d: %v", ep.Ifindex, err)
		}
	}
}

// forwarded returns the datagrams namespace ns forwarded, IPv4 and IPv6.
func forwarded(t testing.TB, ns string) (v4, v6 uint64) {
	t.Helper()
	var snmp, snmp6 []byte
	inNetns(t, ns, func() {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			t.Fatalf("read snmp: %v", err)
		}
		if snmp6, err = os.ReadFile("/proc/thread-self/net/snmp6"); err != nil {
			t.Fatalf("read snmp6: %v", err)
		}
	})
	var names []string
	for _, line := range strings.Split(string(snmp), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "ForwDatagrams"); i > 0 && i < len(f) {
			v4, _ = strconv.ParseUint(f[i], 10, 64)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(snmp6))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "Ip6OutForwDatagrams" {
			v6, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	if names == nil {
		t.Fatalf("no Ip: line in snmp of %s", ns)
	}
	return v4, v6
}

// timeExceeded returns the ICMP and ICMPv6 time exceeded messages
// namespace ns sent.
func timeExceeded(t testing.TB, ns string) uint64 {
	t.Helper()
	var snmp, snmp6 []byte
	inNetns(t, ns, func() {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			t.Fatalf("read snmp: %v", err)
		}
		if snmp6, err = os.ReadFile("/proc/thread-self/net/snmp6"); err != nil {
			t.Fatalf("read snmp6: %v", err)
		}
	})
	var sum uint64
	var names []string
	for _, line := range strings.Split(string(snmp), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "OutTimeExcds"); i > 0 && i < len(f) {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			sum += v
		}
	}
	for _, line := range strings.Split(string(snmp6), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Icmp6OutTimeExcds" {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			sum += v
		}
	}
	return sum
}

func localRedirects(t testing.TB, d *Datapath) uint64 {
	t.Helper()
	c, err := d.Counters()
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	return c.LocalRedirected
}

// bothWays is baseTable with the same TCP and UDP rules from b to a.
func bothWays(mode Mode) Table {
	tb := baseTable(mode)
	tb.Verdicts = append(tb.Verdicts,
		VerdictEntry{SrcID: idB, DstID: idA, Proto: unix.IPPROTO_TCP, PortLo: 8080, PortHi: 8080, Action: ActionAllow, RuleID: 5},
		VerdictEntry{SrcID: idB, DstID: idA, Proto: unix.IPPROTO_UDP, PortLo: 5353, PortHi: 5353, Action: ActionAllow, RuleID: 6})
	return tb
}

// udpEcho echoes every datagram sent to addr in ns.
func udpEcho(t *testing.T, ns, network, addr string) {
	t.Helper()
	var pc net.PacketConn
	var err error
	inNetns(t, ns, func() { pc, err = net.ListenPacket(network, addr) })
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
}

// udpExchanges says whether a datagram from ns to addr comes back, with
// three tries.
func udpExchanges(t testing.TB, ns, network, addr string) bool {
	t.Helper()
	var c net.Conn
	var err error
	inNetns(t, ns, func() { c, err = net.Dial(network, addr) })
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		if roundTrip(c, "hello") == nil {
			return true
		}
	}
	return false
}

// tcpExchanges says whether a TCP exchange from ns to addr works, with
// three tries.
func tcpExchanges(t testing.TB, ns, network, addr string) bool {
	t.Helper()
	for i := 0; i < 3; i++ {
		c, err := dial(t, ns, network, addr)
		if err != nil {
			continue
		}
		err = roundTrip(c, "ping")
		c.Close()
		if err == nil {
			return true
		}
	}
	return false
}

func TestPrivilegedLocalDelivery(t *testing.T) {
	skipUnlessRoot(t)
	n := newTestNet(t)
	d := openDatapath(t, testConfig(t))
	defer d.Destroy()
	n.attach(t, d)
	if err := d.ApplyTable(bothWays(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for _, ns := range []struct{ ns, v4, v6 string }{{n.a, "10.199.1.2", "[fd99:1::2]"}, {n.b, "10.199.2.2", "[fd99:2::2]"}} {
		echoServer(t, ns.ns, "tcp4", ns.v4+":8080")
		echoServer(t, ns.ns, "tcp6", ns.v6+":8080")
		udpEcho(t, ns.ns, "udp4", ns.v4+":5353")
		udpEcho(t, ns.ns, "udp6", ns.v6+":5353")
	}
	n.setLocal(t, d)

	for _, c := range []struct {
		name, from, network, addr string
		v6                        bool
	}{
		{"tcp4 a to b", n.a, "tcp4", "10.199.2.2:8080", false},
		{"tcp4 b to a", n.b, "tcp4", "10.199.1.2:8080", false},
		{"tcp6 a to b", n.a, "tcp6", "[fd99:2::2]:8080", true},
		{"tcp6 b to a", n.b, "tcp6", "[fd99:1::2]:8080", true},
		{"udp4 a to b", n.a, "udp4", "10.199.2.2:5353", false},
		{"udp4 b to a", n.b, "udp4", "10.199.1.2:5353", false},
		{"udp6 a to b", n.a, "udp6", "[fd99:2::2]:5353", true},
		{"udp6 b to a", n.b, "udp6", "[fd99:1::2]:5353", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := localRedirects(t, d)
			f4, f6 := forwarded(t, n.r)
			var ok bool
			if strings.HasPrefix(c.network, "tcp") {
				ok = tcpExchanges(t, c.from, c.network, c.addr)
			} else {
				ok = udpExchanges(t, c.from, c.network, c.addr)
			}
			if !ok {
				t.Fatalf("exchange with %s failed", c.addr)
			}
			// Request and answer: at least two packets redirected.
			if got := localRedirects(t, d) - before; got < 2 {
				t.Errorf("local redirects went up by %d, want >= 2", got)
			}
			g4, g6 := forwarded(t, n.r)
			if g4 != f4 || g6 != f6 {
				t.Errorf("host forwarded %d IPv4 and %d IPv6 datagrams, want none", g4-f4, g6-f6)
			}
		})
	}
}

// TestPrivilegedLocalDeliveryHeaders checks the frame the receiver gets:
// the MACs and TTL or hop limit routing through the host would give.
func TestPrivilegedLocalDeliveryHeaders(t *testing.T) {
	skipUnlessRoot(t)
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			n := newTestNet(t)
			cfg := testConfig(t)
			cfg.LocalDelivery = local
			d := openDatapath(t, cfg)
			defer d.Destroy()
			n.attach(t, d)
			if err := d.ApplyTable(bothWays(ModeProtect)); err != nil {
				t.Fatalf("apply: %v", err)
			}
			n.setLocal(t, d)
			m := n.macs(t)
			for _, c := range []struct {
				network, addr string
			}{{"udp4", "10.199.2.2:5353"}, {"udp6", "[fd99:2::2]:5353"}} {
				frame := captureUDP(t, n, c.network, c.addr)
				if got := net.HardwareAddr(frame[0:6]); got.String() != m.b.String() {
					t.Errorf("%s: destination MAC %s, want b's %s", c.network, got, m.b)
				}
				if got := net.HardwareAddr(frame[6:12]); got.String() != m.rb.String() {
					t.Errorf("%s: source MAC %s, want rb's %s", c.network, got, m.rb)
				}
				ttl := frame[14+8]
				if c.network == "udp6" {
					ttl = frame[14+7]
				}
				if ttl != 63 {
					t.Errorf("%s: TTL %d, want 63 (sent with 64)", c.network, ttl)
				}
				if c.network == "udp4" {
					if sum := ipv4Checksum(frame[14 : 14+20]); sum != 0 {
						t.Errorf("IPv4 header checksum does not add up: %#04x", sum)
					}
				}
			}
			if got := localRedirects(t, d); (got > 0) != local {
				t.Errorf("local redirects %d with LocalDelivery %v", got, local)
			}
		})
	}
}

func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// captureUDP sends a datagram from a to addr in b and returns the frame b's
// eth0 received it in.
func captureUDP(t *testing.T, n *testNet, network, addr string) []byte {
	t.Helper()
	var fd int
	var err error
	inNetns(t, n.b, func() {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return
		}
		var ifc *net.Interface
		if ifc, err = net.InterfaceByName("eth0"); err != nil {
			return
		}
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index})
	})
	if err != nil {
		t.Fatalf("packet socket in b: %v", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("receive timeout: %v", err)
	}
	port := netip.MustParseAddrPort(addr).Port()
	var c net.Conn
	inNetns(t, n.a, func() { c, err = net.Dial(network, addr) })
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	marker := []byte("palisade-local-" + network)
	buf := make([]byte, 2048)
	for try := 0; try < 5; try++ {
		if _, err := c.Write(marker); err != nil {
			t.Fatalf("send: %v", err)
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			k, _, err := unix.Recvfrom(fd, buf, 0)
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				break
			}
			if err != nil {
				t.Fatalf("capture: %v", err)
			}
			f := buf[:k]
			if k < 14+20+8 || !bytes.HasSuffix(f, marker) {
				continue
			}
			var dport uint16
			switch binary.BigEndian.Uint16(f[12:14]) {
			case unix.ETH_P_IP:
				if f[14+9] != unix.IPPROTO_UDP {
					continue
				}
				dport = binary.BigEndian.Uint16(f[14+int(f[14]&0xf)*4+2:])
			case unix.ETH_P_IPV6:
				if f[14+6] != unix.IPPROTO_UDP {
					continue
				}
				dport = binary.BigEndian.Uint16(f[14+40+2:])
			}
			if dport == port {
				return slices.Clone(f)
			}
		}
	}
	t.Fatalf("no %s datagram to %s seen in b", network, addr)
	return nil
}

// flowSummary is what a run reports about a flow, without its ephemeral
// port.
type flowSummary struct {
	Endpoint string
	Dir      Direction
	Kind     EventKind
	Src, Dst Identity
	RuleID   uint32
	Reply    bool
	Violate  bool
	Dropped  bool
	Port     uint16
	Proto    uint8
}

// TestPrivilegedLocalDeliveryDecides checks that the receiver's decision
// rules a delivered packet as it does a routed one: the same events and
// conntrack entries, with the receiver's endpoint and direction, and a flow
// its policy does not allow dropped.
func TestPrivilegedLocalDeliveryDecides(t *testing.T) {
	skipUnlessRoot(t)
	runs := map[bool][]flowSummary{}
	cts := map[bool][]flowSummary{}
	for _, local := range []bool{false, true} {
		t.Run(fmt.Sprintf("local=%v", local), func(t *testing.T) {
			n := newTestNet(t)
			cfg := testConfig(t)
			cfg.LocalDelivery = local
			d := openDatapath(t, cfg)
			defer d.Destroy()
			n.attach(t, d)
			// a in Discover passes anything; b in Protect takes 8080 only.
			tb := baseTable(ModeProtect)
			tb.Modes[idA] = ModeDiscover
			if err := d.ApplyTable(tb); err != nil {
				t.Fatalf("apply: %v", err)
			}
			n.setLocal(t, d)
			events := startEvents(d)
			defer events.stop()
			echoServer(t, n.b, "tcp4", "10.199.2.2:8080")
			echoServer(t, n.b, "tcp4", "10.199.2.2:9090")

			if !tcpExchanges(t, n.a, "tcp4", "10.199.2.2:8080") {
				t.Fatalf("allowed flow to 8080 failed")
			}
			if c, err := dial(t, n.a, "tcp4", "10.199.2.2:9090"); err == nil {
				c.Close()
				t.Fatalf("flow to 9090 connected; b's policy does not allow it")
			}
			e, ok := events.wait(func(e FlowEvent) bool {
				return e.Kind == EventViolation && e.DstPort == 9090 && e.Dropped
			})
			if !ok {
				t.Fatalf("no dropped violation for port 9090")
			}
			if e.Endpoint != uint64(n.rbIf) || e.Dir != DirIn || e.Src != idA || e.Dst != idB {
				t.Errorf("violation %+v: want endpoint %d (rb), dir in, %d -> %d", e, n.rbIf, idA, idB)
			}
			// Let the events settle: the count holds still for 300 ms.
			last := -1
			for i := 0; i < 50; i++ {
				events.mu.Lock()
				k := len(events.events)
				events.mu.Unlock()
				if k == last {
					break
				}
				last = k
				time.Sleep(300 * time.Millisecond)
			}
			ifName := map[uint64]string{uint64(n.raIf): "ra", uint64(n.rbIf): "rb"}
			set := map[flowSummary]bool{}
			events.mu.Lock()
			for _, e := range events.events {
				port := e.DstPort
				if e.Reply {
					port = e.SrcPort
				}
				set[flowSummary{Endpoint: ifName[e.Endpoint], Dir: e.Dir, Kind: e.Kind, Src: e.Src, Dst: e.Dst,
					RuleID: e.RuleID, Reply: e.Reply, Violate: e.Violation, Dropped: e.Dropped, Port: port, Proto: e.Proto}] = true
			}
			events.mu.Unlock()
			runs[local] = sortedSummaries(set)

			conns, err := d.Conntrack()
			if err != nil {
				t.Fatalf("conntrack: %v", err)
			}
			set = map[flowSummary]bool{}
			for _, c := range conns {
				port := c.DstPort
				if c.Reply {
					port = c.SrcPort
				}
				set[flowSummary{Endpoint: ifName[c.Endpoint], Dir: c.Dir, Src: c.Src, Dst: c.Dst, RuleID: c.RuleID,
					Reply: c.Reply, Violate: c.Violation, Port: port, Proto: c.Proto}] = true
			}
			cts[local] = sortedSummaries(set)
			if got := localRedirects(t, d); (got > 0) != local {
				t.Errorf("local redirects %d with LocalDelivery %v", got, local)
			}
		})
	}
	if t.Failed() {
		return
	}
	t.Logf("events: %+v", runs[true])
	t.Logf("conntrack: %+v", cts[true])
	if !slices.Equal(runs[false], runs[true]) {
		t.Errorf("events differ:\nrouted: %+v\nlocal:  %+v", runs[false], runs[true])
	}
	if !slices.Equal(cts[false], cts[true]) {
		t.Errorf("conntrack entries differ:\nrouted: %+v\nlocal:  %+v", cts[false], cts[true])
	}
	// The receiver's own entries are there: endpoint rb, in towards it.
	if !slices.ContainsFunc(cts[true], func(s flowSummary) bool {
		return s.Endpoint == "rb" && s.Dir == DirIn && !s.Reply && s.Port == 8080 && s.RuleID == 1
	}) {
		t.Errorf("no conntrack entry of rb, dir in, for 8080 under rule 1: %+v", cts[true])
	}
}

func sortedSummaries(set map[flowSummary]bool) []flowSummary {
	out := make([]flowSummary, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b flowSummary) int { return strings.Compare(fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b)) })
	return out
}

// TestPrivilegedLocalDeliveryTTL checks that a packet whose TTL or hop
// limit routing would exhaust takes the routed path: the host answers
// time exceeded, nothing is redirected.
func TestPrivilegedLocalDeliveryTTL(t *testing.T) {
	skipUnlessRoot(t)
	n := newTestNet(t)
	d := openDatapath(t, testConfig(t))
	defer d.Destroy()
	n.attach(t, d)
	if err := d.ApplyTable(bothWays(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	udpEcho(t, n.b, "udp4", "10.199.2.2:5353")
	udpEcho(t, n.b, "udp6", "[fd99:2::2]:5353")
	n.setLocal(t, d)
	for _, c := range []struct{ network, addr string }{{"udp4", "10.199.2.2:5353"}, {"udp6", "[fd99:2::2]:5353"}} {
		t.Run(c.network, func(t *testing.T) {
			var conn net.Conn
			var err error
			inNetns(t, n.a, func() { conn, err = net.Dial(c.network, c.addr) })
			if err != nil {
				t.Fatalf("dial %s: %v", c.addr, err)
			}
			defer conn.Close()
			rc, err := conn.(*net.UDPConn).SyscallConn()
			if err != nil {
				t.Fatalf("raw conn: %v", err)
			}
			setHops := func(hops int) {
				t.Helper()
				var serr error
				err := rc.Control(func(fd uintptr) {
					if c.network == "udp4" {
						serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, hops)
					} else {
						serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, hops)
					}
				})
				if err != nil || serr != nil {
					t.Fatalf("set TTL %d: %v %v", hops, err, serr)
				}
			}
			before := localRedirects(t, d)
			exceeded := timeExceeded(t, n.r)
			setHops(1)
			// The host drops it and answers time exceeded (which a's
			// policy then drops: it comes from the host's address).
			if err := roundTripWithin(conn, "ttl1", 500*time.Millisecond); err == nil {
				t.Errorf("exchange with TTL 1 went through")
			}
			if got := timeExceeded(t, n.r); got == exceeded {
				t.Errorf("the host sent no time exceeded")
			}
			if got := localRedirects(t, d) - before; got != 0 {
				t.Errorf("%d packets with TTL 1 redirected", got)
			}
			// With room to spare the same socket's datagrams are delivered
			// directly, both ways.
			setHops(64)
			if err := roundTripWithin(conn, "ttl64", 2*time.Second); err != nil {
				t.Fatalf("exchange with TTL 64: %v", err)
			}
			if got := localRedirects(t, d) - before; got < 2 {
				t.Errorf("%d packets redirected, want >= 2", got)
			}
		})
	}
}

func TestPrivilegedSetLocalEndpoint(t *testing.T) {
	skipUnlessRoot(t)
	d := openDatapath(t, testConfig(t))
	defer func() { d.Destroy() }()
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	hostMAC := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	a4, a6 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")
	good := LocalEndpoint{Ifindex: 7, Addrs: []netip.Addr{a4, a6}, MAC: mac, HostMAC: hostMAC}
	for _, c := range []struct {
		name string
		ep   func(LocalEndpoint) LocalEndpoint
		want string // in the error; "" for none
	}{
		{"good", func(e LocalEndpoint) LocalEndpoint { return e }, ""},
		{"ifindex 0", func(e LocalEndpoint) LocalEndpoint { e.Ifindex = 0; return e }, "Ifindex 0"},
		{"negative ifindex", func(e LocalEndpoint) LocalEndpoint { e.Ifindex = -3; return e }, "Ifindex -3"},
		{"no addresses", func(e LocalEndpoint) LocalEndpoint { e.Addrs = nil; return e }, "no Addrs"},
		{"invalid address", func(e LocalEndpoint) LocalEndpoint { e.Addrs = []netip.Addr{{}}; return e }, "invalid address"},
		{"mapped address", func(e LocalEndpoint) LocalEndpoint {
			e.Addrs = []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}
			return e
		}, "IPv4-mapped"},
		{"short MAC", func(e LocalEndpoint) LocalEndpoint { e.MAC = mac[:4]; return e }, "MAC"},
		{"no host MAC", func(e LocalEndpoint) LocalEndpoint { e.HostMAC = nil; return e }, "HostMAC"},
		{"long host MAC", func(e LocalEndpoint) LocalEndpoint { e.HostMAC = make(net.HardwareAddr, 20); return e }, "HostMAC"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := d.SetLocalEndpoint(c.ep(good))
			if c.want == "" {
				if err != nil {
					t.Fatalf("set: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadEntry) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("set: error %v, want ErrBadEntry naming %q", err, c.want)
			}
		})
	}
	other := LocalEndpoint{Ifindex: 8, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.2")}, MAC: mac, HostMAC: hostMAC}
	if err := d.SetLocalEndpoint(other); err != nil {
		t.Fatalf("set other: %v", err)
	}
	check := func(want map[int][]netip.Addr) {
		t.Helper()
		got, err := d.LocalEndpoints()
		if err != nil {
			t.Fatalf("local endpoints: %v", err)
		}
		for _, v := range got {
			slices.SortFunc(v, func(a, b netip.Addr) int { return a.Compare(b) })
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("local endpoints %v, want %v", got, want)
		}
	}
	check(map[int][]netip.Addr{7: {a4, a6}, 8: {netip.MustParseAddr("10.0.0.2")}})
	// Setting again replaces: a6 goes, a new address comes.
	a5 := netip.MustParseAddr("10.0.0.5")
	if err := d.SetLocalEndpoint(LocalEndpoint{Ifindex: 7, Addrs: []netip.Addr{a4, a5}, MAC: mac, HostMAC: hostMAC}); err != nil {
		t.Fatalf("replace: %v", err)
	}
	check(map[int][]netip.Addr{7: {a4, a5}, 8: {netip.MustParseAddr("10.0.0.2")}})
	// The entries are read back after a restart, and a detach removes
	// its interface's.
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	d = openDatapath(t, d.cfg)
	check(map[int][]netip.Addr{7: {a4, a5}, 8: {netip.MustParseAddr("10.0.0.2")}})
	if err := d.DetachInterface(7); err != nil {
		t.Fatalf("detach: %v", err)
	}
	check(map[int][]netip.Addr{8: {netip.MustParseAddr("10.0.0.2")}})
	// Opening with local delivery off forgets every entry.
	cfg := d.cfg
	cfg.LocalDelivery = false
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	d = openDatapath(t, cfg)
	check(map[int][]netip.Addr{})
	if err := d.SetLocalEndpoint(other); err != nil {
		t.Fatalf("set with local delivery off: %v", err)
	}
	check(map[int][]netip.Addr{})
}

// TestPrivilegedMigratesFromReleaseWithoutLocalDelivery opens a pin
// directory of a release before local delivery: no local_endpoints map (nor
// its layout record) and a counters map one counter short. Open must
// create the one and set the other aside, keep enforcing, and the new map
// must work.
func TestPrivilegedMigratesFromReleaseWithoutLocalDelivery(t *testing.T) {
	skipUnlessRoot(t)
	n := newTestNet(t)
	cfg := testConfig(t)
	d := openDatapath(t, cfg)
	defer func() { d.Destroy() }()
	n.attach(t, d)
	if err := d.ApplyTable(bothWays(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	echoServer(t, n.b, "tcp4", "10.199.2.2:8080")
	c, err := dial(t, n.a, "tcp4", "10.199.2.2:8080")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := roundTrip(c, "before"); err != nil {
		t.Fatalf("before: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	if err := os.Remove(filepath.Join(cfg.PinDir, "local_endpoints")); err != nil {
		t.Fatalf("remove local_endpoints pin: %v", err)
	}
	layout, err := ebpf.LoadPinnedMap(filepath.Join(cfg.PinDir, layoutMapName), nil)
	if err != nil {
		t.Fatalf("open layout record: %v", err)
	}
	err = layout.Delete(layoutKey("local_endpoints"))
	layout.Close()
	if err != nil {
		t.Fatalf("forget layout of local_endpoints: %v", err)
	}
	oldCounters, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8,
		MaxEntries: uint32(bpf.DatapathCounterCOUNTER_LOCAL_REDIRECT)})
	if err != nil {
		t.Fatalf("create old counters map: %v", err)
	}
	defer oldCounters.Close()
	countersPin := filepath.Join(cfg.PinDir, "counters")
	if err := os.Remove(countersPin); err != nil {
		t.Fatalf("remove counters pin: %v", err)
	}
	if err := oldCounters.Pin(countersPin); err != nil {
		t.Fatalf("pin old counters map: %v", err)
	}

	d = openDatapath(t, cfg)
	if err := roundTrip(c, "after"); err != nil {
		t.Errorf("established connection after the upgrade: %v", err)
	}
	got, err := readLayout(cfg.PinDir)
	if err != nil || got["local_endpoints"] == "" {
		t.Errorf("layout record of local_endpoints: %q, %v", got["local_endpoints"], err)
	}
	if _, err := os.Stat(filepath.Join(cfg.PinDir, migrateDirName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("set-aside maps left behind: %v", err)
	}
	n.setLocal(t, d)
	if !tcpExchanges(t, n.a, "tcp4", "10.199.2.2:8080") {
		t.Fatalf("new connection after the upgrade failed")
	}
	if got := localRedirects(t, d); got < 2 {
		t.Errorf("%d packets redirected after the upgrade, want >= 2", got)
	}
}

// TestPrivilegedLocalDeliveryFrames runs the ingress program on crafted
// frames from a workload in Discover (test runs see it behind ifindex 1)
// to local endpoints, and checks which are delivered directly (the
// program's redirect verdict), which take the routed path, and what a
// delivered frame looks like.
func TestPrivilegedLocalDeliveryFrames(t *testing.T) {
	skipUnlessRoot(t)
	const (
		tcxRedirect = 7 // TCX_REDIRECT
		senderIf    = 1
		receiverIf  = 2
		deniedIf    = 3
	)
	d := openDatapath(t, testConfig(t))
	defer d.Destroy()
	tab := bothWays(ModeDiscover)
	tab.Endpoints = append(tab.Endpoints,
		EndpointEntry{Prefix: netip.MustParsePrefix("10.199.3.2/32"), Identity: 300},
		EndpointEntry{Prefix: netip.MustParsePrefix("fd99:3::2/128"), Identity: 300})
	tab.Modes[300] = ModeProtect
	if err := d.ApplyTable(tab); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for ifindex, id := range map[uint64]Identity{senderIf: idA, receiverIf: idB, deniedIf: 300} {
		if err := d.objs.Endpoints.Put(ifindex, bpf.DatapathEndpoint{Identity: uint32(id)}); err != nil {
			t.Fatalf("endpoint: %v", err)
		}
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0xb, 2}
	hostMAC := net.HardwareAddr{2, 0, 0, 0, 0xb, 1}
	for _, ep := range []LocalEndpoint{
		{Ifindex: receiverIf, Addrs: []netip.Addr{netip.MustParseAddr("10.199.2.2"), netip.MustParseAddr("fd99:2::2")}, MAC: mac, HostMAC: hostMAC},
		{Ifindex: deniedIf, Addrs: []netip.Addr{netip.MustParseAddr("10.199.3.2"), netip.MustParseAddr("fd99:3::2")}, MAC: mac, HostMAC: hostMAC},
		{Ifindex: senderIf, Addrs: []netip.Addr{netip.MustParseAddr("10.199.9.9")}, MAC: mac, HostMAC: hostMAC},
	} {
		if err := d.SetLocalEndpoint(ep); err != nil {
			t.Fatalf("set local endpoint: %v", err)
		}
	}
	udp := []byte{0x9c, 0x40, 0x14, 0xe9, 0, 12, 0, 0, 'd', 'a', 't', 'a'}
	v4 := func(edit func(h []byte)) []byte {
		p := ipv4Packet(5, unix.IPPROTO_UDP, udp)
		if edit != nil {
			edit(p)
		}
		binary.BigEndian.PutUint16(p[10:], 0)
		binary.BigEndian.PutUint16(p[10:], ipv4Checksum(p[:20]))
		return eth(unix.ETH_P_IP, p)
	}
	v6 := func(nexthdr uint8, payload []byte, edit func(h []byte)) []byte {
		p := ipv6Packet(nexthdr, payload)
		if edit != nil {
			edit(p)
		}
		return eth(unix.ETH_P_IPV6, p)
	}
	to := func(a string) func(h []byte) {
		return func(h []byte) {
			ip := netip.MustParseAddr(a)
			if ip.Is4() {
				b := ip.As4()
				copy(h[16:], b[:])
			} else {
				b := ip.As16()
				copy(h[24:], b[:])
			}
		}
	}
	echo := []byte{128, 0, 0, 0, 0, 1, 0, 1}
	ns := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 16)...)
	tests := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"ipv4 udp", v4(nil), tcxRedirect},
		{"ipv4 with options", eth(unix.ETH_P_IP, func() []byte {
			p := ipv4Packet(8, unix.IPPROTO_UDP, udp)
			binary.BigEndian.PutUint16(p[10:], ipv4Checksum(p[:32]))
			return p
		}()), tcxNext},
		{"ipv4 ttl 1", v4(func(h []byte) { h[8] = 1 }), tcxNext},
		{"ipv4 ttl 0", v4(func(h []byte) { h[8] = 0 }), tcxNext},
		{"ipv4 first fragment", v4(func(h []byte) { h[6] = 0x20 }), tcxNext},
		{"ipv4 not a local endpoint", v4(to("10.199.2.3")), tcxNext},
		{"ipv4 to the sender's own interface", v4(to("10.199.9.9")), tcxNext},
		{"ipv4 denied by the receiver", v4(to("10.199.3.2")), tcxDrop},
		{"ipv6 udp", v6(unix.IPPROTO_UDP, udp, nil), tcxRedirect},
		{"ipv6 echo request", v6(58, echo, nil), tcxRedirect},
		{"ipv6 hop limit 1", v6(unix.IPPROTO_UDP, udp, func(h []byte) { h[7] = 1 }), tcxNext},
		{"ipv6 neighbour solicitation", v6(58, ns, nil), tcxNext},
		{"ipv6 extension header", func() []byte {
			nh, pl := extHeaders(1, unix.IPPROTO_UDP, udp)
			return v6(nh, pl, nil)
		}(), tcxNext},
		{"ipv6 not a local endpoint", v6(unix.IPPROTO_UDP, udp, to("fd99:2::3")), tcxNext},
		{"ipv6 denied by the receiver", v6(unix.IPPROTO_UDP, udp, to("fd99:3::2")), tcxDrop},
		{"arp", eth(0x0806, make([]byte, 28)), tcxNext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := localRedirects(t, d)
			out := make([]byte, len(tc.frame)+64)
			got, err := d.objs.PalisadeTcxIngress.Run(&ebpf.RunOptions{Data: tc.frame, DataOut: out})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got != tc.want {
				t.Fatalf("program returned %d, want %d", int32(got), int32(tc.want))
			}
			redirects := localRedirects(t, d) - before
			if (redirects == 1) != (tc.want == tcxRedirect) || redirects > 1 {
				t.Errorf("local redirect counter went up by %d", redirects)
			}
			if tc.want != tcxRedirect {
				if !bytes.Equal(out[:len(tc.frame)], tc.frame) {
					t.Errorf("frame not delivered directly was changed")
				}
				return
			}
			out = out[:len(tc.frame)]
			if !bytes.Equal(out[0:6], mac) || !bytes.Equal(out[6:12], hostMAC) {
				t.Errorf("MACs %x %x, want %s %s", out[0:6], out[6:12], mac, hostMAC)
			}
			if binary.BigEndian.Uint16(out[12:]) == unix.ETH_P_IP {
				ihl := int(out[14]&0xf) * 4
				if out[14+8] != tc.frame[14+8]-1 {
					t.Errorf("TTL %d, want %d", out[14+8], tc.frame[14+8]-1)
				}
				if sum := ipv4Checksum(out[14 : 14+ihl]); sum != 0 {
					t.Errorf("IPv4 header checksum off by %#04x", sum)
				}
			} else if out[14+7] != tc.frame[14+7]-1 {
				t.Errorf("hop limit %d, want %d", out[14+7], tc.frame[14+7]-1)
			}
			if !bytes.Equal(out[14+20:], tc.frame[14+20:]) {
				t.Errorf("packet changed past the first 20 bytes of its IP header")
			}
		})
	}
}
