// Package fedclient is a remote cluster's side of federation: it joins a
// primary with a token (pinning the primary CA the token names), then keeps
// one QUIC stream to the primary, applies the deltas and snapshots it
// receives through an Applier, acks every applied revision with its health,
// and serves the primary's API requests (console drill-in) with the
// remote's own http.Handler.
//
// The client reconnects with exponential backoff and jitter across every
// primary address in its identity (any primary replica can serve it) and
// resumes from the last revision the Applier holds, so a reconnect needs no
// snapshot unless the primary no longer has the history.
package fedclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/shared/fedproto"
)

// Applier writes federated state into the remote's store. Applying a
// revision at or below Applied must be harmless.
type Applier interface {
	// Apply applies every change of one revision atomically.
	Apply(ctx context.Context, d fedproto.Delta) error
	// ApplySnapshot replaces the whole federated keyspace with snap
	// (every chunk's objects, assembled) at snap.Revision.
	ApplySnapshot(ctx context.Context, snap fedproto.Snapshot) error
	// Applied is the last revision applied completely.
	Applied() uint64
}

// Config configures a Client.
type Config struct {
	// Identity is the result of Join.
	Identity *Identity
	// Labels are reported in Hello.
	Labels map[string]string
	// Applier applies what the primary streams.
	Applier Applier
	// Handler serves API requests the primary carries over the
	// connection; nil answers 404 to every request.
	Handler http.Handler
	// Health, if set, is asked after each apply; an error marks the ack
	// unhealthy with that error (for example enforcement failing).
	Health func() error
	// OnDismiss is called once when the primary dismisses this remote
	// (kicked or demoted), before Run returns.
	OnDismiss func(reason fedproto.DismissReason)
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// per failed attempt with jitter.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one connection attempt.
	DialTimeout time.Duration
	// IdleTimeout closes a silent connection.
	IdleTimeout time.Duration
	// MaxFrame is the largest frame accepted from the primary.
	MaxFrame int
	// Version is the protocol version spoken; zero means
	// fedproto.Current(). Only a test of version skew sets it.
	Version fedproto.Version
	// Logger receives the client's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults for everything but the identity and
// hooks.
func DefaultConfig() Config {
	return Config{
		MinBackoff:  250 * time.Millisecond,
		MaxBackoff:  30 * time.Second,
		DialTimeout: 10 * time.Second,
		IdleTimeout: 45 * time.Second,
		MaxFrame:    fedproto.DefaultMaxFrame,
	}
}

// Validate checks a Config.
func (c *Config) Validate() error {
	switch {
	case c.Identity == nil || c.Identity.Name == "":
		return errors.New("fedclient: config: identity is missing")
	case len(c.Identity.Addrs) == 0:
		return errors.New("fedclient: config: identity has no primary addresses")
	case c.Applier == nil:
		return errors.New("fedclient: config: applier is nil")
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("fedclient: config: backoff %s..%s is not a positive range", c.MinBackoff, c.MaxBackoff)
	case c.DialTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("fedclient: config: dial and idle timeouts must be positive")
	case c.MaxFrame <= 0:
		return fmt.Errorf("fedclient: config: max frame %d must be positive", c.MaxFrame)
	}
	return nil
}

// Status is the client's view of its link to the primary.
type Status struct {
	// Primary is the address of the primary replica in use (or last tried).
	Primary   string `json:"primary"`
	Connected bool   `json:"connected"`
	// ConnectedSince and DisconnectedSince date the last transition.
	ConnectedSince    time.Time `json:"connectedSince"`
	DisconnectedSince time.Time `json:"disconnectedSince"`
	Applied           uint64    `json:"applied"`
	LastError         string    `json:"lastError,omitempty"`
	// Dismissed is set once the primary dismissed this remote.
	Dismissed fedproto.DismissReason `json:"dismissed,omitempty"`
	// Sessions, Snapshots and Deltas count streams and what arrived.
	Sessions  uint64 `json:"sessions"`
	Snapshots uint64 `json:"snapshots"`
	Deltas    uint64 `json:"deltas"`
}

// Client keeps a remote connected to its primary.
type Client struct {
	cfg     Config
	log     *slog.Logger
	tls     *tls.Config
	version fedproto.Version

	mu     sync.Mutex
	status Status
}

// New validates cfg and returns a Client; Run connects it.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := memberTLS(cfg.Identity)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, tls: tc, version: cfg.Version}
	if c.version == (fedproto.Version{}) {
		c.version = fedproto.Current()
	}
	c.status.DisconnectedSince = time.Now()
	return c, nil
}

// Status returns the link's state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Applied = c.cfg.Applier.Applied()
	return s
}

func (c *Client) update(fn func(*Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(&c.status)
}

// Run keeps the remote connected until ctx is done (it then returns nil)
// or the primary dismisses it (it returns an error wrapping ErrDismissed,
// or a RefusedError wrapping ErrKicked when the dismissal is learnt at
// connection time).
func (c *Client) Run(ctx context.Context) error {
	addrs := c.cfg.Identity.Addrs
	// The primary lists its serving replica (its Raft leader) first.
	next := 0
	failures := 0
	for {
		addr := addrs[next%len(addrs)]
		connected, err := c.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrDismissed) || errors.Is(err, ErrKicked) {
			return err
		}
		var aerr *applyError
		switch {
		case errors.As(err, &aerr):
			failures++ // the same revision would fail again at once: back off
		case connected:
			failures = 0
		default:
			failures++
			next++ // try the next primary replica
		}
		c.log.Warn("federation link down", "addr", addr, "err", err)
		delay := backoff(c.cfg.MinBackoff, c.cfg.MaxBackoff, failures)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is MinBackoff doubled per failure up to MaxBackoff, with jitter
// in [d/2, d].
func backoff(lo, hi time.Duration, failures int) time.Duration {
	d := lo
	for i := 0; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// session runs one connection; connected reports whether a Welcome came.
func (c *Client) session(ctx context.Context, addr string) (connected bool, err error) {
	defer func() {
		now := time.Now()
		c.update(func(s *Status) {
			if s.Connected {
				s.DisconnectedSince = now
			}
			s.Connected = false
			if err != nil && ctx.Err() == nil {
				s.LastError = err.Error()
			}
		})
	}()
	c.update(func(s *Status) { s.Primary = addr })
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return false, fmt.Errorf("open udp socket: %w", err)
	}
	defer udp.Close()
	tr := &quic.Transport{Conn: udp}
	defer tr.Close() // after the connection: ends the transport's goroutines
	tc := c.tls.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		tc.ServerName = host
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	conn, err := tr.Dial(dctx, raddr, tc, &quic.Config{
		HandshakeIdleTimeout: c.cfg.DialTimeout,
		MaxIdleTimeout:       c.cfg.IdleTimeout,
		KeepAlivePeriod:      c.cfg.IdleTimeout / 3,
		MaxIncomingStreams:   32,
	})
	cancel()
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		_ = conn.CloseWithError(0, "remote closing")
		wg.Wait()
	}()
	// Closing the connection unblocks every read when ctx ends.
	unhook := context.AfterFunc(sctx, func() { _ = conn.CloseWithError(0, "remote closing") })
	defer unhook()

	str, err := conn.OpenStreamSync(sctx)
	if err != nil {
		return false, fmt.Errorf("open stream to %s: %w", addr, err)
	}
	enc := fedproto.NewEncoder(str)
	dec := fedproto.NewDecoder(str, c.cfg.MaxFrame)
	hello := &fedproto.Hello{Version: c.version, Cluster: c.cfg.Identity.Name, Labels: c.cfg.Labels, Applied: c.cfg.Applier.Applied()}
	if err := enc.Encode(hello); err != nil {
		return false, err
	}
	m, err := dec.ReadMessage()
	if err != nil {
		return false, fmt.Errorf("read welcome from %s: %w", addr, err)
	}
	switch m := m.(type) {
	case *fedproto.Welcome:
	case *fedproto.Refuse:
		rerr := &RefusedError{Code: m.Code, Reason: m.Reason}
		if m.Code == fedproto.RefuseKicked {
			c.dismissed(fedproto.DismissKicked)
		}
		return false, rerr
	default:
		return false, fmt.Errorf("primary %s answered hello with %s", addr, m.Type())
	}
	now := time.Now()
	c.update(func(s *Status) { s.Connected, s.ConnectedSince, s.LastError = true, now, ""; s.Sessions++ })
	c.log.Info("federation link up", "addr", addr, "applied", hello.Applied)

	wg.Go(func() { c.serveRequests(sctx, conn) })
	err = c.receive(sctx, enc, dec)
	if ctx.Err() == nil && !errors.Is(err, ErrDismissed) {
		drain(str, c.cfg.DialTimeout)
	}
	return true, err
}

// drain closes our side of the stream and waits (bounded) for the primary
// to close its side, so that a last ack is delivered before the connection
// closes.
func drain(str *quic.Stream, limit time.Duration) {
	_ = str.Close()
	_ = str.SetReadDeadline(time.Now().Add(limit))
	_, _ = io.Copy(io.Discard, io.LimitReader(str, fedproto.DefaultMaxFrame))
}

func (c *Client) dismissed(reason fedproto.DismissReason) {
	first := false
	c.update(func(s *Status) {
		first = s.Dismissed == ""
		s.Dismissed = reason
	})
	if first && c.cfg.OnDismiss != nil {
		c.cfg.OnDismiss(reason)
	}
}

// receive applies what the primary sends until the stream ends.
func (c *Client) receive(ctx context.Context, enc *fedproto.Encoder, dec *fedproto.Decoder) error {
	var pending *fedproto.Snapshot // chunks gathered so far
	for {
		m, err := dec.ReadMessage()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("primary closed the stream")
			}
			return fmt.Errorf("read from primary: %w", err)
		}
		switch m := m.(type) {
		case *fedproto.Delta:
			c.update(func(s *Status) { s.Deltas++ })
			var applyErr error
			if m.Revision > c.cfg.Applier.Applied() {
				applyErr = c.cfg.Applier.Apply(ctx, *m)
			}
			if err := c.ack(enc, m.Revision, applyErr); err != nil {
				return err
			}
			if applyErr != nil {
				return &applyError{rev: m.Revision, err: applyErr}
			}
		case *fedproto.Snapshot:
			if pending == nil {
				if m.Seq != 0 {
					return fmt.Errorf("snapshot %d starts at chunk %d", m.Revision, m.Seq)
				}
				pending = &fedproto.Snapshot{Revision: m.Revision}
			} else if m.Revision != pending.Revision || m.Seq != pending.Seq+1 {
				return fmt.Errorf("snapshot chunk %d of revision %d after chunk %d of revision %d", m.Seq, m.Revision, pending.Seq, pending.Revision)
			}
			pending.Seq = m.Seq
			pending.Objects = append(pending.Objects, m.Objects...)
			if !m.Last {
				continue
			}
			pending.Last = true
			c.update(func(s *Status) { s.Snapshots++ })
			applyErr := c.cfg.Applier.ApplySnapshot(ctx, *pending)
			rev := pending.Revision
			pending = nil
			if err := c.ack(enc, rev, applyErr); err != nil {
				return err
			}
			if applyErr != nil {
				return &applyError{rev: rev, snapshot: true, err: applyErr}
			}
		case *fedproto.Ping:
			if err := enc.Encode(&fedproto.Pong{Nonce: m.Nonce}); err != nil {
				return err
			}
		case *fedproto.Dismiss:
			c.dismissed(m.Reason)
			return fmt.Errorf("%w: %s", ErrDismissed, m.Reason)
		case *fedproto.Refuse:
			return &RefusedError{Code: m.Code, Reason: m.Reason}
		default:
			return fmt.Errorf("primary sent unexpected %s", m.Type())
		}
	}
}

// applyError ends a session when the Applier fails; the client reconnects
// (with backoff) and the primary resends from the last applied revision.
type applyError struct {
	rev      uint64
	snapshot bool
	err      error
}

func (e *applyError) Error() string {
	what := "revision"
	if e.snapshot {
		what = "snapshot"
	}
	return fmt.Sprintf("apply %s %d: %v", what, e.rev, e.err)
}

func (e *applyError) Unwrap() error { return e.err }

// ack reports the last revision applied and health.
func (c *Client) ack(enc *fedproto.Encoder, rev uint64, applyErr error) error {
	a := &fedproto.Ack{Revision: c.cfg.Applier.Applied(), Healthy: true}
	if applyErr != nil {
		a.Healthy, a.Error = false, applyErr.Error()
	} else if a.Revision < rev {
		a.Revision = rev // an applier may skip revisions that change nothing here
	}
	if a.Healthy && c.cfg.Health != nil {
		if err := c.cfg.Health(); err != nil {
			a.Healthy, a.Error = false, err.Error()
		}
	}
	return enc.Encode(a)
}

// serveRequests answers the primary's API requests, one stream each.
func (c *Client) serveRequests(ctx context.Context, conn *quic.Conn) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Go(func() { c.serveRequest(ctx, str) })
	}
}

// maxResponse bounds a proxied response body.
const maxResponse = 8 << 20

func (c *Client) serveRequest(ctx context.Context, str *quic.Stream) {
	defer str.Close()
	_ = str.SetDeadline(time.Now().Add(c.cfg.DialTimeout * 3))
	enc := fedproto.NewEncoder(str)
	m, err := fedproto.NewDecoder(str, c.cfg.MaxFrame).ReadMessage()
	if err != nil {
		_ = enc.Encode(&fedproto.Refuse{Code: fedproto.RefuseBadRequest, Reason: fmt.Sprintf("read request: %v", err)})
		return
	}
	req, ok := m.(*fedproto.Request)
	if !ok {
		_ = enc.Encode(&fedproto.Refuse{Code: fedproto.RefuseBadRequest, Reason: fmt.Sprintf("want a request, got %s", m.Type())})
		return
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, "http://federation"+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		_ = enc.Encode(&fedproto.Refuse{Code: fedproto.RefuseBadRequest, Reason: err.Error()})
		return
	}
	hr.Header = http.Header(req.Header)
	if hr.Header == nil {
		hr.Header = http.Header{}
	}
	hr.RemoteAddr = "primary"
	w := &responseWriter{header: http.Header{}}
	if c.cfg.Handler == nil {
		http.NotFound(w, hr)
	} else {
		c.cfg.Handler.ServeHTTP(w, hr)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.overflow {
		w.status, w.body = http.StatusBadGateway, *bytes.NewBufferString("response over the federation proxy limit")
	}
	_ = enc.Encode(&fedproto.Response{Status: w.status, Header: w.header, Body: w.body.Bytes()})
}

// responseWriter buffers a handler's response.
type responseWriter struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len()+len(p) > maxResponse {
		w.overflow = true
		return 0, errors.New("fedclient: response too large")
	}
	return w.body.Write(p)
}
