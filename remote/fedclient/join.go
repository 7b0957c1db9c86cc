package fedclient

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

// Errors for refusals that are not about the token.
var (
	ErrKicked     = errors.New("fedclient: kicked from the federation")
	ErrNameTaken  = errors.New("fedclient: cluster name already a member")
	ErrNotMember  = errors.New("fedclient: not a member of the federation")
	ErrRefused    = errors.New("fedclient: refused by the primary")
	ErrDismissed  = errors.New("fedclient: dismissed by the primary")
	errNoResponse = errors.New("fedclient: no response")
)

// RefusedError is a refusal from the primary. It unwraps to the matching
// sentinel: jointoken.ErrMalformed, ErrBadSignature, ErrExpired, ErrUsed;
// fedproto.ErrVersionSkew; ErrKicked, ErrNameTaken, ErrNotMember; else
// ErrRefused.
type RefusedError struct {
	Code   fedproto.RefuseCode
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("primary refused (%s): %s", e.Code, e.Reason)
}

func (e *RefusedError) Unwrap() error {
	switch e.Code {
	case fedproto.RefuseTokenMalformed:
		return jointoken.ErrMalformed
	case fedproto.RefuseTokenSignature:
		return jointoken.ErrBadSignature
	case fedproto.RefuseTokenExpired:
		return jointoken.ErrExpired
	case fedproto.RefuseTokenUsed:
		return jointoken.ErrUsed
	case fedproto.RefuseVersion:
		return fedproto.ErrVersionSkew
	case fedproto.RefuseKicked:
		return ErrKicked
	case fedproto.RefuseNameTaken:
		return ErrNameTaken
	case fedproto.RefuseNotMember:
		return ErrNotMember
	}
	return ErrRefused
}

// Identity is what a remote keeps after joining: its name, key,
// certificate, the primary CA and where the primary is. The caller stores
// it (it holds a private key).
type Identity struct {
	Name    string   `json:"name"`
	CertPEM []byte   `json:"certPEM"`
	KeyPEM  []byte   `json:"keyPEM"`
	CAPEM   []byte   `json:"caPEM"`
	Addrs   []string `json:"addrs"`
}

// JoinConfig configures Join.
type JoinConfig struct {
	// Token is the join token's text form.
	Token string
	// Name is this cluster's name in the federation.
	Name string
	// Labels describe this cluster for rule targeting.
	Labels map[string]string
	// Timeout bounds each attempt at one address.
	Timeout time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Join joins the federation named by the token: it pins the primary CA from
// the token, generates a key pair here, sends a JoinRequest and returns the
// identity holding the issued certificate. It tries each primary address in
// turn; a refusal or a CA pin mismatch ends it at once.
func Join(ctx context.Context, cfg JoinConfig) (*Identity, error) {
	tok, err := jointoken.Parse(cfg.Token)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	pubPEM, err := pki.MarshalPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	req := &fedproto.JoinRequest{Token: cfg.Token, Name: cfg.Name, Labels: cfg.Labels, PublicKeyPEM: pubPEM}
	var errs []error
	for _, addr := range tok.Addrs {
		resp, err := joinAt(ctx, addr, tok, req, cfg.Timeout)
		if err != nil {
			var refused *RefusedError
			if errors.As(err, &refused) || errors.Is(err, jointoken.ErrCAPinMismatch) || ctx.Err() != nil {
				return nil, err
			}
			cfg.Logger.Warn("join attempt failed", "addr", addr, "err", err)
			errs = append(errs, err)
			continue
		}
		if err := checkJoinResponse(resp, tok, cfg.Name, key); err != nil {
			return nil, err
		}
		return &Identity{Name: resp.Name, CertPEM: resp.CertPEM, KeyPEM: keyPEM, CAPEM: resp.CAPEM, Addrs: tok.Addrs}, nil
	}
	return nil, fmt.Errorf("join: no primary address answered: %w", errors.Join(errs...))
}

func joinAt(ctx context.Context, addr string, tok jointoken.Token, req *fedproto.JoinRequest, timeout time.Duration) (*fedproto.JoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("open udp socket: %w", err)
	}
	defer udp.Close()
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	var pinErr error
	conn, err := tr.Dial(ctx, raddr, pinnedTLS(tok, &pinErr), &quic.Config{HandshakeIdleTimeout: timeout})
	if pinErr != nil {
		return nil, pinErr
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "join done")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream to %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(dl)
	}
	if err := fedproto.NewEncoder(str).Encode(req); err != nil {
		return nil, err
	}
	m, err := fedproto.NewDecoder(str, 0).ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("read join response from %s: %w", addr, err)
	}
	switch m := m.(type) {
	case *fedproto.JoinResponse:
		return m, nil
	case *fedproto.Refuse:
		return nil, &RefusedError{Code: m.Code, Reason: m.Reason}
	}
	return nil, fmt.Errorf("%w: primary answered join with %s", errNoResponse, m.Type())
}

// checkJoinResponse makes sure the certificate is for our key and name and
// the CA is the pinned one.
func checkJoinResponse(resp *fedproto.JoinResponse, tok jointoken.Token, name string, key crypto.Signer) error {
	ca, err := pki.ParseCert(resp.CAPEM)
	if err != nil {
		return fmt.Errorf("join response ca: %w", err)
	}
	if err := tok.CheckCA(ca); err != nil {
		return err
	}
	cert, err := pki.ParseCert(resp.CertPEM)
	if err != nil {
		return fmt.Errorf("join response certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("join response certificate not signed by the pinned ca: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := cert.PublicKey.(equaler); !ok || !pub.Equal(key.Public()) {
		return errors.New("fedclient: issued certificate is not for this key")
	}
	if resp.Name != name || cert.Subject.CommonName != name {
		return fmt.Errorf("fedclient: certificate issued for %q, asked for %q", cert.Subject.CommonName, name)
	}
	return nil
}

// Leave ends this remote's membership: it tells the primary (trying each
// address in turn), which forgets the member and confirms. The caller then
// stops its Client and discards the identity.
func Leave(ctx context.Context, id *Identity, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tc, err := memberTLS(id)
	if err != nil {
		return err
	}
	var errs []error
	for _, addr := range id.Addrs {
		err := leaveAt(ctx, addr, tc, id.Name, timeout)
		if err == nil {
			return nil
		}
		var refused *RefusedError
		if errors.As(err, &refused) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("leave: no primary address answered: %w", errors.Join(errs...))
}

func leaveAt(ctx context.Context, addr string, tc *tls.Config, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return fmt.Errorf("open udp socket: %w", err)
	}
	defer udp.Close()
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	conn, err := tr.Dial(ctx, raddr, tc, &quic.Config{HandshakeIdleTimeout: timeout})
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.CloseWithError(0, "leave done")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("open stream to %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(dl)
	}
	if err := fedproto.NewEncoder(str).Encode(&fedproto.Leave{Cluster: name}); err != nil {
		return err
	}
	m, err := fedproto.NewDecoder(str, 0).ReadMessage()
	if err != nil {
		return fmt.Errorf("read leave answer from %s: %w", addr, err)
	}
	switch m := m.(type) {
	case *fedproto.Dismiss:
		if m.Reason == fedproto.DismissLeft {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrDismissed, m.Reason)
	case *fedproto.Refuse:
		return &RefusedError{Code: m.Code, Reason: m.Reason}
	}
	return fmt.Errorf("primary answered leave with %s", m.Type())
}
