package fedserver_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/goleak"

	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/fedserver/fedservertest"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChildIDs) != "" { // the benchmark's remotes process
		if err := runBenchRemotes(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// primary is a running server with in-memory hooks.
type primary struct {
	ca      *pki.CA
	key     *jointoken.Key
	log     *fedservertest.Log
	members *fedservertest.Members
	srv     *fedserver.Server
}

func startPrimary(tb testing.TB, mod func(*fedserver.Config)) *primary {
	tb.Helper()
	ca, err := pki.NewCA("primary ca", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := jointoken.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	p := &primary{ca: ca, key: key, log: fedservertest.NewLog(), members: fedservertest.NewMembers()}
	cfg := fedserver.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.CA = ca
	cfg.ServerNames = []string{"127.0.0.1"}
	cfg.TokenKey = key.Public()
	cfg.Tokens = fedservertest.NewTokens()
	cfg.Members = p.members
	cfg.Log = p.log
	if mod != nil {
		mod(&cfg)
	}
	p.srv, err = fedserver.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.srv.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("run: %v", err)
		}
	})
	return p
}

// member issues a client certificate for name and records it as a member,
// as a join would.
func (p *primary) member(tb testing.TB, name string, labels map[string]string) *tls.Certificate {
	tb.Helper()
	leaf, err := p.ca.Issue(pki.LeafRequest{CommonName: name, Organization: "remote", Client: true, Validity: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := leaf.TLSCertificate(p.ca)
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.members.Add(context.Background(), fedserver.Member{Name: name, Labels: labels, CertFingerprint: pki.Fingerprint(leaf.Cert)}); err != nil {
		tb.Fatal(err)
	}
	return &cert
}

// dial connects to the primary, with a client certificate or without.
func (p *primary) dial(tb testing.TB, cert *tls.Certificate) *quic.Conn {
	tb.Helper()
	tc := &tls.Config{RootCAs: p.ca.Pool(), NextProtos: []string{fedserver.ALPN}, MinVersion: tls.VersionTLS13}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, p.srv.Addr().String(), tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

type rawStream struct {
	str *quic.Stream
	enc *fedproto.Encoder
	dec *fedproto.Decoder
}

func open(tb testing.TB, conn *quic.Conn) rawStream {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	_ = str.SetReadDeadline(time.Now().Add(20 * time.Second))
	return rawStream{str: str, enc: fedproto.NewEncoder(str), dec: fedproto.NewDecoder(str, 0)}
}

func (r rawStream) send(tb testing.TB, m fedproto.Message) {
	tb.Helper()
	if err := r.enc.Encode(m); err != nil {
		tb.Fatal(err)
	}
}

func (r rawStream) recv(tb testing.TB) fedproto.Message {
	tb.Helper()
	m, err := r.dec.ReadMessage()
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	return m
}

func hello(name string, applied uint64) *fedproto.Hello {
	return &fedproto.Hello{Version: fedproto.Current(), Cluster: name, Applied: applied}
}

func wantRefuse(tb testing.TB, m fedproto.Message, code fedproto.RefuseCode, words ...string) {
	tb.Helper()
	r, ok := m.(*fedproto.Refuse)
	if !ok {
		tb.Fatalf("got %s, want refuse %s", m.Type(), code)
	}
	if r.Code != code {
		tb.Fatalf("refuse code %s (%s), want %s", r.Code, r.Reason, code)
	}
	for _, w := range words {
		if !strings.Contains(r.Reason, w) {
			tb.Errorf("refuse reason %q does not mention %q", r.Reason, w)
		}
	}
}

func TestPeerWithoutCertCannotStream(t *testing.T) {
	p := startPrimary(t, nil)
	p.member(t, "east", nil)
	p.log.Put("secret", []byte("x"))
	s := open(t, p.dial(t, nil))
	s.send(t, hello("east", 0))
	wantRefuse(t, s.recv(t), fedproto.RefuseUnauthorized, "join request")
	if _, err := s.dec.ReadMessage(); err == nil {
		t.Fatal("stream still open after the refusal")
	}
}

func TestJoinRequestFromMemberRefused(t *testing.T) {
	p := startPrimary(t, nil)
	s := open(t, p.dial(t, p.member(t, "east", nil)))
	s.send(t, &fedproto.JoinRequest{Token: "pal1.x.y", Name: "east2"})
	wantRefuse(t, s.recv(t), fedproto.RefuseBadRequest, "already joined")
	if len(p.members.Names()) != 1 {
		t.Fatalf("members %v", p.members.Names())
	}
}

func TestUnknownOrImpostorCertRefused(t *testing.T) {
	p := startPrimary(t, nil)
	cert := p.member(t, "east", nil)
	// A certificate from the right CA for a name that never joined.
	leaf, err := p.ca.Issue(pki.LeafRequest{CommonName: "ghost", Organization: "remote", Client: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ghost, _ := leaf.TLSCertificate(p.ca)
	s := open(t, p.dial(t, &ghost))
	s.send(t, hello("ghost", 0))
	wantRefuse(t, s.recv(t), fedproto.RefuseNotMember, "ghost")

	// A second certificate for a member's name is not the one issued at join.
	leaf2, _ := p.ca.Issue(pki.LeafRequest{CommonName: "east", Organization: "remote", Client: true, Validity: time.Hour})
	other, _ := leaf2.TLSCertificate(p.ca)
	s = open(t, p.dial(t, &other))
	s.send(t, hello("east", 0))
	wantRefuse(t, s.recv(t), fedproto.RefuseUnauthorized, "not the one issued")

	// Hello naming another cluster than the certificate.
	s = open(t, p.dial(t, cert))
	s.send(t, hello("west", 0))
	wantRefuse(t, s.recv(t), fedproto.RefuseBadRequest, "west")
}

func TestBadFramesCloseOnlyThatStream(t *testing.T) {
	p := startPrimary(t, func(c *fedserver.Config) { c.MaxFrame, c.SnapshotChunk = 1<<16, 1<<15 })
	// A healthy remote streaming all along.
	good := open(t, p.dial(t, p.member(t, "good", nil)))
	good.send(t, hello("good", 0))
	if _, ok := good.recv(t).(*fedproto.Welcome); !ok {
		t.Fatal("no welcome")
	}
	badConn := p.dial(t, p.member(t, "bad", nil))
	tests := []struct {
		name  string
		bytes []byte
		close bool
		words []string
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), false, []string{"unknown message type"}},
		{"oversized", []byte{byte(fedproto.TypeHello), 0, 0x10, 0, 0}, false, []string{"too large", "65536"}},
		{"truncated", []byte{byte(fedproto.TypeHello), 0, 0, 0, 50, '{'}, true, []string{"truncated"}},
		{"bad payload", fedproto.AppendFrame(nil, fedproto.Frame{Type: fedproto.TypeHello, Payload: []byte("{nope")}), false, []string{"malformed"}},
		{"wrong first message", mustEncode(t, &fedproto.Ack{Revision: 1}), false, []string{"must start with hello"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, badConn)
			if _, err := s.str.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			if tt.close {
				s.str.Close()
			}
			wantRefuse(t, s.recv(t), fedproto.RefuseBadRequest, tt.words...)
			// The server keeps serving the good remote...
			rev := p.log.Put("k", []byte{byte(i)})
			d, ok := good.recv(t).(*fedproto.Delta)
			if !ok || d.Revision != rev {
				t.Fatalf("good remote got %+v, want delta %d", d, rev)
			}
			good.send(t, &fedproto.Ack{Revision: rev, Healthy: true})
		})
	}
	// ...and the bad remote's connection still serves a proper stream.
	s := open(t, badConn)
	s.send(t, hello("bad", 0))
	if _, ok := s.recv(t).(*fedproto.Welcome); !ok {
		t.Fatal("no welcome on a fresh stream after bad frames")
	}
	if d, ok := s.recv(t).(*fedproto.Delta); !ok || d.Revision != 1 {
		t.Fatalf("got %+v, want the first delta", d)
	}
}

func mustEncode(tb testing.TB, m fedproto.Message) []byte {
	tb.Helper()
	b, err := fedproto.Encode(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestVersionSkew(t *testing.T) {
	server := fedproto.Version{Major: 2, Minor: 3}
	p := startPrimary(t, func(c *fedserver.Config) { c.Version = server })
	cert := p.member(t, "east", nil)
	conn := p.dial(t, cert)
	tests := []struct {
		v    fedproto.Version
		ok   bool
		word string
	}{
		{fedproto.Version{Major: 2, Minor: 3}, true, ""},
		{fedproto.Version{Major: 2, Minor: 2}, true, ""},
		{fedproto.Version{Major: 2, Minor: 1}, false, "too old"},
		{fedproto.Version{Major: 1, Minor: 9}, false, "too old"},
		{fedproto.Version{Major: 2, Minor: 4}, false, "too new"},
		{fedproto.Version{Major: 3, Minor: 0}, false, "too new"},
	}
	for _, tt := range tests {
		t.Run(tt.v.String(), func(t *testing.T) {
			s := open(t, conn)
			s.send(t, &fedproto.Hello{Version: tt.v, Cluster: "east"})
			m := s.recv(t)
			if tt.ok {
				w, ok := m.(*fedproto.Welcome)
				if !ok || w.Version != server {
					t.Fatalf("got %+v, want welcome at %s", m, server)
				}
				s.str.CancelRead(0)
				s.str.Close()
				return
			}
			wantRefuse(t, m, fedproto.RefuseVersion, tt.v.String(), server.String(), tt.word)
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ca, _ := pki.NewCA("ca", time.Hour)
	key, _ := jointoken.NewKey()
	base := func() fedserver.Config {
		c := fedserver.DefaultConfig()
		c.Addr, c.CA, c.ServerNames, c.TokenKey = "127.0.0.1:0", ca, []string{"127.0.0.1"}, key.Public()
		c.Members, c.Log = fedservertest.NewMembers(), fedservertest.NewLog()
		return c
	}
	tests := []struct {
		name string
		mod  func(*fedserver.Config)
	}{
		{"no ca", func(c *fedserver.Config) { c.CA = nil }},
		{"no names", func(c *fedserver.Config) { c.ServerNames = nil }},
		{"short token key", func(c *fedserver.Config) { c.TokenKey = c.TokenKey[:5] }},
		{"no members", func(c *fedserver.Config) { c.Members = nil }},
		{"no log", func(c *fedserver.Config) { c.Log = nil }},
		{"chunk above frame", func(c *fedserver.Config) { c.SnapshotChunk = c.MaxFrame + 1 }},
		{"zero ping", func(c *fedserver.Config) { c.PingInterval = 0 }},
	}
	for _, tt := range tests {
		c := base()
		tt.mod(&c)
		if _, err := fedserver.New(c); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
}

func TestPingKeepsContact(t *testing.T) {
	p := startPrimary(t, func(c *fedserver.Config) { c.PingInterval = 20 * time.Millisecond })
	s := open(t, p.dial(t, p.member(t, "east", nil)))
	s.send(t, hello("east", 0))
	if _, ok := s.recv(t).(*fedproto.Welcome); !ok {
		t.Fatal("no welcome")
	}
	ping, ok := s.recv(t).(*fedproto.Ping)
	if !ok {
		t.Fatal("no ping")
	}
	s.send(t, &fedproto.Pong{Nonce: ping.Nonce})
	// A message the remote may not send ends its stream with an error.
	s.send(t, &fedproto.Delta{Revision: 1, Ops: nil})
	for {
		_, err := s.dec.ReadMessage()
		if err != nil {
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.srv.Status()
		if len(st) == 1 && !st[0].Connected {
			if !strings.Contains(st[0].LinkError, "sent delta") {
				t.Fatalf("link error %q, want it to name the delta", st[0].LinkError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want disconnected", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStalledRemoteDoesNotHoldOthers(t *testing.T) {
	p := startPrimary(t, func(c *fedserver.Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	good := open(t, p.dial(t, p.member(t, "good", nil)))
	good.send(t, hello("good", 0))
	stalled := open(t, p.dial(t, p.member(t, "stalled", nil)))
	stalled.send(t, hello("stalled", 0))
	if _, ok := good.recv(t).(*fedproto.Welcome); !ok {
		t.Fatal("no welcome")
	}
	// The stalled remote never reads again: its flow-control window fills
	// and the server's writes to it block.
	value := strings.Repeat("v", 64<<10)
	var rev uint64
	for i := range 64 {
		rev = p.log.Put(fmt.Sprintf("k%d", i%8), []byte(value))
		d, ok := good.recv(t).(*fedproto.Delta)
		if !ok || d.Revision != rev {
			t.Fatalf("good remote got %+v, want delta %d", d, rev)
		}
		good.send(t, &fedproto.Ack{Revision: rev, Healthy: true})
	}
	// Kicking the stalled remote ends its session even though the Dismiss
	// cannot be delivered.
	if err := p.srv.Kick(context.Background(), "stalled"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st fedserver.RemoteStatus
		for _, s := range p.srv.Status() {
			if s.Name == "stalled" {
				st = s
			}
		}
		if !st.Connected {
			if st.SentRevision >= rev {
				t.Fatalf("stalled remote was sent revision %d; its window should have filled first", st.SentRevision)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stalled remote still connected after its kick")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRemoteAheadOfLogGetsSnapshot(t *testing.T) {
	p := startPrimary(t, nil)
	p.log.Put("k", []byte("restored"))
	s := open(t, p.dial(t, p.member(t, "east", nil)))
	s.send(t, hello("east", 500)) // applied more than the log ever had
	if _, ok := s.recv(t).(*fedproto.Welcome); !ok {
		t.Fatal("no welcome")
	}
	snap, ok := s.recv(t).(*fedproto.Snapshot)
	if !ok || snap.Revision != 1 || !snap.Last || len(snap.Objects) != 1 || string(snap.Objects[0].Value) != "restored" {
		t.Fatalf("got %+v, want the snapshot at revision 1", snap)
	}
	rev := p.log.Put("k", []byte("next"))
	if d, ok := s.recv(t).(*fedproto.Delta); !ok || d.Revision != rev {
		t.Fatalf("got %+v, want delta %d after the snapshot", d, rev)
	}
}
