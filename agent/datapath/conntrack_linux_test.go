//go:build linux

package datapath

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// flowConns returns the conntrack entries of the TCP flow between client
// port cport and server port sport.
func flowConns(t *testing.T, d *Datapath, cport, sport uint16) []Conn {
	t.Helper()
	all, err := d.Conntrack()
	if err != nil {
		t.Fatalf("conntrack: %v", err)
	}
	var out []Conn
	for _, c := range all {
		if c.Proto == unix.IPPROTO_TCP && ((c.SrcPort == cport && c.DstPort == sport) || (c.SrcPort == sport && c.DstPort == cport)) {
			out = append(out, c)
		}
	}
	return out
}

// waitConns polls until pred holds for the flow's entries (3 s at most) and
// returns the last entries seen.
func waitConns(t *testing.T, d *Datapath, cport, sport uint16, pred func([]Conn) bool) ([]Conn, bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		cs := flowConns(t, d, cport, sport)
		if pred(cs) {
			return cs, true
		}
		if time.Now().After(deadline) {
			return cs, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allIn reports whether the flow has its four entries (two endpoints, two
// directions) and every one is in state s.
func allIn(s ConnState) func([]Conn) bool {
	return func(cs []Conn) bool {
		if len(cs) != 4 {
			return false
		}
		for _, c := range cs {
			if c.State != s {
				return false
			}
		}
		return true
	}
}

func localPort(c net.Conn) uint16 { return uint16(c.LocalAddr().(*net.TCPAddr).Port) }

// dialFrom connects from ns with a fixed local address.
func dialFrom(t *testing.T, ns, laddr, raddr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNetns(t, ns, func() {
		d := net.Dialer{Timeout: 700 * time.Millisecond, LocalAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(laddr))}
		c, err = d.Dial("tcp4", raddr)
	})
	return c, err
}

// TestPrivilegedConntrackStates follows TCP connections through their
// states in real namespaces, with short timeouts and no background sweeper
// so every expiry is observed where it happens.
func TestPrivilegedConntrackStates(t *testing.T) {
	skipUnlessRoot(t)
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	n := newTestNet(t)
	cfg := testConfig(t)
	cfg.SweepInterval = 0
	cfg.Timeouts.TCPEstablished = 1500 * time.Millisecond
	cfg.Timeouts.TCPClosed = 1500 * time.Millisecond
	d := openDatapath(t, cfg)
	defer func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	n.attach(t, d)
	if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	echoServer(t, n.b, "tcp4", "10.199.2.2:8080")
	const server = "10.199.2.2:8080"
	// open connects with three tries (a SYN lost on a loaded machine
	// outlasts the dial timeout) and exchanges one message.
	open := func(t *testing.T) net.Conn {
		t.Helper()
		var err error
		for i := 0; i < 3; i++ {
			var c net.Conn
			if c, err = dial(t, n.a, "tcp4", server); err == nil {
				if err = roundTrip(c, "hello"); err == nil {
					return c
				}
				c.Close()
			}
		}
		t.Fatalf("allowed connection: %v", err)
		return nil
	}

	t.Run("a closed connection's entries close and then expire", func(t *testing.T) {
		c := open(t)
		cport := localPort(c)
		if cs, ok := waitConns(t, d, cport, 8080, allIn(ConnTCPEstablished)); !ok {
			t.Fatalf("entries of an open connection: %+v, want 4 established", cs)
		}
		c.Close() // FIN from the client; the echo server answers with its own
		cs, ok := waitConns(t, d, cport, 8080, allIn(ConnTCPClosed))
		if !ok {
			t.Fatalf("entries after FIN from both sides: %+v, want 4 closed", cs)
		}
		for _, e := range cs {
			if e.Src != idA || e.Dst != idB || e.RuleID != 1 {
				t.Errorf("entry %+v: want %d->%d rule 1", e, idA, idB)
			}
		}
		time.Sleep(cfg.Timeouts.TCPClosed + 200*time.Millisecond)
		removed, err := d.SweepConntrack()
		if err != nil {
			t.Fatalf("sweep: %v", err)
		}
		if removed < 4 {
			t.Errorf("sweep removed %d entries, want at least the closed flow's 4", removed)
		}
		if cs := flowConns(t, d, cport, 8080); len(cs) != 0 {
			t.Errorf("entries after the closed timeout and a sweep: %+v, want none", cs)
		}
	})

	t.Run("a reset connection closes and a new one on its 5-tuple is decided again", func(t *testing.T) {
		c := open(t)
		cport := localPort(c)
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // RST
		if cs, ok := waitConns(t, d, cport, 8080, allIn(ConnTCPClosed)); !ok {
			t.Fatalf("entries after RST: %+v, want 4 closed", cs)
		}
		before, err := d.RuleCounters()
		if err != nil {
			t.Fatalf("rule counters: %v", err)
		}
		c2, err := dialFrom(t, n.a, netip.AddrPortFrom(netip.MustParseAddr("10.199.1.2"), cport).String(), server)
		if err != nil {
			t.Fatalf("reconnect from port %d: %v", cport, err)
		}
		defer c2.Close()
		if err := roundTrip(c2, "again"); err != nil {
			t.Fatalf("exchange on the new connection: %v", err)
		}
		after, err := d.RuleCounters()
		if err != nil {
			t.Fatalf("rule counters: %v", err)
		}
		// Each of the two endpoints decides the new SYN against rule 1.
		if got := after[1] - before[1]; got < 2 {
			t.Errorf("rule 1 decided %d new flows for the reconnection, want at least 2 (one per endpoint)", got)
		}
		if cs, ok := waitConns(t, d, cport, 8080, allIn(ConnTCPEstablished)); !ok {
			t.Errorf("entries of the new connection: %+v, want 4 established", cs)
		}
	})

	t.Run("an idle connection expires and is decided again on its next packet", func(t *testing.T) {
		c := open(t)
		defer c.Close()
		cport := localPort(c)
		before, err := d.Counters()
		if err != nil {
			t.Fatalf("counters: %v", err)
		}
		time.Sleep(cfg.Timeouts.TCPEstablished + 300*time.Millisecond)
		if err := roundTrip(c, "still there"); err != nil {
			t.Fatalf("exchange after expiry (the policy still allows the flow): %v", err)
		}
		after, err := d.Counters()
		if err != nil {
			t.Fatalf("counters: %v", err)
		}
		if after.Expired <= before.Expired {
			t.Errorf("expired counter %d -> %d: want the idle entries found expired", before.Expired, after.Expired)
		}
		if after.NewAllowed <= before.NewAllowed {
			t.Errorf("new-allowed counter %d -> %d: want the expired flow decided again", before.NewAllowed, after.NewAllowed)
		}
		if cs, ok := waitConns(t, d, cport, 8080, allIn(ConnTCPEstablished)); !ok {
			t.Errorf("entries after the flow came back: %+v, want 4 established", cs)
		}
	})

	t.Run("a removed rule cuts the established flow and refuses new ones", func(t *testing.T) {
		c := open(t)
		defer c.Close()
		rule := baseTable(ModeProtect).Verdicts[0]
		if err := d.ApplyDiff(Diff{RemoveVerdicts: []VerdictEntry{rule}}); err != nil {
			t.Fatalf("remove rule: %v", err)
		}
		defer func() {
			if err := d.ApplyDiff(Diff{AddVerdicts: []VerdictEntry{rule}}); err != nil {
				t.Fatalf("re-add rule: %v", err)
			}
		}()
		// Generation semantics: a policy change decides established
		// flows again (see apply_linux.go).
		if err := roundTrip(c, "after removal"); err == nil {
			t.Errorf("established flow passed after its rule was removed in protect")
		}
		if c2, err := dial(t, n.a, "tcp4", server); err == nil {
			c2.Close()
			t.Errorf("new connection passed after its rule was removed in protect")
		}
	})
}
