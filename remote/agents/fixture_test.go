package agents

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"

	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/policy/learn"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/agentproto"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func waitFor(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fixture is a real single-replica store with the module running on it.
type fixture struct {
	st  *store.Store
	ps  *policystore.Store
	ca  *pki.CA
	m   *Module
	tok string
}

func newFixture(t testing.TB, tune func(*Config)) *fixture {
	t.Helper()
	st := storetest.Open(t, "s1")
	pcfg := policystore.DefaultConfig()
	pcfg.KV = st
	pcfg.Learn = learn.DefaultConfig()
	ps, err := policystore.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Store, cfg.Policy, cfg.CA = st, ps, func() *pki.CA { return ca }
	cfg.Addr = storetest.FreeAddr(t)
	cfg.LearnDelay = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
	if tune != nil {
		tune(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	f := &fixture{st: st, ps: ps, ca: ca, m: m}
	tok, err := m.CreateToken(context.Background(), time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	f.tok = tok.Token
	return f
}

// testAgent is a controller's view of an agent: enrolment and a session
// over real QUIC, holding the table it was sent.
type testAgent struct {
	node    string
	certPEM []byte
	keyPEM  []byte
	caPEM   []byte

	udp   *net.UDPConn
	tr    *quic.Transport
	conn  *quic.Conn
	str   *quic.Stream
	enc   *agentproto.Encoder
	dec   *agentproto.Decoder
	table *compile.Table
	seq   uint64
}

func dialAgent(ctx context.Context, addr string, tc *tls.Config) (*net.UDPConn, *quic.Transport, *quic.Conn, *quic.Stream, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	tr := &quic.Transport{Conn: udp}
	conn, err := tr.Dial(ctx, raddr, tc, &quic.Config{HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: 30 * time.Second, KeepAlivePeriod: 5 * time.Second})
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, nil, nil, nil, err
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		conn.CloseWithError(0, "")
		tr.Close()
		udp.Close()
		return nil, nil, nil, nil, err
	}
	return udp, tr, conn, str, nil
}

func clientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{NextProtos: []string{ALPN}, MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: certs}
}

// enroll sends Enroll and returns the answer.
func enroll(t testing.TB, addr, token, node string) (*testAgent, agentproto.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := pki.MarshalPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	udp, tr, conn, str, err := dialAgent(ctx, addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { conn.CloseWithError(0, ""); tr.Close(); udp.Close() }()
	if err := agentproto.NewEncoder(str).Encode(&agentproto.Enroll{Version: agentproto.Version, Token: token, Node: node, PublicKeyPEM: pub}); err != nil {
		t.Fatal(err)
	}
	msg, err := agentproto.NewDecoder(str, 0).Decode()
	if err != nil {
		t.Fatalf("enroll answer: %v", err)
	}
	a := &testAgent{node: node, keyPEM: keyPEM}
	if e, ok := msg.(*agentproto.Enrolled); ok {
		a.certPEM, a.caPEM = e.CertPEM, e.CAPEM
	}
	return a, msg
}

// connect opens a session and sends hello; it returns the first answer.
func (a *testAgent) connect(t testing.TB, addr, node string) agentproto.Message {
	t.Helper()
	return a.hello(t, addr, node, agentproto.Version)
}

// hello connects and says Hello with a protocol version.
func (a *testAgent) hello(t testing.TB, addr, node string, version int) agentproto.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var certs []tls.Certificate
	if a.certPEM != nil {
		pair, err := tls.X509KeyPair(a.certPEM, a.keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, pair)
	}
	udp, tr, conn, str, err := dialAgent(ctx, addr, clientTLS(certs...))
	if err != nil {
		t.Fatal(err)
	}
	a.udp, a.tr, a.conn, a.str = udp, tr, conn, str
	a.enc, a.dec = agentproto.NewEncoder(str), agentproto.NewDecoder(str, 0)
	t.Cleanup(a.close)
	if err := a.enc.Encode(&agentproto.Hello{Version: version, Node: node}); err != nil {
		t.Fatal(err)
	}
	msg, err := a.dec.Decode()
	if err != nil {
		t.Fatalf("hello answer: %v", err)
	}
	if tm, ok := msg.(*agentproto.Table); ok {
		a.apply(t, tm)
	}
	return msg
}

func (a *testAgent) close() {
	if a.conn != nil {
		a.conn.CloseWithError(0, "")
		a.tr.Close()
		a.udp.Close()
		a.conn = nil
	}
}

// apply applies a Table or Diff and acks it.
func (a *testAgent) apply(t testing.TB, msg agentproto.Message) {
	t.Helper()
	switch m := msg.(type) {
	case *agentproto.Table:
		var tb compile.Table
		if err := json.Unmarshal(m.Table, &tb); err != nil {
			t.Fatal(err)
		}
		a.table, a.seq = &tb, m.Seq
	case *agentproto.Diff:
		var d compile.TableDiff
		if err := json.Unmarshal(m.Diff, &d); err != nil {
			t.Fatal(err)
		}
		a.table, a.seq = d.Apply(a.table), m.Seq
	default:
		t.Fatalf("got %s, want Table or Diff", msg.Type())
	}
	if err := a.enc.Encode(&agentproto.Ack{Seq: a.seq}); err != nil {
		t.Fatal(err)
	}
}

// next reads and applies the next Diff.
func (a *testAgent) next(t testing.TB) {
	t.Helper()
	a.str.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := a.dec.Decode()
	if err != nil {
		t.Fatalf("read diff: %v; table verdicts %+v identities %+v workloads %+v", err, a.table.Verdicts, a.table.Identities, a.table.Workloads)
	}
	a.apply(t, msg)
}

// until applies diffs until cond holds.
func (a *testAgent) until(t testing.TB, what string, cond func(*compile.Table) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(a.table) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached; table verdicts %+v", what, a.table.Verdicts)
		}
		a.next(t)
	}
}
