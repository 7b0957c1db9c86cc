// Package api is a controller's REST API under /v1, served with gin: login
// and sessions, cluster status, users, health and Prometheus metrics. Other
// parts of the controller (federation, policy, agents, scanning) add their
// routes as Modules through the same Router, which applies authentication,
// role checks and the one mapping from errors to HTTP responses.
//
// GET /v1/openapi.json serves the API's OpenAPI 3.1 document, without a
// session (it describes routes and holds no data). It is built when the
// API is: from the routes the router and every module registered (their
// access levels become the document's security) and the httpapi.Op each
// module describes them with in OpenAPI(), with schemas derived from the
// handlers' Go types (shared/apidoc).
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/apidoc"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/httpapi"
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

// Config configures the API.
type Config struct {
	// Store is the replica's store.
	Store Store
	// Auth checks credentials and sessions.
	Auth *auth.Authenticator
	// Cluster returns the cluster's identity (from the replicated store).
	Cluster func() clusterinfo.Info
	// Logger receives request logs.
	Logger *slog.Logger
	// Registry receives the API's metrics and is served at /metrics.
	Registry *prometheus.Registry
	// Modules add routes.
	Modules []httpapi.Module
	// LeaderURL returns the leader's API base URL ("" when unknown), for
	// proxying leader-only routes from followers.
	LeaderURL func() string
	// LeaderTransport carries proxied requests (it trusts the cluster CA).
	LeaderTransport http.RoundTripper
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	// UI serves GET and HEAD requests for paths outside /v1 and /metrics
	// (the web console); nil answers them 404.
	UI http.Handler
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

// Router registers routes with an access level; it implements
// httpapi.Routes.
type Router struct {
	s *Server
	g *gin.RouterGroup
}

// Handle adds a route under /v1.
func (r *Router) Handle(method, path string, access httpapi.Access, h httpapi.Handler) {
	r.s.record(method, path, access, false)
	r.g.Handle(method, path, r.s.wrap(access, h))
}

// HandleLeader adds a route only the leader serves; a follower proxies the
// request, with the caller's credentials, to the leader's API.
func (r *Router) HandleLeader(method, path string, access httpapi.Access, h httpapi.Handler) {
	r.s.record(method, path, access, true)
	direct := r.s.wrap(access, h)
	r.g.Handle(method, path, func(c *gin.Context) {
		if r.s.leader() {
			direct(c)
			return
		}
		r.s.proxyToLeader(c)
	})
}

// RawLeader adds a Raw route only the leader serves; followers proxy it.
func (r *Router) RawLeader(method, path string, access httpapi.Access, h gin.HandlerFunc) {
	r.s.record(method, path, access, true)
	authz := r.s.authorize(access)
	r.g.Handle(method, path, func(c *gin.Context) {
		if !r.s.leader() {
			r.s.proxyToLeader(c)
			return
		}
		authz(c)
		if !c.IsAborted() {
			h(c)
		}
	})
}

// Raw adds a route under /v1 whose handler writes its own response (for
// streams and proxied requests), after the access check.
func (r *Router) Raw(method, path string, access httpapi.Access, h gin.HandlerFunc) {
	r.s.record(method, path, access, false)
	r.g.Handle(method, path, r.s.authorize(access), h)
}

// Server is the API's HTTP handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	engine  *gin.Engine
	reqs    *prometheus.CounterVec
	latency *prometheus.HistogramVec

	// Filled while New registers routes, read-only afterwards.
	registered []apidoc.Route
	docJSON    []byte
}

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
		if s.cfg.UI != nil && isUIRequest(c.Request) {
			// gin presets 404 for unmatched routes; the UI decides.
			c.Status(http.StatusOK)
			s.cfg.UI.ServeHTTP(c.Writer, c.Request)
			return
		}
		s.writeError(c, apierr.NotFound("no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})))
	r := &Router{s: s, g: e.Group("/v1")}
	s.routes(r)
	ops := coreOps()
	for _, m := range cfg.Modules {
		m.Routes(r)
		if d, ok := m.(httpapi.Documented); ok {
			ops = append(ops, d.OpenAPI()...)
		}
	}
	doc, err := apidoc.Build(apidoc.Config{Title: "Palisade controller API", Version: APIVersion, Prefix: "/v1",
		SessionCookie: SessionCookie, CSRFHeader: CSRFHeader}, s.registered, ops)
	if err != nil {
		return nil, fmt.Errorf("api: OpenAPI document: %w", err)
	}
	if s.docJSON, err = json.MarshalIndent(doc, "", " "); err != nil {
		return nil, fmt.Errorf("api: encode OpenAPI document: %w", err)
	}
	s.engine = e
	return s, nil
}

// APIVersion is the version of the REST API in its OpenAPI document.
const APIVersion = "1.0.0"

func (s *Server) record(method, path string, access httpapi.Access, leader bool) {
	s.registered = append(s.registered, apidoc.Route{Method: method, Path: "/v1" + path, Access: access, Leader: leader})
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

func (s *Server) wrap(access httpapi.Access, h httpapi.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.check(c, access) {
			return
		}
		body, err := h(c)
		if err != nil {
			s.writeError(c, err)
			return
		}
		if st, ok := body.(httpapi.Status); ok {
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

func (s *Server) authorize(access httpapi.Access) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !s.check(c, access) {
			c.Abort()
		}
	}
}

// check authenticates the caller and enforces access; on failure it writes
// the error response and returns false.
func (s *Server) check(c *gin.Context, access httpapi.Access) bool {
	if access == httpapi.Public {
		return true
	}
	var sess auth.Session
	if ls, ok := httpapi.LinkSession(c.Request.Context()); ok {
		// Carried over the federation link from the primary (mutual TLS),
		// acting for one of its users with the role the link grants.
		sess = auth.Session{User: ls.User, Role: auth.Role(ls.Role)}
	} else {
		token := requestToken(c)
		var err error
		if sess, err = s.cfg.Auth.Authenticate(c.Request.Context(), token); err != nil {
			s.writeError(c, err)
			return false
		}
		if err := checkCSRF(c, token); err != nil {
			s.writeError(c, err)
			return false
		}
	}
	httpapi.SetSession(c, httpapi.Session{User: sess.User, Role: string(sess.Role)})
	var ok bool
	switch access {
	case httpapi.Read:
		ok = true
	case httpapi.Write:
		ok = sess.Role.CanWrite()
	case httpapi.FedRead:
		ok = sess.Role.CanReadFederated()
	case httpapi.FedWrite:
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

// CSRFCookie is the browser's anti-forgery cookie; unlike the session
// cookie, scripts of the console may read it.
const CSRFCookie = "palisade_csrf"

// CSRFHeader carries the anti-forgery token on a browser's state-changing
// requests.
const CSRFHeader = "X-Palisade-CSRF"

// CSRFToken is the anti-forgery token bound to a session token: only a
// page that can read the CSRF cookie (the console's own origin) can send
// it back, and it is worthless with another session.
func CSRFToken(session string) string {
	h := sha256.Sum256([]byte("palisade-csrf\x00" + session))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// checkCSRF refuses a state-changing request authenticated by the session
// cookie unless it carries the session's CSRF token in CSRFHeader.
// Requests with an Authorization header cannot be forged by another site
// and are not checked.
func checkCSRF(c *gin.Context, token string) error {
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if c.GetHeader("Authorization") != "" {
		return nil
	}
	got := c.GetHeader(CSRFHeader)
	if got == "" {
		return apierr.Forbidden("a browser request that changes state needs the %s header", CSRFHeader)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(CSRFToken(token))) != 1 {
		return apierr.Forbidden("the %s header does not match this session", CSRFHeader)
	}
	return nil
}

// isUIRequest reports whether the web console serves r: a read of a path
// outside the API.
func isUIRequest(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	return p != "/v1" && !strings.HasPrefix(p, "/v1/") && p != "/metrics"
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

// ClientAddr is the caller's IP, used for login rate limits.
func ClientAddr(c *gin.Context) string {
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		return c.Request.RemoteAddr
	}
	return host
}

func (s *Server) leader() bool {
	name, _ := s.cfg.Store.Leader()
	return name == s.cfg.Store.Name()
}

// proxyToLeader forwards a request for a leader-only route to the leader's
// API, which authenticates it again.
func (s *Server) proxyToLeader(c *gin.Context) {
	target := ""
	if s.cfg.LeaderURL != nil {
		target = s.cfg.LeaderURL()
	}
	u, err := url.Parse(target)
	if target == "" || err != nil || s.cfg.LeaderTransport == nil {
		s.writeError(c, apierr.Unavailable("this replica does not lead and the leader's API is unknown; retry"))
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
			pr.Out.Header.Set("X-Palisade-Proxied-By", s.cfg.Store.Name())
		},
		Transport: s.cfg.LeaderTransport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.writeError(c, apierr.Unavailable("proxy to leader: %v", err))
		},
	}
	if c.GetHeader("X-Palisade-Proxied-By") != "" {
		// Leadership moved while the request was in flight.
		s.writeError(c, apierr.Unavailable("leadership is changing; retry"))
		return
	}
	rp.ServeHTTP(c.Writer, c.Request)
}
