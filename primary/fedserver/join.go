package fedserver

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

// validName is a cluster name: a DNS-label-like word.
var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// serveJoinConn handles a connection without a client certificate: one
// stream carrying one JoinRequest, nothing else.
func (s *Server) serveJoinConn(ctx context.Context, conn *quic.Conn) {
	defer conn.CloseWithError(codeOK, "join finished")
	actx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	str, err := conn.AcceptStream(actx)
	cancel()
	if err != nil {
		return
	}
	s.answerJoin(ctx, conn, str)
	// Let the remote read the answer and close first: closing the
	// connection now could discard the answer in flight.
	wctx, cancel := context.WithTimeout(ctx, s.cfg.HandshakeTimeout)
	defer cancel()
	select {
	case <-conn.Context().Done():
	case <-wctx.Done():
	}
}

func (s *Server) answerJoin(ctx context.Context, conn *quic.Conn, str *quic.Stream) {
	dec := fedproto.NewDecoder(str, s.cfg.MaxFrame)
	enc := fedproto.NewEncoder(str)
	_ = str.SetDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	m, err := dec.ReadMessage()
	if err != nil {
		s.refuseStream(str, enc, fedproto.RefuseBadRequest, fmt.Sprintf("read join request: %v", err))
		return
	}
	req, ok := m.(*fedproto.JoinRequest)
	if !ok {
		s.refuseStream(str, enc, fedproto.RefuseUnauthorized,
			fmt.Sprintf("a peer without a client certificate may only send a join request, got %s", m.Type()))
		return
	}
	resp, code, err := s.join(ctx, req)
	if err != nil {
		s.log.Warn("join refused", logRemote, req.Name, logAddr, conn.RemoteAddr().String(), logErr, err)
		s.refuseStream(str, enc, code, err.Error())
		return
	}
	if err := enc.Encode(resp); err != nil {
		s.log.Warn("send join response", logRemote, req.Name, logErr, err)
		return
	}
	_ = str.Close()
	s.log.Info("remote joined", logRemote, resp.Name, logAddr, conn.RemoteAddr().String())
}

// join validates a join request and records the member. The token is
// checked first (form, signature, expiry), the name and key next, and only
// then is a single-use token consumed, so a refused request consumes
// nothing.
func (s *Server) join(ctx context.Context, req *fedproto.JoinRequest) (*fedproto.JoinResponse, fedproto.RefuseCode, error) {
	now := s.cfg.Now()
	if _, err := jointoken.Verify(req.Token, s.cfg.TokenKey, now); err != nil {
		return nil, tokenRefuseCode(err), err
	}
	if !validName.MatchString(req.Name) {
		return nil, fedproto.RefuseBadRequest, fmt.Errorf("fedserver: cluster name %q must be a lower-case DNS label", req.Name)
	}
	pub, err := pki.ParsePublicKey(req.PublicKeyPEM)
	if err != nil {
		return nil, fedproto.RefuseBadRequest, fmt.Errorf("public key of %s: %w", req.Name, err)
	}
	if m, ok := s.cfg.Members.Get(req.Name); ok {
		if m.Kicked {
			return nil, fedproto.RefuseKicked, fmt.Errorf("fedserver: cluster %s was kicked from the federation", req.Name)
		}
		return nil, fedproto.RefuseNameTaken, fmt.Errorf("fedserver: cluster name %s is already a member", req.Name)
	}
	tok, err := jointoken.Redeem(ctx, req.Token, s.cfg.TokenKey, now, s.cfg.Tokens)
	if err != nil {
		return nil, tokenRefuseCode(err), err
	}
	leaf, err := s.cfg.CA.Issue(pki.LeafRequest{
		CommonName:   req.Name,
		Organization: "remote",
		Client:       true,
		Validity:     s.cfg.ClientCertValidity,
		PublicKey:    pub,
	})
	if err != nil {
		return nil, fedproto.RefuseInternal, fmt.Errorf("issue certificate for %s: %w", req.Name, err)
	}
	m := Member{
		Name:            req.Name,
		Labels:          req.Labels,
		CertFingerprint: pki.Fingerprint(leaf.Cert),
		TokenID:         tok.ID,
		JoinedAt:        now.UTC().Truncate(time.Second),
	}
	if err := s.cfg.Members.Add(ctx, m); err != nil {
		return nil, fedproto.RefuseInternal, fmt.Errorf("record member %s: %w", req.Name, err)
	}
	return &fedproto.JoinResponse{CertPEM: leaf.CertPEM, CAPEM: s.cfg.CA.CertPEM, Name: req.Name}, "", nil
}

func tokenRefuseCode(err error) fedproto.RefuseCode {
	switch {
	case errors.Is(err, jointoken.ErrMalformed):
		return fedproto.RefuseTokenMalformed
	case errors.Is(err, jointoken.ErrBadSignature):
		return fedproto.RefuseTokenSignature
	case errors.Is(err, jointoken.ErrExpired):
		return fedproto.RefuseTokenExpired
	case errors.Is(err, jointoken.ErrUsed):
		return fedproto.RefuseTokenUsed
	}
	return fedproto.RefuseInternal
}

// serveLeave ends a member's membership at its own request.
func (s *Server) serveLeave(ctx context.Context, str *quic.Stream, enc *fedproto.Encoder, id peer, m *fedproto.Leave) {
	member, ok := s.cfg.Members.Get(id.name)
	switch {
	case !ok:
		s.refuseStream(str, enc, fedproto.RefuseNotMember, fmt.Sprintf("cluster %s is not a member of this federation", id.name))
		return
	case member.Kicked:
		s.refuseStream(str, enc, fedproto.RefuseKicked, fmt.Sprintf("cluster %s was kicked from the federation", id.name))
		return
	case member.CertFingerprint != id.fingerprint:
		s.refuseStream(str, enc, fedproto.RefuseUnauthorized, fmt.Sprintf("certificate of %s is not the one issued at its join", id.name))
		return
	case m.Cluster != id.name:
		s.refuseStream(str, enc, fedproto.RefuseBadRequest, fmt.Sprintf("leave names cluster %q, certificate names %q", m.Cluster, id.name))
		return
	}
	if err := s.cfg.Members.Remove(ctx, id.name); err != nil {
		s.refuseStream(str, enc, fedproto.RefuseInternal, fmt.Sprintf("remove member %s: %v", id.name, err))
		return
	}
	s.Dismiss(id.name, fedproto.DismissLeft)
	_ = str.SetWriteDeadline(s.cfg.Now().Add(s.cfg.HandshakeTimeout))
	_ = enc.Encode(&fedproto.Dismiss{Reason: fedproto.DismissLeft})
	_ = str.Close()
	s.log.Info("remote left", logRemote, id.name)
}
