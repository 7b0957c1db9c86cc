package fedserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/palisade-sec/palisade/shared/fedproto"
)

// ErrNotConnected is returned when a request targets a remote that holds no
// stream to this server.
var ErrNotConnected = errors.New("fedserver: remote not connected to this server")

// maxProxyBody bounds a proxied request body.
const maxProxyBody = 8 << 20

// Do carries an API request to a remote over its federation connection and
// returns the remote's response.
func (s *Server) Do(ctx context.Context, remote string, req *fedproto.Request) (*fedproto.Response, error) {
	s.mu.RLock()
	sess := s.sessions[remote]
	s.mu.RUnlock()
	if sess == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotConnected, remote)
	}
	str, err := sess.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream to %s: %w", remote, err)
	}
	defer str.CancelRead(0)
	if dl, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { str.CancelRead(0); str.CancelWrite(0) })
	defer stop()
	if err := fedproto.NewEncoder(str).Encode(req); err != nil {
		return nil, fmt.Errorf("send request to %s: %w", remote, err)
	}
	_ = str.Close()
	m, err := fedproto.NewDecoder(str, s.cfg.MaxFrame).ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("read response from %s: %w", remote, err)
	}
	switch m := m.(type) {
	case *fedproto.Response:
		return m, nil
	case *fedproto.Refuse:
		return nil, fmt.Errorf("remote %s refused the request: %s", remote, m.Reason)
	default:
		return nil, fmt.Errorf("remote %s answered a request with %s", remote, m.Type())
	}
}

// RoundTripper returns an http.RoundTripper that sends every request to
// remote's API over its federation connection (for httputil.ReverseProxy in
// the console). The request URL's host is ignored.
func (s *Server) RoundTripper(remote string) http.RoundTripper {
	return roundTripper{s: s, remote: remote}
}

type roundTripper struct {
	s      *Server
	remote string
}

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxProxyBody+1))
		_ = r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		if len(b) > maxProxyBody {
			return nil, fmt.Errorf("fedserver: request body over %d bytes", maxProxyBody)
		}
		body = b
	}
	path := r.URL.RequestURI()
	resp, err := rt.s.Do(r.Context(), rt.remote, &fedproto.Request{Method: r.Method, Path: path, Header: r.Header.Clone(), Body: body})
	if err != nil {
		return nil, err
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", resp.Status, http.StatusText(resp.Status)),
		StatusCode:    resp.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header(resp.Header),
		Body:          io.NopCloser(bytes.NewReader(resp.Body)),
		ContentLength: int64(len(resp.Body)),
		Request:       r,
	}, nil
}
