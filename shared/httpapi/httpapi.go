// Package httpapi is the contract between a controller's REST router and
// the parts that add routes to it (federation, policy, agents, scanning):
// access levels, the handler shape, strict JSON decoding, and the session
// a handler runs under. The router itself lives with the controller.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/apierr"
)

// Access is who may call a route.
type Access int

// Access levels.
const (
	// Public routes need no session.
	Public Access = iota
	// Read routes need any session.
	Read
	// Write routes need a role that may change local objects.
	Write
	// FedRead routes need a federation role.
	FedRead
	// FedWrite routes need fedAdmin.
	FedWrite
)

// Handler serves one route: it returns the response body (JSON with 200,
// or with the code of a Status) or an error, which the router maps to a
// response in one place.
type Handler func(c *gin.Context) (any, error)

// Status wraps a response body with a status other than 200.
type Status struct {
	Code int
	Body any
}

// Routes registers routes under /v1.
type Routes interface {
	// Handle adds a route.
	Handle(method, path string, access Access, h Handler)
	// HandleLeader adds a route that only the Raft leader serves; other
	// replicas proxy the request to the leader's API.
	HandleLeader(method, path string, access Access, h Handler)
	// Raw adds a route whose handler writes its own response.
	Raw(method, path string, access Access, h gin.HandlerFunc)
	// RawLeader adds a Raw route only the Raft leader serves; other
	// replicas proxy the request to the leader's API.
	RawLeader(method, path string, access Access, h gin.HandlerFunc)
}

// Module adds routes to a controller's API.
type Module interface {
	Routes(r Routes)
}

// Runner is a Module with background work: the controller runs it for
// its whole life and waits for it on shutdown.
type Runner interface {
	Run(ctx context.Context) error
}

// Session is who is calling, as the router authenticated it.
type Session struct {
	User string
	Role string
}

const sessionKey = "palisade.session"

// SetSession records the caller's session in the request context.
func SetSession(c *gin.Context, s Session) { c.Set(sessionKey, s) }

// SessionOf returns the caller's session in an authenticated handler.
func SessionOf(c *gin.Context) Session {
	v, _ := c.Get(sessionKey)
	s, _ := v.(Session)
	return s
}

// LinkUserHeader names the primary's user on an API request the primary
// carries to a remote over the federation link.
const LinkUserHeader = "X-Palisade-Link-User"

type linkSessionKey struct{}

// WithLinkSession marks a request as carried over the federation link from
// the primary, acting for s. Only the remote's link handler sets it; the
// router then authorizes the request as s without a local session.
func WithLinkSession(ctx context.Context, s Session) context.Context {
	return context.WithValue(ctx, linkSessionKey{}, s)
}

// LinkSession returns the session of a request carried over the
// federation link, if it is one.
func LinkSession(ctx context.Context) (Session, bool) {
	s, ok := ctx.Value(linkSessionKey{}).(Session)
	return s, ok
}

// DecodeJSON reads a JSON request body into v strictly: unknown fields and
// trailing data are errors, and type errors name the field.
func DecodeJSON(c *gin.Context, v any) error {
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.Is(err, io.EOF):
			return apierr.BadRequest("body", "request body is empty, want a JSON object")
		case errors.As(err, &se):
			return apierr.BadRequest("body", "invalid JSON at offset %d: %v", se.Offset, se)
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "body"
			}
			return apierr.BadRequest(field, "want %s, got JSON %s", te.Type, te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return apierr.BadRequest(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
		}
		return apierr.BadRequest("body", "%v", err)
	}
	if dec.More() {
		return apierr.BadRequest("body", "unexpected data after the JSON object")
	}
	return nil
}
