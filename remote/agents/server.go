package agents

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/shared/agentproto"
	"github.com/palisade-sec/palisade/shared/pki"
)

// QUIC application error codes.
const (
	codeOK       quic.ApplicationErrorCode = 0
	codeRefused  quic.ApplicationErrorCode = 1
	codeShutdown quic.ApplicationErrorCode = 4
)

const handshakeTimeout = 10 * time.Second

type listener struct {
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener
}

func (l *listener) close() error {
	err := l.ln.Close()
	_ = l.tr.Close()
	_ = l.udp.Close()
	return err
}

// listen binds the agent listener with a server certificate from the CA.
func (m *Module) listen() (*listener, error) {
	ca := m.cfg.CA()
	req := pki.LeafRequest{CommonName: "palisade-agents", Server: true, Validity: 365 * 24 * time.Hour,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	for _, n := range m.cfg.ServerNames {
		if ip := net.ParseIP(n); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else if n != "" {
			req.DNSNames = append(req.DNSNames, n)
		}
	}
	leaf, err := ca.Issue(req)
	if err != nil {
		return nil, fmt.Errorf("issue agent listener certificate: %w", err)
	}
	cert, err := leaf.TLSCertificate(ca)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	ua, err := net.ResolveUDPAddr("udp", m.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", m.cfg.Addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", m.cfg.Addr, err)
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tc, &quic.Config{
		HandshakeIdleTimeout: handshakeTimeout,
		MaxIdleTimeout:       m.cfg.IdleTimeout,
		KeepAlivePeriod:      m.cfg.IdleTimeout / 3,
		MaxIncomingStreams:   4,
	})
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("listen %s: %w", m.cfg.Addr, err)
	}
	return &listener{udp: udp, tr: tr, ln: ln}, nil
}

// serve accepts connections until ctx ends.
func (m *Module) serve(ctx context.Context, l *listener, wg *sync.WaitGroup) error {
	for {
		conn, err := l.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("agents: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.serveConn(ctx, conn)
		}()
	}
}

// refuse tells the agent why and gives it a moment to read the answer
// before the connection closes.
func refuse(conn *quic.Conn, str *quic.Stream, enc *agentproto.Encoder, code agentproto.RefuseCode, reason string) {
	_ = str.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_ = enc.Encode(&agentproto.Refuse{Code: code, Reason: reason})
	_ = str.Close()
	lingerFor(conn)
}

// lingerFor waits until the peer closes the connection, for two seconds at
// most, so that the last frames sent reach it.
func lingerFor(conn *quic.Conn) {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-conn.Context().Done():
	case <-t.C:
	}
}

// serveConn handles one agent connection: one stream, starting with
// Enroll (no client certificate) or Hello.
func (m *Module) serveConn(ctx context.Context, conn *quic.Conn) {
	defer conn.CloseWithError(codeShutdown, "closing")
	actx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	str, err := conn.AcceptStream(actx)
	cancel()
	if err != nil {
		return
	}
	enc := agentproto.NewEncoder(str)
	dec := agentproto.NewDecoder(str, 0)
	_ = str.SetReadDeadline(time.Now().Add(handshakeTimeout))
	msg, err := dec.Decode()
	_ = str.SetReadDeadline(time.Time{})
	if err != nil {
		refuse(conn, str, enc, agentproto.RefuseProtocol, fmt.Sprintf("read first message: %v", err))
		return
	}
	certs := conn.ConnectionState().TLS.PeerCertificates
	switch msg := msg.(type) {
	case *agentproto.Enroll:
		m.enroll(conn, str, enc, msg)
	case *agentproto.Hello:
		if len(certs) == 0 {
			refuse(conn, str, enc, agentproto.RefuseIdentity, "hello needs a client certificate: enroll first")
			return
		}
		leaf := certs[0]
		if len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != OrgAgent {
			refuse(conn, str, enc, agentproto.RefuseIdentity, "client certificate is not an agent's")
			return
		}
		if leaf.Subject.CommonName != msg.Node {
			refuse(conn, str, enc, agentproto.RefuseIdentity, fmt.Sprintf("certificate is for node %q, hello says %q", leaf.Subject.CommonName, msg.Node))
			return
		}
		if msg.Version < agentproto.MinVersion || msg.Version > agentproto.Version {
			refuse(conn, str, enc, agentproto.RefuseVersion, fmt.Sprintf("agent speaks version %d, controller %d..%d", msg.Version, agentproto.MinVersion, agentproto.Version))
			return
		}
		s := &session{m: m, node: msg.Node, addrs: msg.Addresses, str: str, enc: enc, dec: dec}
		m.sessMu.Lock()
		m.sessions[s] = struct{}{}
		m.sessMu.Unlock()
		m.log.Info("agent connected", logNode, s.node, "addr", conn.RemoteAddr().String())
		err := s.run(ctx)
		m.sessMu.Lock()
		delete(m.sessions, s)
		m.sessMu.Unlock()
		m.log.Info("agent disconnected", logNode, s.node, logErr, err)
	default:
		refuse(conn, str, enc, agentproto.RefuseProtocol, fmt.Sprintf("stream must start with Enroll or Hello, got %s", msg.Type()))
	}
}

// enroll checks the token and issues the agent's client certificate.
func (m *Module) enroll(conn *quic.Conn, str *quic.Stream, enc *agentproto.Encoder, msg *agentproto.Enroll) {
	if err := m.checkToken(msg.Token, time.Now()); err != nil {
		m.log.Warn("agent enrolment refused", logNode, msg.Node, logErr, err)
		refuse(conn, str, enc, agentproto.RefuseToken, err.Error())
		return
	}
	pub, err := pki.ParsePublicKey(msg.PublicKeyPEM)
	if err != nil {
		refuse(conn, str, enc, agentproto.RefuseProtocol, fmt.Sprintf("public key: %v", err))
		return
	}
	ca := m.cfg.CA()
	leaf, err := ca.Issue(pki.LeafRequest{CommonName: msg.Node, Organization: OrgAgent, Client: true,
		Validity: m.cfg.CertValidity, PublicKey: pub})
	if err != nil {
		refuse(conn, str, enc, agentproto.RefuseInternal, fmt.Sprintf("issue certificate: %v", err))
		return
	}
	_ = str.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if err := enc.Encode(&agentproto.Enrolled{CertPEM: leaf.CertPEM, CAPEM: ca.CertPEM}); err != nil {
		return
	}
	m.log.Info("agent enrolled", logNode, msg.Node)
	_ = str.Close()
	lingerFor(conn)
}

// session is one enrolled agent's stream.
type session struct {
	m     *Module
	node  string
	addrs []netip.Addr
	str   *quic.Stream
	enc   *agentproto.Encoder
	dec   *agentproto.Decoder

	mu    sync.Mutex
	acked uint64
}

// run sends the node's table, then diffs, and ingests what the agent
// sends, until either side ends.
func (s *session) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer s.str.CancelRead(quic.StreamErrorCode(codeOK))
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- s.readLoop(ctx)
		cancel()
	}()
	err := s.writeLoop(ctx)
	cancel()
	if rerr := <-errc; err == nil || errors.Is(err, context.Canceled) {
		err = rerr
	}
	return err
}

func (s *session) writeLoop(ctx context.Context) error {
	var last *compile.Table
	var seq uint64
	for {
		t, _, changed := s.m.nodeTable(s.node)
		seq++
		var msg agentproto.Message
		if last == nil {
			b, err := json.Marshal(t)
			if err != nil {
				return err
			}
			msg = &agentproto.Table{Seq: seq, Table: b, Version: agentproto.Version}
		} else {
			d := compile.Diff(last, t)
			if d.Empty() {
				seq--
				msg = nil
			} else {
				b, err := json.Marshal(d)
				if err != nil {
					return err
				}
				msg = &agentproto.Diff{Seq: seq, Diff: b, Sent: time.Now().UnixNano()}
			}
		}
		if msg != nil {
			_ = s.str.SetWriteDeadline(time.Now().Add(s.m.cfg.IdleTimeout))
			if err := s.enc.Encode(msg); err != nil {
				return err
			}
			last = t
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

func (s *session) readLoop(ctx context.Context) error {
	for {
		msg, err := s.dec.Decode()
		if err != nil {
			return err
		}
		switch msg := msg.(type) {
		case *agentproto.Ack:
			s.mu.Lock()
			s.acked = msg.Seq
			s.mu.Unlock()
			if msg.Error != "" {
				s.m.log.Warn("agent could not apply policy", logNode, s.node, logErr, msg.Error)
			}
		case *agentproto.Workloads:
			if err := s.m.putNode(ctx, NodeRecord{Name: s.node, Addresses: s.addrs, Workloads: msg.Workloads}); err != nil {
				s.m.log.Warn("store workloads", logNode, s.node, logErr, err)
			}
		case *agentproto.Flows:
			if err := s.m.ingestFlows(ctx, s.node, msg.Flows); err != nil {
				s.m.log.Warn("store flows", logNode, s.node, logErr, err)
			}
		case *agentproto.Events:
			if err := s.m.ingestEvents(ctx, s.node, msg.Events); err != nil {
				s.m.log.Warn("store events", logNode, s.node, logErr, err)
			}
		case *agentproto.Processes:
			if err := s.m.learnProcesses(ctx, s.node, msg.Processes); err != nil && ctx.Err() == nil {
				s.m.log.Warn("learn processes", logNode, s.node, logErr, err)
			}
		default:
			return fmt.Errorf("agents: unexpected %s from agent", msg.Type())
		}
	}
}
