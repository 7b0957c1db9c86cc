//go:build linux

package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var nsSeq atomic.Uint32

// testNet is two workload namespaces (a, b) routed through a third (r) that
// plays the host: the r side of each veth is where the programs attach.
//
//	a: 10.199.1.2/24 fd99:1::2/64  <-> r: ra 10.199.1.1 fd99:1::1
//	b: 10.199.2.2/24 fd99:2::2/64  <-> r: rb 10.199.2.1 fd99:2::1
type testNet struct {
	a, b, r    string
	raIf, rbIf int
}

// attach attaches d to the router's interfaces towards a (as idA) and b
// (as idB).
func (n *testNet) attach(t testing.TB, d *Datapath) {
	t.Helper()
	inNetns(t, n.r, func() {
		if err := d.AttachInterface(n.raIf, idA); err != nil {
			t.Fatalf("attach ra: %v", err)
		}
		if err := d.AttachInterface(n.rbIf, idB); err != nil {
			t.Fatalf("attach rb: %v", err)
		}
	})
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	p := fmt.Sprintf("pl%d-%d", os.Getpid()%100000, nsSeq.Add(1))
	n := &testNet{a: p + "a", b: p + "b", r: p + "r"}
	for _, ns := range []string{n.a, n.b, n.r} {
		run(t, "ip", "netns", "add", ns)
		name := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		// No duplicate address detection: a link-local address still
		// tentative holds back neighbour discovery and the first dial.
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	for _, w := range []struct{ ns, peer, net string }{{n.a, "ra", "1"}, {n.b, "rb", "2"}} {
		run(t, "ip", "-n", n.r, "link", "add", w.peer, "type", "veth", "peer", "name", "eth0", "netns", w.ns)
		run(t, "ip", "-n", w.ns, "addr", "add", "10.199."+w.net+".2/24", "dev", "eth0")
		run(t, "ip", "-n", w.ns, "addr", "add", "fd99:"+w.net+"::2/64", "dev", "eth0", "nodad")
		run(t, "ip", "-n", w.ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", w.ns, "route", "add", "default", "via", "10.199."+w.net+".1")
		run(t, "ip", "-n", w.ns, "-6", "route", "add", "default", "via", "fd99:"+w.net+"::1")
		run(t, "ip", "-n", n.r, "addr", "add", "10.199."+w.net+".1/24", "dev", w.peer)
		run(t, "ip", "-n", n.r, "addr", "add", "fd99:"+w.net+"::1/64", "dev", w.peer, "nodad")
		run(t, "ip", "-n", n.r, "link", "set", w.peer, "up")
	}
	run(t, "ip", "netns", "exec", n.r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	inNetns(t, n.r, func() {
		for _, x := range []struct {
			name string
			idx  *int
		}{{"ra", &n.raIf}, {"rb", &n.rbIf}} {
			ifc, err := net.InterfaceByName(x.name)
			if err != nil {
				t.Fatalf("interface %s: %v", x.name, err)
			}
			*x.idx = ifc.Index
		}
	})
	return n
}

// inNetns runs fn on an OS thread inside network namespace ns. Sockets fn
// creates stay in ns.
func inNetns(t testing.TB, ns string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open own netns: %v", err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open netns %s: %v", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter netns %s: %v", ns, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with the goroutine.
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

// echoServer listens in ns on addr and echoes every connection.
func echoServer(t testing.TB, ns, network, addr string) net.Listener {
	t.Helper()
	return bannerServer(t, ns, network, addr, nil)
}

// bannerServer listens in ns on addr and, on every connection, writes
// banner (a server that speaks first) and then echoes.
func bannerServer(t testing.TB, ns, network, addr string, banner []byte) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	inNetns(t, ns, func() { l, err = net.Listen(network, addr) })
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if len(banner) > 0 {
					if _, err := c.Write(banner); err != nil {
						return
					}
				}
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l
}

// connects returns a check of whether a TCP exchange from a to an address
// in b works.
func (n *testNet) connects(t testing.TB) func(addr string) bool {
	return func(addr string) bool {
		network := "tcp4"
		if netip.MustParseAddrPort(addr).Addr().Is6() {
			network = "tcp6"
		}
		c, err := dial(t, n.a, network, addr)
		if err != nil {
			return false
		}
		defer c.Close()
		return roundTrip(c, "ping") == nil
	}
}

// passes returns a check of whether an allowed flow gets through. A lost
// first SYN is retransmitted after 1 s, past the 700 ms dial timeout, so a
// loaded machine gets three tries; a flow the program drops fails all
// three.
func (n *testNet) passes(t testing.TB) func(addr string) bool {
	connects := n.connects(t)
	return func(addr string) bool {
		for i := 0; i < 3; i++ {
			if connects(addr) {
				return true
			}
		}
		return false
	}
}

// dial connects from ns; a dropped SYN shows as a timeout.
func dial(t testing.TB, ns, network, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNetns(t, ns, func() {
		d := net.Dialer{Timeout: 700 * time.Millisecond}
		c, err = d.Dial(network, addr)
	})
	return c, err
}

// roundTrip writes msg and reads it back, with a deadline standing in for
// "dropped".
func roundTrip(c net.Conn, msg string) error { return roundTripWithin(c, msg, 700*time.Millisecond) }

// roundTripWithin is roundTrip with its own deadline: a flow whose packets
// are dropped for good never answers, while a loaded machine may take
// longer than roundTrip's deadline to schedule a retransmission.
func roundTripWithin(c net.Conn, msg string, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	n := 0
	for n < len(msg) {
		m, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += m
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}
