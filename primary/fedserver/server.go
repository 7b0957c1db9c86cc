// Package fedserver is the primary's side of federation: a QUIC listener
// with mutual TLS that admits remotes with join tokens, issues their client
// certificates, and streams every committed change of the federation
// keyspace to each connected remote at once, filtered per remote and gated
// by the staged rollout in force.
//
// A remote opens one stream and sends Hello with the last revision it
// applied; the server answers Welcome, then the deltas after that revision,
// or a snapshot first when the Log no longer holds them. Remotes ack each
// revision with their health. The server also opens streams towards a
// remote to carry API requests (console drill-in) over the same connection.
//
// Any primary replica can run a Server: it needs a readable Log, not Raft
// leadership. Joins and kicks write through the Members and
// jointoken.Consumer hooks, which the caller routes to the leader.
package fedserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/pki"
)

// Log field names.
const (
	logRemote   = "remote"
	logAddr     = "addr"
	logErr      = "err"
	logRevision = "revision"
)

// QUIC application error codes used when closing connections and streams.
const (
	codeOK       quic.ApplicationErrorCode = 0
	codeRefused  quic.ApplicationErrorCode = 1
	codeDismiss  quic.ApplicationErrorCode = 2
	codeProtocol quic.ApplicationErrorCode = 3
	codeShutdown quic.ApplicationErrorCode = 4
)

// RemoteStatus is what the server knows about one remote.
type RemoteStatus struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Connected is true while the remote holds a stream.
	Connected      bool             `json:"connected"`
	Addr           string           `json:"addr,omitempty"`
	Version        fedproto.Version `json:"version"`
	ConnectedSince time.Time        `json:"connectedSince"`
	LastContact    time.Time        `json:"lastContact"`
	// SentRevision is the last revision sent; AckedRevision the last one
	// the remote applied, at AckedAt.
	SentRevision  uint64    `json:"sentRevision"`
	AckedRevision uint64    `json:"ackedRevision"`
	AckedAt       time.Time `json:"ackedAt"`
	Healthy       bool      `json:"healthy"`
	// LastError is the remote's last apply error (from its acks).
	LastError string `json:"lastError,omitempty"`
	// LinkError says why the remote's last stream ended or was refused.
	LinkError string `json:"linkError,omitempty"`
	// HeldAt is the revision a rollout holds this remote at (0: not held).
	HeldAt uint64 `json:"heldAt,omitempty"`
	// Sessions, Snapshots and Deltas count streams served and what was sent.
	Sessions  uint64 `json:"sessions"`
	Snapshots uint64 `json:"snapshots"`
	Deltas    uint64 `json:"deltas"`
}

// Server is the federation server. Create it with New, serve with Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	version fedproto.Version
	udp     *net.UDPConn
	tr      *quic.Transport
	ln      *quic.Listener

	// mu guards the status and sessions maps (a remote's status has its
	// own lock, always taken after mu) and serialises rollout changes.
	mu       sync.RWMutex
	status   map[string]*remoteState
	sessions map[string]*session
	// gate is the rollout in force, read on every streamed revision
	// without locking; replaced (under mu) on every change.
	gate atomic.Pointer[gateState]

	frames frameCache

	// reportMu orders OnRolloutChange calls; each reports the latest state,
	// so the last call always carries the state in force.
	reportMu sync.Mutex
}

type remoteState struct {
	mu sync.Mutex
	st RemoteStatus
}

type gateState struct {
	roll *rollout.State // nil: no rollout
	// rev is the revision of the stored rollout record this state derives
	// from (0: none); a record at or below it is not installed again.
	rev     uint64
	changed chan struct{} // closed when this state is replaced
}

// New validates cfg and binds the listener; Run serves it and releases it.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IsCompacted == nil {
		cfg.IsCompacted = func(err error) bool { return errors.Is(err, ErrCompacted) }
	}
	cert := cfg.Certificate
	if cert == nil {
		c, err := issueServerCert(cfg.CA, cfg.ServerNames)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    cfg.CA.Pool(),
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	udpAddr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", cfg.Addr, err)
	}
	udp, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	// An explicit transport, so that Run can close it and everything it
	// runs before returning.
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tlsConf, &quic.Config{
		HandshakeIdleTimeout: cfg.HandshakeTimeout,
		MaxIdleTimeout:       cfg.IdleTimeout,
		KeepAlivePeriod:      cfg.IdleTimeout / 3,
		MaxIncomingStreams:   16,
	})
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	s := &Server{
		tr:       tr,
		udp:      udp,
		cfg:      cfg,
		log:      cfg.Logger,
		version:  cfg.Version,
		ln:       ln,
		status:   map[string]*remoteState{},
		sessions: map[string]*session{},
	}
	if s.version == (fedproto.Version{}) {
		s.version = fedproto.Current()
	}
	s.gate.Store(&gateState{changed: make(chan struct{})})
	s.syncRollout()
	return s, nil
}

func issueServerCert(ca *pki.CA, names []string) (tls.Certificate, error) {
	req := pki.LeafRequest{CommonName: "palisade-federation", Server: true, Validity: 365 * 24 * time.Hour}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, n)
		}
	}
	leaf, err := ca.Issue(req)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	return leaf.TLSCertificate(ca)
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves connections until ctx is done, then closes the listener and
// every connection and returns once all of them are finished.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer func() {
		_ = s.ln.Close()
		wg.Wait()
		_ = s.tr.Close()
		_ = s.udp.Close()
	}()
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() { s.serveConn(ctx, conn) })
	}
}

// serveConn owns one QUIC connection and every stream on it.
func (s *Server) serveConn(ctx context.Context, conn *quic.Conn) {
	state := conn.ConnectionState().TLS
	if len(state.PeerCertificates) == 0 {
		s.serveJoinConn(ctx, conn)
		return
	}
	leaf := state.PeerCertificates[0]
	name := leaf.Subject.CommonName
	if len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "remote" || name == "" {
		_ = conn.CloseWithError(codeRefused, "client certificate is not a remote's")
		return
	}
	id := peer{name: name, fingerprint: pki.Fingerprint(leaf), addr: conn.RemoteAddr().String()}
	var wg sync.WaitGroup
	defer wg.Wait()
	// Runs before wg.Wait: closing the connection ends every stream.
	defer conn.CloseWithError(codeShutdown, "connection closing")
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Go(func() { s.serveStream(ctx, conn, str, id) })
	}
}

type peer struct {
	name, fingerprint, addr string
}

// serveStream handles one stream a remote opened: it must start with Hello.
func (s *Server) serveStream(ctx context.Context, conn *quic.Conn, str *quic.Stream, id peer) {
	dec := fedproto.NewDecoder(str, s.cfg.MaxFrame)
	enc := fedproto.NewEncoder(str)
	_ = str.SetReadDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	m, err := dec.ReadMessage()
	_ = str.SetReadDeadline(time.Time{})
	if err != nil {
		s.refuseStream(str, enc, fedproto.RefuseBadRequest, fmt.Sprintf("read first message: %v", err))
		s.log.Warn("bad first message", logRemote, id.name, logAddr, id.addr, logErr, err)
		return
	}
	switch m := m.(type) {
	case *fedproto.Hello:
		s.serveSession(ctx, conn, str, enc, dec, id, m)
	case *fedproto.Leave:
		s.serveLeave(ctx, str, enc, id, m)
	case *fedproto.JoinRequest:
		s.refuseStream(str, enc, fedproto.RefuseBadRequest, "already joined: a peer with a client certificate cannot join again")
	default:
		s.refuseStream(str, enc, fedproto.RefuseBadRequest, fmt.Sprintf("stream must start with hello, got %s", m.Type()))
	}
}

// refuseStream tells the peer why and closes the stream both ways.
func (s *Server) refuseStream(str *quic.Stream, enc *fedproto.Encoder, code fedproto.RefuseCode, reason string) {
	_ = str.SetWriteDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	_ = enc.Encode(&fedproto.Refuse{Code: code, Reason: reason})
	str.CancelRead(quic.StreamErrorCode(codeRefused))
	_ = str.Close()
}

// Status returns every remote seen since the server started, by name.
func (s *Server) Status() []RemoteStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]RemoteStatus, 0, len(s.status))
	for _, rs := range s.status {
		rs.mu.Lock()
		out = append(out, rs.st)
		rs.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Kick marks a member kicked through the Members hook, then dismisses it if
// it is connected here. Future connections from it are refused.
func (s *Server) Kick(ctx context.Context, name string) error {
	if err := s.cfg.Members.Kick(ctx, name); err != nil {
		return fmt.Errorf("kick %s: %w", name, err)
	}
	s.Dismiss(name, fedproto.DismissKicked)
	return nil
}

// Dismiss sends Dismiss to a connected remote and closes its connection. It
// reports whether the remote was connected here. A primary replica calls it
// when it learns of a kick made on another replica.
func (s *Server) Dismiss(name string, reason fedproto.DismissReason) bool {
	s.mu.RLock()
	sess := s.sessions[name]
	s.mu.RUnlock()
	if sess == nil {
		return false
	}
	sess.dismiss(reason)
	return true
}

// DismissAll dismisses every connected remote (the primary was demoted).
func (s *Server) DismissAll(reason fedproto.DismissReason) {
	s.mu.RLock()
	all := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.RUnlock()
	for _, sess := range all {
		sess.dismiss(reason)
	}
}

// Rollout returns a copy of the rollout in force, if any.
func (s *Server) Rollout() (rollout.State, bool) {
	g := s.gate.Load()
	if g.roll == nil {
		return rollout.State{}, false
	}
	return *g.roll, true
}

// SyncRollout installs the rollout stored in the Log when its record is
// newer than the rollout in force (see RolloutLog), moving it forward with
// the acks already received. The server syncs before it sends every
// revision; callers sync after writing a rollout to show it at once.
func (s *Server) SyncRollout() {
	s.syncRollout()
}

// syncRollout reads the stored rollout, if the Log keeps one, and installs
// it when its record is newer than the rollout in force.
func (s *Server) syncRollout() {
	rl, ok := s.cfg.Log.(RolloutLog)
	if !ok || rl.RolloutRevision() <= s.gate.Load().rev {
		return
	}
	r, rev, err := rl.StoredRollout()
	if err != nil {
		s.log.Warn("read stored rollout", logErr, err)
		return
	}
	s.mu.Lock()
	g := s.gate.Load()
	if rev <= g.rev { // installed meanwhile
		s.mu.Unlock()
		return
	}
	if r != nil && !r.Newer(g.roll) {
		// This replica moved the rollout further than its last record
		// (which is on its way to the store): keep the state in force.
		cp := *g.roll
		r = &cp
	}
	changed := s.installLocked(r, rev)
	s.mu.Unlock()
	if changed {
		s.reportRollout()
	}
}

// installLocked installs r as derived from the record at rev and moves it
// forward with the acks already received; it reports whether it moved.
// s.mu must be held.
func (s *Server) installLocked(r *rollout.State, rev uint64) bool {
	changed := false
	if r != nil && (r.Phase == rollout.PhaseCanary || r.Phase == rollout.PhaseRest) {
		changed = r.Advance(s.rolloutRemotesLocked(), s.cfg.Now())
		if changed {
			s.log.Info("rollout advanced", "rollout", r.ID, "phase", r.Phase, "message", r.Message)
		}
	}
	s.setGateLocked(r, rev)
	return changed
}

// UpdateRollout applies fn (for example (*rollout.State).Pause) to the
// rollout in force, then tries to advance it with the current acks and
// reports the result to OnRolloutChange.
func (s *Server) UpdateRollout(fn func(*rollout.State) error) (rollout.State, error) {
	s.mu.Lock()
	g := s.gate.Load()
	cur := g.roll
	if cur == nil {
		s.mu.Unlock()
		return rollout.State{}, errors.New("fedserver: no rollout in force")
	}
	next := *cur
	if err := fn(&next); err != nil {
		s.mu.Unlock()
		return *cur, err
	}
	next.Advance(s.rolloutRemotesLocked(), s.cfg.Now())
	s.setGateLocked(&next, g.rev)
	s.mu.Unlock()
	s.reportRollout()
	return next, nil
}

// setGateLocked installs a rollout state and wakes the sessions waiting on
// the previous one. s.mu must be held.
func (s *Server) setGateLocked(r *rollout.State, rev uint64) {
	old := s.gate.Swap(&gateState{roll: r, rev: rev, changed: make(chan struct{})})
	close(old.changed)
}

// reportRollout hands the rollout in force to OnRolloutChange.
func (s *Server) reportRollout() {
	if s.cfg.OnRolloutChange == nil {
		return
	}
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	if cur := s.gate.Load().roll; cur != nil {
		s.cfg.OnRolloutChange(*cur)
	}
}

// rolloutRemotesLocked gathers what Advance needs; s.mu must be held.
func (s *Server) rolloutRemotesLocked() []rollout.Remote {
	out := make([]rollout.Remote, 0, len(s.status))
	for _, rs := range s.status {
		rs.mu.Lock()
		st := &rs.st
		out = append(out, rollout.Remote{Name: st.Name, Connected: st.Connected, Acked: st.AckedRevision, Healthy: st.Healthy, Error: st.LastError})
		rs.mu.Unlock()
	}
	return out
}

// gateFor returns the highest revision name may receive now, whether it is
// limited, and a channel closed when that may change.
func (s *Server) gateFor(name string) (uint64, bool, <-chan struct{}) {
	g := s.gate.Load()
	limit, limited := g.roll.Limit(name)
	return limit, limited, g.changed
}

func (s *Server) resync(name string, sent, rev uint64) bool {
	return s.gate.Load().roll.Resync(name, sent, rev)
}

// noteAck records an ack and moves the rollout forward.
func (s *Server) noteAck(name string, a *fedproto.Ack) {
	now := s.cfg.Now()
	s.updateStatus(name, func(st *RemoteStatus) {
		st.LastContact = now
		if a.Revision >= st.AckedRevision {
			st.AckedRevision, st.AckedAt = a.Revision, now
		}
		st.Healthy, st.LastError = a.Healthy, a.Error
	})
	if r := s.gate.Load().roll; r != nil && (r.Phase == rollout.PhaseCanary || r.Phase == rollout.PhaseRest) {
		s.mu.Lock()
		changed := false
		if g := s.gate.Load(); g.roll != nil {
			next := *g.roll
			if next.Advance(s.rolloutRemotesLocked(), now) {
				s.setGateLocked(&next, g.rev)
				changed = true
				s.log.Info("rollout advanced", "rollout", next.ID, "phase", next.Phase, "message", next.Message)
			}
		}
		s.mu.Unlock()
		if changed {
			s.reportRollout()
		}
	}
	if s.cfg.OnAck != nil {
		s.cfg.OnAck(name, a.Revision)
	}
}

// updateStatus changes one remote's status under its own lock.
func (s *Server) updateStatus(name string, fn func(*RemoteStatus)) {
	s.mu.RLock()
	rs := s.status[name]
	s.mu.RUnlock()
	if rs != nil {
		rs.mu.Lock()
		fn(&rs.st)
		rs.mu.Unlock()
	}
}

// readErr turns a stream read error into text for status.
func readErr(err error) string {
	if errors.Is(err, io.EOF) {
		return "stream closed by remote"
	}
	return err.Error()
}
