// Package api is a controller's REST API under /v1, served with gin: login
// and sessions, cluster status, users, health and Prometheus metrics. Other
// parts of the controller (federation, policy, agents, scanning) add their
// routes as Modules through the same Router, which applies authentication,
// role checks and the one mapping from errors to HTTP responses.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// Store is the part of the replicated store the API reads directly.
type Store interface {
	Name() string
	Leader() (name, raftAddr string)
	Replicas() []store.Replica
	Revision() uint64
	Get(key string) (store.KV, bool, uint64)
}

// ClusterInfo is the identity of the controller cluster.
type ClusterInfo struct {
	Name string `json:"name"`
	// Role is standalone, primary or remote.
	Role string `json:"role"`
}

// Config configures the API.
type Config struct {
	// Store is the replica's store.
	Store Store
	// Auth checks credentials and sessions.
	Auth *auth.Authenticator
	// Cluster returns the cluster's identity (from the replicated store).
	Cluster func() ClusterInfo
	// Logger receives request logs.
	Logger *slog.Logger
	// Registry receives the API's metrics and is served at /metrics.
	Registry *prometheus.Registry
	// Modules add routes.
	Modules []Module
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
}

// DefaultConfig returns the defaults; Store, Auth, Cluster and Registry
// must be set.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 4 << 20}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("api: config: store is nil")
	case c.Auth == nil:
		return errors.New("api: config: auth is nil")
	case c.Cluster == nil:
		return errors.New("api: config: cluster is nil")
	case c.Registry == nil:
		return errors.New("api: config: registry is nil")
	case c.MaxBodyBytes <= 0:
		return errors.New("api: config: max body bytes must be positive")
	}
	return nil
}

// Module adds routes to the API.
type Module interface {
	Routes(r *Router)
}

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

// Handler serves one route: it returns the response body (encoded as JSON
// with 200, or with the status of a *Status) or an error.
type Handler func(c *gin.Context) (any, error)

// Status wraps a response body with a status other than 200.
type Status struct {
	Code int
	Body any
}

// Router registers routes with an access level.
type Router struct {
	s *Server
	g *gin.RouterGroup
}

// Handle adds a route under /v1.
func (r *Router) Handle(method, path string, access Access, h Handler) {
	r.g.Handle(method, path, r.s.wrap(access, h))
}

// Raw adds a route under /v1 whose handler writes its own response (for
// streams and proxied requests), after the access check.
func (r *Router) Raw(method, path string, access Access, h gin.HandlerFunc) {
	r.g.Handle(method, path, r.s.authorize(access), h)
}

// Server is the API's HTTP handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	engine  *gin.Engine
	reqs    *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// sessionKey is where the authenticated session is kept in a gin context.
const sessionKey = "palisade.session"

// SessionCookie is the browser session cookie's name.
const SessionCookie = "palisade_session"

// New builds the API.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	gin.SetMode(gin.ReleaseMode)
	s := &Server{
		cfg: cfg,
		log: cfg.Logger.With(logfields.Component, "api"),
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_api_requests_total", Help: "API requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "palisade_api_request_seconds", Help: "API request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{s.reqs, s.latency} {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("api: register metrics: %w", err)
		}
	}
	e := gin.New()
	e.Use(s.observe, gin.CustomRecovery(func(c *gin.Context, rec any) {
		s.log.Error("handler panic", "panic", rec, logfields.Path, c.Request.URL.Path)
		s.writeError(c, apierr.Internal("internal error"))
	}))
	e.NoRoute(func(c *gin.Context) {
		s.writeError(c, apierr.NotFound("no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})))
	r := &Router{s: s, g: e.Group("/v1")}
	s.routes(r)
	for _, m := range cfg.Modules {
		m.Routes(r)
	}
	s.engine = e
	return s, nil
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	}
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	d := time.Since(start)
	s.reqs.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
	s.latency.WithLabelValues(route).Observe(d.Seconds())
	s.log.Debug("request", logfields.Method, c.Request.Method, logfields.Path, c.Request.URL.Path,
		logfields.Status, c.Writer.Status(), logfields.Duration, d)
}

func (s *Server) wrap(access Access, h Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.check(c, access) {
			return
		}
		body, err := h(c)
		if err != nil {
			s.writeError(c, err)
			return
		}
		if st, ok := body.(Status); ok {
			if st.Body == nil {
				c.Status(st.Code)
				return
			}
			c.JSON(st.Code, st.Body)
			return
		}
		c.JSON(http.StatusOK, body)
	}
}

func (s *Server) authorize(access Access) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.check(c, access) {
			c.Abort()
		}
	}
}

// check authenticates the caller and enforces access; on failure it writes
// the error response and returns false.
func (s *Server) check(c *gin.Context, access Access) bool {
	if access == Public {
		return true
	}
	sess, err := s.cfg.Auth.Authenticate(c.Request.Context(), requestToken(c))
	if err != nil {
		s.writeError(c, err)
		return false
	}
	c.Set(sessionKey, sess)
	var ok bool
	switch access {
	case Read:
		ok = true
	case Write:
		ok = sess.Role.CanWrite()
	case FedRead:
		ok = sess.Role.CanReadFederated()
	case FedWrite:
		ok = sess.Role.CanWriteFederated()
	}
	if !ok {
		s.writeError(c, apierr.Forbidden("role %s may not %s %s", sess.Role, c.Request.Method, c.FullPath()))
		return false
	}
	return true
}

// requestToken reads the session token from the Authorization header (CLI)
// or the session cookie (browser).
func requestToken(c *gin.Context) string {
	if h := c.GetHeader("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	if ck, err := c.Cookie(SessionCookie); err == nil {
		return ck
	}
	return ""
}

// SessionOf returns the caller's session in an authenticated handler.
func SessionOf(c *gin.Context) auth.Session {
	v, _ := c.Get(sessionKey)
	s, _ := v.(auth.Session)
	return s
}

// writeError is the one place errors become HTTP responses.
func (s *Server) writeError(c *gin.Context, err error) {
	e := ToAPIError(err)
	if e.Code == apierr.CodeInternal {
		s.log.Error("request failed", logfields.Method, c.Request.Method, logfields.Path, c.Request.URL.Path, logfields.Error, err)
	}
	if e.RetryAfterSeconds > 0 {
		c.Header("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	c.AbortWithStatusJSON(e.Status(), e)
}

// ToAPIError maps any error to the API error it is reported as.
func ToAPIError(err error) *apierr.Error {
	var ae *apierr.Error
	var rl *auth.RateLimitedError
	var inv *auth.InvalidError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &rl):
		return apierr.TooMany(rl.RetryAfter, "%s", rl.Error())
	case errors.As(err, &inv):
		return apierr.BadRequest(inv.Field, "%s", inv.Problem)
	case errors.As(err, &mbe):
		return apierr.BadRequest("body", "request body exceeds %d bytes", mbe.Limit)
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrNoSession), errors.Is(err, auth.ErrSessionExpired):
		return apierr.Unauthorized("%s", strings.TrimPrefix(err.Error(), "auth: "))
	case errors.Is(err, auth.ErrUserNotFound):
		return apierr.NotFound("%s", strings.TrimPrefix(err.Error(), "auth: "))
	case errors.Is(err, auth.ErrUserExists), errors.Is(err, auth.ErrLastAdmin), errors.Is(err, store.ErrConflict):
		return apierr.Conflict("%s", strings.TrimPrefix(strings.TrimPrefix(err.Error(), "auth: "), "store: "))
	case errors.Is(err, store.ErrNoLeader), errors.Is(err, store.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return apierr.Unavailable("%s", err.Error())
	}
	return apierr.Internal("%s", err.Error())
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

// ClientAddr is the caller's IP, used for login rate limits.
func ClientAddr(c *gin.Context) string {
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		return c.Request.RemoteAddr
	}
	return host
}
