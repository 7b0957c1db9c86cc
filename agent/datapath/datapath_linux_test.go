//go:build linux

package datapath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

const (
	idA Identity = 100
	idB Identity = 200
)

func skipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs and creates network namespaces")
	}
}

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.PinDir = filepath.Join("/sys/fs/bpf/palisade", fmt.Sprintf("test-%d-%d", os.Getpid(), nsSeq.Add(1)))
	cfg.PolicyMaxEntries = 64
	cfg.ConntrackMaxEntries = 4096
	cfg.IdentityMaxEntries = 256
	cfg.VerdictMaxEntries = 256
	return cfg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openDatapath opens a datapath whose pins are removed at cleanup.
func openDatapath(t testing.TB, cfg Config) *Datapath {
	t.Helper()
	d, err := Open(cfg, quietLogger())
	if err != nil {
		t.Fatalf("open datapath: %+v", err)
	}
	return d
}

// eventLog collects flow events from a running reader.
type eventLog struct {
	mu     sync.Mutex
	events []FlowEvent
	cancel context.CancelFunc
	done   chan error
}

func startEvents(d *Datapath) *eventLog {
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{cancel: cancel, done: make(chan error, 1)}
	go func() {
		l.done <- d.ReadEvents(ctx, func(e FlowEvent) {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		})
	}()
	return l
}

func (l *eventLog) stop() error {
	l.cancel()
	err := <-l.done
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// wait returns the first event matching pred, waiting up to 3 s for it.
func (l *eventLog) wait(pred func(FlowEvent) bool) (FlowEvent, bool) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		l.mu.Lock()
		for _, e := range l.events {
			if pred(e) {
				l.mu.Unlock()
				return e, true
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			return FlowEvent{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *eventLog) reset() {
	l.mu.Lock()
	l.events = nil
	l.mu.Unlock()
}

func baseTable(mode Mode) Table {
	return Table{
		Endpoints: []EndpointEntry{
			{Prefix: netip.MustParsePrefix("10.199.1.2/32"), Identity: idA},
			{Prefix: netip.MustParsePrefix("fd99:1::2/128"), Identity: idA},
			{Prefix: netip.MustParsePrefix("10.199.2.0/24"), Identity: idB},
			{Prefix: netip.MustParsePrefix("fd99:2::/64"), Identity: idB},
		},
		Verdicts: []VerdictEntry{
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 8080, PortHi: 8080, Action: ActionAllow, RuleID: 1},
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_UDP, PortLo: 5353, PortHi: 5353, Action: ActionAllow, RuleID: 2},
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 7000, PortHi: 7010, Action: ActionAllow, RuleID: 3},
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 7005, PortHi: 7005, Action: ActionDeny, RuleID: 4},
		},
		Modes: map[Identity]Mode{idA: mode, idB: mode},
	}
}

func TestPrivilegedEnforcement(t *testing.T) {
	skipUnlessRoot(t)
	leakOpt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpt) })
	n := newTestNet(t)
	cfg := testConfig(t)
	d := openDatapath(t, cfg)
	defer func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	n.attach(t, d)
	events := startEvents(d)
	defer func() {
		if err := events.stop(); err != nil {
			t.Errorf("event reader: %v", err)
		}
	}()

	for _, port := range []string{"8080", "9090", "7004", "7005"} {
		echoServer(t, n.b, "tcp4", "10.199.2.2:"+port)
		echoServer(t, n.b, "tcp6", "[fd99:2::2]:"+port)
	}

	connects, passes := n.connects(t), n.passes(t)

	t.Run("discover allows and reports every new flow", func(t *testing.T) {
		events.reset()
		if err := d.ApplyTable(baseTable(ModeDiscover)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if !passes("10.199.2.2:9090") {
			t.Fatalf("connection to an unlisted port failed in discover")
		}
		e, ok := events.wait(func(e FlowEvent) bool { return e.Kind == EventNewFlow && e.DstPort == 9090 })
		if !ok {
			t.Fatalf("no new-flow event for port 9090")
		}
		if e.Src != idA || e.Dst != idB || e.Proto != unix.IPPROTO_TCP || e.Dropped || !e.Violation {
			t.Errorf("event %+v: want src %d dst %d tcp, not dropped, violation flagged", e, idA, idB)
		}
		if e.SrcAddr != netip.MustParseAddr("10.199.1.2") {
			t.Errorf("event source address %s, want 10.199.1.2", e.SrcAddr)
		}
	})

	for _, fam := range []struct{ name, allowed, denied, rangeOK, rangeDenied string }{
		{"ipv4", "10.199.2.2:8080", "10.199.2.2:9090", "10.199.2.2:7004", "10.199.2.2:7005"},
		{"ipv6", "[fd99:2::2]:8080", "[fd99:2::2]:9090", "[fd99:2::2]:7004", "[fd99:2::2]:7005"},
	} {
		t.Run("protect "+fam.name, func(t *testing.T) {
			events.reset()
			if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
				t.Fatalf("apply: %v", err)
			}
			for _, c := range []struct {
				addr string
				want bool
			}{{fam.allowed, true}, {fam.denied, false}, {fam.rangeOK, true}, {fam.rangeDenied, false}} {
				check := connects
				if c.want {
					check = passes
				}
				got := check(c.addr)
				if got != c.want {
					t.Errorf("connect %s: got %v, want %v", c.addr, got, c.want)
				}
			}
			port := netip.MustParseAddrPort(fam.denied).Port()
			e, ok := events.wait(func(e FlowEvent) bool { return e.Kind == EventViolation && e.DstPort == port })
			if !ok {
				t.Fatalf("no violation event for %s", fam.denied)
			}
			if !e.Dropped || e.Mode != ModeProtect || e.Action != ActionNone {
				t.Errorf("violation %+v: want dropped, protect, no matching entry", e)
			}
			if e, ok := events.wait(func(e FlowEvent) bool { return e.Kind == EventViolation && e.DstPort == 7005 }); !ok || e.RuleID != 4 || e.Action != ActionDeny {
				t.Errorf("violation for 7005: %+v found %v, want rule 4 deny", e, ok)
			}
			rc, err := d.RuleCounters()
			if err != nil {
				t.Fatalf("rule counters: %v", err)
			}
			if rc[1] == 0 || rc[3] == 0 {
				t.Errorf("rule counters %v: want flows on rules 1 and 3", rc)
			}
		})
	}

	t.Run("monitor allows and reports violations", func(t *testing.T) {
		events.reset()
		if err := d.ApplyTable(baseTable(ModeMonitor)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if !passes("10.199.2.2:9090") {
			t.Fatalf("violation was blocked in monitor")
		}
		e, ok := events.wait(func(e FlowEvent) bool { return e.Kind == EventViolation && e.DstPort == 9090 })
		if !ok {
			t.Fatalf("no violation event")
		}
		if e.Dropped || !e.Violation || e.Mode != ModeMonitor {
			t.Errorf("violation %+v: want passed, flagged, monitor", e)
		}
		if _, ok := events.wait(func(e FlowEvent) bool { return e.Kind == EventViolation && e.DstPort == 8080 }); ok {
			t.Errorf("allowed flow reported as violation")
		}
	})

	t.Run("payload sample", func(t *testing.T) {
		events.reset()
		if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		c, err := dial(t, n.a, "tcp4", "10.199.2.2:8080")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		msg := "GET / HTTP/1.1\r\nHost: b\r\n\r\n"
		if err := roundTrip(c, msg); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		e, ok := events.wait(func(e FlowEvent) bool { return e.Kind == EventSample && e.DstPort == 8080 && !e.Reply })
		if !ok {
			t.Fatalf("no payload sample")
		}
		if string(e.Payload) != msg {
			t.Errorf("sample %q, want %q", e.Payload, msg)
		}
		if e.Src != idA || e.Dst != idB || e.RuleID != 1 {
			t.Errorf("sample %+v: want %d->%d rule 1", e, idA, idB)
		}
	})

	t.Run("policy change decides established flows again", func(t *testing.T) {
		if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		c, err := dial(t, n.a, "tcp4", "10.199.2.2:8080")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if err := roundTrip(c, "one"); err != nil {
			t.Fatalf("before change: %v", err)
		}
		rule := baseTable(ModeProtect).Verdicts[0]
		if err := d.ApplyDiff(Diff{RemoveVerdicts: []VerdictEntry{rule}}); err != nil {
			t.Fatalf("remove rule: %v", err)
		}
		if err := roundTrip(c, "two"); err == nil {
			t.Errorf("established flow still passes after its rule was removed in protect")
		}
		if err := d.ApplyDiff(Diff{AddVerdicts: []VerdictEntry{rule}}); err != nil {
			t.Fatalf("re-add rule: %v", err)
		}
		if !passes("10.199.2.2:8080") {
			t.Errorf("new connection fails after the rule came back")
		}
	})

	t.Run("established flows and policy survive close and reopen", func(t *testing.T) {
		if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		c, err := dial(t, n.a, "tcp6", "[fd99:2::2]:8080")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if err := roundTrip(c, "before"); err != nil {
			t.Fatalf("before restart: %v", err)
		}
		// Traffic keeps flowing on a second connection through the
		// whole restart; any failed exchange is a dropped packet.
		busy, err := dial(t, n.a, "tcp4", "10.199.2.2:8080")
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer busy.Close()
		stopTraffic := make(chan struct{})
		trafficErr := make(chan error, 1)
		exchanges := 0
		go func() {
			for {
				select {
				case <-stopTraffic:
					trafficErr <- nil
					return
				default:
				}
				if err := roundTripWithin(busy, "x", 5*time.Second); err != nil {
					trafficErr <- fmt.Errorf("exchange %d: %w", exchanges, err)
					return
				}
				exchanges++
			}
		}()
		if err := events.stop(); err != nil {
			t.Fatalf("event reader: %v", err)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		// No process holds the datapath now.
		if err := roundTrip(c, "between"); err != nil {
			t.Errorf("established flow dropped while no datapath is open: %v", err)
		}
		if connects("[fd99:2::2]:9090") {
			t.Errorf("violation passed while no datapath is open")
		}
		d = openDatapath(t, cfg)
		events = startEvents(d)
		// The restarted agent applies the same table again.
		if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
			t.Fatalf("apply after reopen: %v", err)
		}
		close(stopTraffic)
		if err := <-trafficErr; err != nil {
			cs, _ := d.Counters()
			ct, _ := d.Conntrack()
			t.Errorf("traffic during restart: %v\ncounters %+v\nconntrack %+v", err, cs, ct)
		}
		if exchanges == 0 {
			t.Errorf("no exchange happened during the restart")
		}
		if err := roundTrip(c, "after"); err != nil {
			t.Errorf("established flow dropped after reopen: %v", err)
		}
		if connects("[fd99:2::2]:9090") {
			t.Errorf("violation passed after reopen")
		}
		got := d.Table()
		if len(got.Verdicts) != 4 || len(got.Endpoints) != 4 || got.Modes[idA] != ModeProtect {
			t.Errorf("table after reopen: %+v", got)
		}
		// Diffs apply on top of the recovered table.
		if err := d.ApplyDiff(Diff{AddVerdicts: []VerdictEntry{{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 9090, PortHi: 9090, Action: ActionAllow, RuleID: 9}}}); err != nil {
			t.Fatalf("diff after reopen: %v", err)
		}
		if !passes("[fd99:2::2]:9090") {
			t.Errorf("rule added after reopen not enforced")
		}
	})

	t.Run("a diff that does not fit leaves the previous policy", func(t *testing.T) {
		if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		before := d.Generation()
		var add []VerdictEntry
		for i := 0; i < 4; i++ { // 30 prefixes each, capacity 64
			add = append(add, VerdictEntry{SrcID: idA, DstID: Identity(300 + i), Proto: unix.IPPROTO_TCP, PortLo: 1, PortHi: 65534, Action: ActionAllow, RuleID: uint32(50 + i)})
		}
		err := d.ApplyDiff(Diff{AddVerdicts: add, RemoveVerdicts: baseTable(ModeProtect).Verdicts[:1]})
		if !errors.Is(err, ErrMapFull) {
			t.Fatalf("apply oversized diff: got %v, want ErrMapFull", err)
		}
		if d.Generation() != before {
			t.Errorf("generation moved on a failed diff")
		}
		if !passes("10.199.2.2:8080") {
			t.Errorf("previous policy not in force after a failed diff")
		}
		if connects("10.199.2.2:9090") {
			t.Errorf("violation passed after a failed diff")
		}
	})

	t.Run("counters", func(t *testing.T) {
		c, err := d.Counters()
		if err != nil {
			t.Fatalf("counters: %v", err)
		}
		if c.Established == 0 || c.ProtectDropped == 0 || c.NewAllowed == 0 {
			t.Errorf("counters %+v: want established, dropped and allowed packets", c)
		}
	})
}
