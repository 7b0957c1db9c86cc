//go:build linux

package datapath

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/appdetect"
	"github.com/palisade-sec/palisade/agent/bpf"
)

// firstWrite runs client against one end of an in-memory pipe and returns
// the first bytes it writes.
func firstWrite(t *testing.T, client func(net.Conn)) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		client(a)
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := io.ReadAtLeast(b, buf, 1)
	if err != nil {
		t.Fatalf("read first bytes: %v", err)
	}
	b.Close()
	a.Close()
	<-done
	return buf[:n]
}

func clientHello(t *testing.T) []byte {
	return firstWrite(t, func(c net.Conn) {
		tls.Client(c, &tls.Config{ServerName: "api.example", InsecureSkipVerify: true}).Handshake()
	})
}

func sshVersion(t *testing.T) []byte {
	return firstWrite(t, func(c net.Conn) {
		ssh.NewClientConn(c, "x:22", &ssh.ClientConfig{HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	})
}

func goHTTPRequest(t *testing.T) []byte {
	return firstWrite(t, func(c net.Conn) {
		req, _ := http.NewRequest("POST", "http://api.example/v1/items", strings.NewReader("{}"))
		w := bufio.NewWriter(c)
		req.Write(w)
		w.Flush()
	})
}

// kernelAppOf is the application the kernel is expected to name for what
// appdetect detects. gRPC is HTTP/2 to the kernel.
func kernelAppOf(p appdetect.Protocol) App {
	if p == appdetect.GRPC {
		return AppHTTP2
	}
	a, _ := ParseApp(string(p))
	return a
}

// TestPrivilegedClassifierAgreesWithAppdetect runs the programs on one
// mid-stream payload packet per sample and application port (no conntrack
// entry, so the packet itself is classified) and checks that the packet
// passes exactly on the port of the application appdetect names.
func TestPrivilegedClassifierAgreesWithAppdetect(t *testing.T) {
	skipUnlessRoot(t)
	cfg := testConfig(t)
	cfg.SweepInterval = 0
	d := openDatapath(t, cfg)
	t.Cleanup(func() { d.Destroy() })
	ports := map[App]uint16{AppHTTP: 8080, AppHTTP2: 8081, AppTLS: 8082, AppSSH: 8083, AppRedis: 8084}
	tab := baseTable(ModeProtect)
	tab.Verdicts = nil
	for app, port := range ports {
		tab.Verdicts = append(tab.Verdicts, VerdictEntry{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: port, PortHi: port, App: app, Action: ActionAllow, RuleID: uint32(40 + app)})
	}
	if err := d.ApplyTable(tab); err != nil {
		t.Fatalf("apply: %v", err)
	}
	// Test runs see loopback (ifindex 1) as the interface of A.
	if err := d.objs.Endpoints.Put(uint64(1), bpf.DatapathEndpoint{Identity: uint32(idA)}); err != nil {
		t.Fatalf("endpoint: %v", err)
	}
	serverHello := []byte{0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03}
	h2 := append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)
	samples := []struct {
		name    string
		payload []byte
		server  bool // sent by the server
	}{
		{"get", []byte("GET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"), false},
		{"post from net/http", goHTTPRequest(t), false},
		{"put", []byte("PUT /v1/x HTTP/1.1\r\n"), false},
		{"delete", []byte("DELETE /v1/x HTTP/1.1\r\n"), false},
		{"head", []byte("HEAD / HTTP/1.0\r\n"), false},
		{"options", []byte("OPTIONS * HTTP/1.1\r\n"), false},
		{"patch", []byte("PATCH /v1/x HTTP/1.1\r\n"), false},
		{"connect", []byte("CONNECT db.example:443 HTTP/1.1\r\n"), false},
		{"trace", []byte("TRACE / HTTP/1.1\r\n"), false},
		{"method only", []byte("GET"), false},
		{"lower-case method", []byte("get / HTTP/1.1\r\n"), false},
		{"http/2 preface", h2, false},
		{"tls client hello", clientHello(t), false},
		{"ssh client version", sshVersion(t), false},
		{"redis array", []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"), false},
		{"redis ping array", []byte("*1\r\n$4\r\nPING\r\n"), false},
		{"redis inline ping", []byte("ping\r\n"), false},
		{"redis inline info", []byte("INFO\r\n"), false},
		{"too many digits", []byte("*123456\r\n$3\r\n"), false},
		{"postgres startup", []byte{0, 0, 0, 0x29, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 0}, false},
		{"json", []byte(`{"op":"get"}`), false},
		{"text", []byte("hello\n"), false},
		{"http response", []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), true},
		{"ssh server version", []byte("SSH-2.0-OpenSSH_9.6\r\n"), true},
		{"tls server hello", serverHello, true},
		{"redis reply", []byte("+OK\r\n"), true},
	}
	sport := uint16(30000)
	for _, s := range samples {
		var want App
		if s.server {
			want = kernelAppOf(appdetect.Detect(appdetect.Sample{Proto: appdetect.ProtoTCP, Server: s.payload}))
		} else {
			want = kernelAppOf(appdetect.Detect(appdetect.Sample{Proto: appdetect.ProtoTCP, Client: s.payload}))
		}
		t.Run(s.name, func(t *testing.T) {
			for app, port := range ports {
				sport++
				frame, prog := append(tcpPacket(port, 0x18, 0), s.payload...), d.objs.PalisadeTcxIngress
				frame = withPorts(frame, sport, port, len(s.payload))
				if s.server {
					// Server to client, arriving at A's interface.
					frame, prog = reversed(frame), d.objs.PalisadeTcxEgress
				}
				got, _, err := prog.Benchmark(frame, 1, nil)
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				if pass := got == tcxNext; pass != (app == want) {
					t.Errorf("%s port (%d): passed %v; appdetect names %q", app, port, pass, want)
				}
			}
		})
	}
}

// withPorts sets the TCP ports of an Ethernet+IPv4+TCP frame and fixes the
// IP total length for a payload of n bytes.
func withPorts(f []byte, sport, dport uint16, n int) []byte {
	f[34], f[35] = byte(sport>>8), byte(sport)
	f[36], f[37] = byte(dport>>8), byte(dport)
	tot := 20 + 20 + n
	f[16], f[17] = byte(tot>>8), byte(tot)
	return f
}

// reversed swaps the addresses and ports of an Ethernet+IPv4+TCP frame.
func reversed(f []byte) []byte {
	r := append([]byte(nil), f...)
	copy(r[26:30], f[30:34])
	copy(r[30:34], f[26:30])
	copy(r[34:36], f[36:38])
	copy(r[36:38], f[34:36])
	return r
}

// TestPrivilegedAppEnforcement checks rules that name an application with
// real connections between namespaces.
func TestPrivilegedAppEnforcement(t *testing.T) {
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
	for _, port := range []string{"8080", "8443", "9090"} {
		echoServer(t, n.b, "tcp4", "10.199.2.2:"+port)
	}
	table := func(mode Mode) Table {
		tab := baseTable(mode)
		tab.Verdicts = []VerdictEntry{
			// client -> server tcp/8080 app HTTP
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 8080, PortHi: 8080, App: AppHTTP, Action: ActionAllow, RuleID: 21},
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 8443, PortHi: 8443, App: AppTLS, Action: ActionAllow, RuleID: 22},
			// 9090 is open to everything but SSH.
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 9090, PortHi: 9090, Action: ActionAllow, RuleID: 23},
			{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 9090, PortHi: 9090, App: AppSSH, Action: ActionDeny, RuleID: 24},
		}
		return tab
	}
	// exchange connects (three tries for the SYN, which every flow here
	// may pass) and reports whether msg makes the round trip, with the
	// client port.
	exchange := func(t *testing.T, addr, msg string) (bool, uint16) {
		t.Helper()
		var c net.Conn
		var err error
		for i := 0; i < 3; i++ {
			if c, err = dial(t, n.a, "tcp4", addr); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer c.Close()
		return roundTrip(c, msg) == nil, localPort(c)
	}
	httpReq := "GET /menu HTTP/1.1\r\nHost: server\r\n\r\n"
	redis := "*1\r\n$4\r\nPING\r\n"
	hello := string(clientHello(t))

	t.Run("protect", func(t *testing.T) {
		if err := d.ApplyTable(table(ModeProtect)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		events.reset()
		ok, cport := exchange(t, "10.199.2.2:8080", httpReq)
		if !ok {
			t.Fatalf("HTTP request on the HTTP port was dropped")
		}
		for _, c := range flowConns(t, d, cport, 8080) {
			if c.Pending || c.App != AppHTTP || c.RuleID != 21 {
				t.Errorf("entry of the HTTP flow %+v: want confirmed, app http, rule 21", c)
			}
		}
		for _, c := range []struct {
			name, addr, msg string
			port            uint16
			pass            bool
			app             App
		}{
			{"redis on the HTTP port", "10.199.2.2:8080", redis, 8080, false, AppRedis},
			{"raw bytes on the HTTP port", "10.199.2.2:8080", "hello\n", 8080, false, AppNone},
			{"TLS on the TLS port", "10.199.2.2:8443", hello, 8443, true, AppTLS},
			{"HTTP on the TLS port", "10.199.2.2:8443", httpReq, 8443, false, AppHTTP},
			{"HTTP on the port closed to SSH", "10.199.2.2:9090", httpReq, 9090, true, AppHTTP},
			{"SSH on the port closed to SSH", "10.199.2.2:9090", "SSH-2.0-Go\r\n", 9090, false, AppSSH},
		} {
			ok, cport := exchange(t, c.addr, c.msg)
			if ok != c.pass {
				t.Errorf("%s: passed %v, want %v", c.name, ok, c.pass)
			}
			if c.pass {
				continue
			}
			e, found := events.wait(func(e FlowEvent) bool {
				return e.Kind == EventViolation && e.SrcPort == cport && e.DstPort == c.port
			})
			if !found {
				t.Errorf("%s: no violation event", c.name)
				continue
			}
			if !e.Dropped || e.App != c.app || e.Mode != ModeProtect || e.Src != idA || e.Dst != idB {
				t.Errorf("%s: violation %+v: want dropped, app %s, protect, %d->%d", c.name, e, c.app, idA, idB)
			}
			if c.port == 9090 && (e.RuleID != 24 || e.Action != ActionDeny) {
				t.Errorf("%s: violation rule %d action %s, want rule 24 deny", c.name, e.RuleID, e.Action)
			}
			// The client's interface dropped the payload: its entries
			// deny the flow; the server's never saw a payload.
			for _, ce := range flowConns(t, d, cport, c.port) {
				switch {
				case ce.Endpoint == uint64(n.raIf) && ce.State != ConnDenied:
					t.Errorf("%s: client-side entry %+v, want denied", c.name, ce)
				case ce.Endpoint == uint64(n.rbIf) && !ce.Pending:
					t.Errorf("%s: server-side entry %+v, want pending", c.name, ce)
				}
			}
		}
		cnt, err := d.Counters()
		if err != nil {
			t.Fatalf("counters: %v", err)
		}
		if cnt.AppAllowed == 0 || cnt.AppViolations == 0 {
			t.Errorf("counters %+v: want application checks allowed and violated", cnt)
		}
	})

	t.Run("monitor", func(t *testing.T) {
		if err := d.ApplyTable(table(ModeMonitor)); err != nil {
			t.Fatalf("apply: %v", err)
		}
		events.reset()
		ok, cport := exchange(t, "10.199.2.2:8080", redis)
		if !ok {
			t.Fatalf("redis on the HTTP port was dropped in monitor")
		}
		e, found := events.wait(func(e FlowEvent) bool {
			return e.Kind == EventViolation && e.SrcPort == cport && e.DstPort == 8080
		})
		if !found {
			t.Fatalf("no violation event in monitor")
		}
		if e.Dropped || !e.Violation || e.App != AppRedis || e.Mode != ModeMonitor {
			t.Errorf("violation %+v: want passed, flagged, app redis, monitor", e)
		}
		if string(e.Payload) != redis {
			t.Errorf("violation payload %q, want %q", e.Payload, redis)
		}
	})
}

// tcpFrame is an Ethernet frame 10.199.1.2:sport -> 10.199.2.2:dport with
// TCP flags, sequence number and payload; moreFragments sets IP's MF bit.
func tcpFrame(sport, dport uint16, flags byte, seq uint32, payload []byte, moreFragments bool) []byte {
	tcp := tcpHeader(sport, dport, 5)
	tcp[13] = flags
	tcp[4], tcp[5], tcp[6], tcp[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	ip := ipv4Packet(5, unix.IPPROTO_TCP, append(tcp, payload...))
	if moreFragments {
		ip[6] = 0x20
		ip[5] = 7 // identification
	}
	return eth(0x0800, ip)
}

// TestPrivilegedAppCheckEvasion sends crafted packet sequences through the
// program: the application check must judge the bytes the server will read
// first, not a forged or out-of-order segment, and never wave through a
// payload it cannot read whole.
func TestPrivilegedAppCheckEvasion(t *testing.T) {
	skipUnlessRoot(t)
	cfg := testConfig(t)
	cfg.SweepInterval = 0
	d := openDatapath(t, cfg)
	t.Cleanup(func() { d.Destroy() })
	tab := baseTable(ModeProtect)
	tab.Verdicts = []VerdictEntry{{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 8080, PortHi: 8080, App: AppHTTP, Action: ActionAllow, RuleID: 21}}
	if err := d.ApplyTable(tab); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := d.objs.Endpoints.Put(uint64(1), bpf.DatapathEndpoint{Identity: uint32(idA)}); err != nil {
		t.Fatalf("endpoint: %v", err)
	}
	const (
		syn    = 0x02
		ack    = 0x10
		pshAck = 0x18
	)
	get := []byte("GET / HTTP/1.1\r\nHost: b\r\n\r\n")
	ping := []byte("*1\r\n$4\r\nPING\r\n")
	type step struct {
		flags   byte
		seq     uint32
		payload []byte
		frag    bool
		pass    bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order HTTP is confirmed", []step{
			{syn, 1000, nil, false, true},
			{ack, 1001, nil, false, true},
			{pshAck, 1001, get, false, true},
			{pshAck, 1001 + uint32(len(get)), ping, false, true}, // later payload is not judged again
		}},
		{"out-of-order HTTP does not vouch for the real first bytes", []step{
			{syn, 1000, nil, false, true},
			{pshAck, 5000, get, false, false},
			{pshAck, 1001, ping, false, false},
			{pshAck, 1001, get, false, false}, // the flow stays denied
		}},
		{"keepalive probe before any payload passes", []step{
			{syn, 1000, nil, false, true},
			{ack, 1000, []byte{0}, false, true},
			{pshAck, 1001, get, false, true},
		}},
		{"fragmented first payload is not classified", []step{
			{syn, 1000, nil, false, true},
			{pshAck, 1001, get, true, false},
		}},
		{"redis first is dropped", []step{
			{syn, 1000, nil, false, true},
			{pshAck, 1001, ping, false, false},
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sport := uint16(41000 + i)
			for j, s := range tc.steps {
				got, _, err := d.objs.PalisadeTcxIngress.Benchmark(tcpFrame(sport, 8080, s.flags, s.seq, s.payload, s.frag), 1, nil)
				if err != nil {
					t.Fatalf("step %d: run: %v", j, err)
				}
				if pass := got == tcxNext; pass != s.pass {
					t.Errorf("step %d (flags %#x seq %d %q): passed %v, want %v", j, s.flags, s.seq, s.payload, pass, s.pass)
				}
			}
		})
	}
}
