// Package federation is a remote cluster's side of federation inside its
// controllers: joining a primary with a token, leaving, and, on the Raft
// leader, keeping the link to the primary and writing what it streams into
// the cluster's read-only federated keyspace.
//
// Keyspace (in the remote's store):
//
//	fedlink/identity     the remote's federation identity (certificate, key, primary CA and addresses)
//	fedlink/labels       the labels given at join
//	fedlink/applied      the last primary revision applied
//	federated/...        the primary's fed/stream/... objects, read-only here
//	cluster/fed-dismissal  why the primary last dismissed this cluster
package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/remote/fedclient"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// Keys and prefixes.
const (
	KeyIdentity     = "fedlink/identity"
	KeyLabels       = "fedlink/labels"
	KeyApplied      = "fedlink/applied"
	KeyDismissal    = "cluster/fed-dismissal"
	PrefixLink      = "fedlink/"
	PrefixFederated = "federated/"
)

// Config configures the module.
type Config struct {
	// Store is the replica's store.
	Store *store.Store
	// Logger receives the module's logs.
	Logger *slog.Logger
	// API returns the cluster's own REST API handler, which serves the
	// primary's requests carried over the link (console drill-in) as the
	// read-only fedReader role; nil or a nil handler answers 503.
	API func() http.Handler
	// Client tunes the federation client (backoff, timeouts).
	Client fedclient.Config
}

// Module is the remote side of federation of one replica.
type Module struct {
	cfg Config
	st  *store.Store
	log *slog.Logger

	mu     sync.Mutex
	client *fedclient.Client
}

// New builds the module.
func New(cfg Config) (*Module, error) {
	if cfg.Store == nil || cfg.Logger == nil {
		return nil, errors.New("federation: config: store and logger are required")
	}
	if cfg.Client.MaxBackoff == 0 {
		cfg.Client = fedclient.DefaultConfig()
		// Only the primary's leader answers; a replica that does not
		// should cost little before the next address is tried.
		cfg.Client.DialTimeout = 2 * time.Second
		// A primary replica that dies sends no close: notice it within
		// seconds (keep-alives go every IdleTimeout/3).
		cfg.Client.IdleTimeout = 6 * time.Second
	}
	return &Module{cfg: cfg, st: cfg.Store, log: cfg.Logger.With(logfields.Component, "fedlink")}, nil
}

// JoinRequest is the body of POST /v1/fed/join.
type JoinRequest struct {
	Token  string            `json:"token"`
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// LinkStatus is the body of GET /v1/fed/link.
type LinkStatus struct {
	Role      string            `json:"role"`
	Name      string            `json:"name"`
	Primary   string            `json:"primary,omitempty"`
	Addrs     []string          `json:"addrs,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Applied   uint64            `json:"applied"`
	Link      *fedclient.Status `json:"link,omitempty"`
	Dismissal string            `json:"dismissal,omitempty"`
}

// Routes implements httpapi.Module.
func (m *Module) Routes(r httpapi.Routes) {
	r.Handle(http.MethodPost, "/fed/join", httpapi.FedWrite, m.join)
	r.Handle(http.MethodPost, "/fed/leave", httpapi.FedWrite, m.leave)
	r.HandleLeader(http.MethodGet, "/fed/link", httpapi.Read, m.link)
	r.Handle(http.MethodGet, "/fed/objects", httpapi.Read, m.objects)
}

// FederatedObject is one object received from the primary.
type FederatedObject struct {
	// Key is the object's key under federated/ (for example
	// "objects/GroupDefinition/web" or "scan/sha256:...").
	Key    string          `json:"key"`
	Object json.RawMessage `json:"object"`
}

// ObjectList is the body of GET /v1/fed/objects.
type ObjectList struct {
	Items  []FederatedObject `json:"items" openapi:"nonnull"`
	Total  int               `json:"total"`
	Limit  int               `json:"limit"`
	Offset int               `json:"offset"`
	// Revision is this cluster's store revision; Applied the primary's
	// revision this cluster applied last.
	Revision uint64 `json:"revision"`
	Applied  uint64 `json:"applied"`
}

// JoinResponse is the body of POST /v1/fed/join.
type JoinResponse struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	Primary  string   `json:"primary"`
	Addrs    []string `json:"addrs"`
	Revision uint64   `json:"revision"`
}

// LeaveResponse is the body of POST /v1/fed/leave.
type LeaveResponse struct {
	Role     string `json:"role"`
	Revision uint64 `json:"revision"`
	// Warning says the primary was not told, when it could not be.
	Warning string `json:"warning"`
}

func (m *Module) objects(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, httpapi.DefaultLimit, httpapi.MaxLimit)
	if err != nil {
		return nil, err
	}
	prefix, key := c.Query("prefix"), c.Query("key")
	kvs, rev := m.st.List(PrefixFederated + prefix)
	all := []FederatedObject{}
	for _, kv := range kvs {
		k := strings.TrimPrefix(kv.Key, PrefixFederated)
		if httpapi.Contains(k, key) {
			all = append(all, FederatedObject{Key: k, Object: kv.Value})
		}
	}
	l := httpapi.NewList(all, p)
	return ObjectList{Items: l.Items, Total: l.Total, Limit: l.Limit, Offset: l.Offset, Revision: rev, Applied: applier{m.st}.Applied()}, nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

func (m *Module) join(c *gin.Context) (any, error) {
	var req JoinRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	if req.Token == "" {
		return nil, apierr.BadRequest("token", "is required")
	}
	info := clusterinfo.Get(m.st)
	if info.Role != clusterinfo.Standalone {
		return nil, apierr.Conflict("cluster %q is already %s; leave or demote it first", info.Name, info.Role)
	}
	if req.Name == "" {
		req.Name = info.Name
	}
	if !nameRE.MatchString(req.Name) {
		return nil, apierr.BadRequest("name", "%q is not a valid cluster name (lower-case letters, digits, '.', '-')", req.Name)
	}
	for k, v := range req.Labels {
		if k == "" || len(k) > 63 || len(v) > 63 {
			return nil, apierr.BadRequest("labels", "label %q=%q must have a key and both at most 63 characters", k, v)
		}
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 25*time.Second)
	defer cancel()
	id, err := fedclient.Join(ctx, fedclient.JoinConfig{Token: req.Token, Name: req.Name, Labels: req.Labels, Timeout: 2 * time.Second, Logger: m.cfg.Logger})
	if err != nil {
		return nil, joinError(err)
	}
	idb, _ := json.Marshal(id)
	lb, _ := json.Marshal(req.Labels)
	tok, _ := jointoken.Parse(req.Token)
	_, rev, err := clusterinfo.Transition(c.Request.Context(), m.st, []string{clusterinfo.Standalone}, func(i *clusterinfo.Info) {
		i.Role, i.Name, i.Primary = clusterinfo.Remote, req.Name, tok.Primary
	}, store.Op{Type: store.OpDeletePrefix, Key: PrefixFederated},
		store.Op{Type: store.OpPut, Key: KeyIdentity, Value: idb},
		store.Op{Type: store.OpPut, Key: KeyLabels, Value: lb},
		store.Op{Type: store.OpPut, Key: KeyApplied, Value: []byte("0")},
		store.Op{Type: store.OpDelete, Key: KeyDismissal})
	if err != nil {
		return nil, err
	}
	return JoinResponse{Name: req.Name, Role: clusterinfo.Remote, Primary: tok.Primary, Addrs: id.Addrs, Revision: rev}, nil
}

// joinError maps the reasons a join fails to API errors that say which.
func joinError(err error) error {
	switch {
	case errors.Is(err, jointoken.ErrMalformed):
		return apierr.BadRequest("token", "%v", err)
	case errors.Is(err, jointoken.ErrBadSignature), errors.Is(err, jointoken.ErrExpired),
		errors.Is(err, jointoken.ErrUsed), errors.Is(err, jointoken.ErrCAPinMismatch):
		return apierr.Forbidden("%v", err)
	case errors.Is(err, fedclient.ErrNameTaken), errors.Is(err, fedproto.ErrVersionSkew):
		return apierr.Conflict("%v", err)
	case errors.Is(err, fedclient.ErrRefused), errors.Is(err, fedclient.ErrKicked):
		return apierr.Forbidden("%v", err)
	}
	return apierr.Unavailable("join: %v", err)
}

func (m *Module) leave(c *gin.Context) (any, error) {
	if info := clusterinfo.Get(m.st); info.Role != clusterinfo.Remote {
		return nil, apierr.Conflict("cluster %q is %s, not a remote", info.Name, info.Role)
	}
	// Tell the primary first, so it forgets the member; a primary that
	// cannot be reached does not keep the cluster in the federation.
	var warning string
	if id, ok := m.identity(); ok {
		if err := fedclient.Leave(c.Request.Context(), id, 3*time.Second); err != nil {
			warning = fmt.Sprintf("the primary was not told (%v); kick this cluster there to remove it", err)
			m.log.Warn("leave: primary not told", logfields.Error, err)
		}
	}
	_, rev, err := clusterinfo.Transition(c.Request.Context(), m.st, []string{clusterinfo.Remote}, func(i *clusterinfo.Info) {
		i.Role, i.Primary = clusterinfo.Standalone, ""
	}, store.Op{Type: store.OpDeletePrefix, Key: PrefixLink}, store.Op{Type: store.OpDeletePrefix, Key: PrefixFederated})
	if errors.Is(err, clusterinfo.ErrRole) {
		return nil, apierr.Conflict("%v", err)
	}
	if err != nil {
		return nil, err
	}
	return LeaveResponse{Role: clusterinfo.Standalone, Revision: rev, Warning: warning}, nil
}

func (m *Module) link(*gin.Context) (any, error) {
	info := clusterinfo.Get(m.st)
	out := LinkStatus{Role: info.Role, Name: info.Name, Primary: info.Primary, Applied: applier{m.st}.Applied()}
	if kv, ok, _ := m.st.Get(KeyDismissal); ok {
		out.Dismissal = string(kv.Value)
	}
	if id, ok := m.identity(); ok {
		out.Addrs = id.Addrs
	}
	if kv, ok, _ := m.st.Get(KeyLabels); ok {
		json.Unmarshal(kv.Value, &out.Labels)
	}
	m.mu.Lock()
	cl := m.client
	m.mu.Unlock()
	if cl != nil {
		s := cl.Status()
		out.Link = &s
	}
	return out, nil
}

func (m *Module) identity() (*fedclient.Identity, bool) {
	kv, ok, _ := m.st.Get(KeyIdentity)
	if !ok {
		return nil, false
	}
	var id fedclient.Identity
	if json.Unmarshal(kv.Value, &id) != nil {
		return nil, false
	}
	return &id, true
}

// Run keeps the link to the primary while this replica leads a remote
// cluster.
func (m *Module) Run(ctx context.Context) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var (
		cancel func()
		done   chan struct{}
		idRev  uint64
	)
	stop := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	defer stop()
	for {
		kv, hasID, _ := m.st.Get(KeyIdentity)
		want := m.st.IsLeader() && clusterinfo.Get(m.st).Role == clusterinfo.Remote && hasID
		if cancel != nil && done != nil {
			select {
			case <-done:
				cancel = nil // the client ended (dismissed)
			default:
			}
		}
		switch {
		case want && (cancel == nil || kv.ModRevision != idRev):
			stop()
			cl, err := m.newClient()
			if err != nil {
				m.log.Error("start federation link", logfields.Error, err)
				break
			}
			idRev = kv.ModRevision
			cctx, c := context.WithCancel(ctx)
			cancel, done = c, make(chan struct{})
			m.mu.Lock()
			m.client = cl
			m.mu.Unlock()
			go func() {
				defer close(done)
				if err := cl.Run(cctx); err != nil {
					m.log.Warn("federation link ended", logfields.Error, err)
				}
			}()
			m.log.Info("linking to the primary")
		case !want && cancel != nil:
			stop()
			m.mu.Lock()
			m.client = nil
			m.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *Module) newClient() (*fedclient.Client, error) {
	id, ok := m.identity()
	if !ok {
		return nil, errors.New("federation: no identity")
	}
	cfg := m.cfg.Client
	cfg.Identity = id
	if kv, ok, _ := m.st.Get(KeyLabels); ok {
		json.Unmarshal(kv.Value, &cfg.Labels)
	}
	cfg.Applier = applier{m.st}
	cfg.Handler = http.HandlerFunc(m.serveLink)
	cfg.Logger = m.cfg.Logger
	cfg.OnDismiss = func(reason fedproto.DismissReason) {
		m.log.Warn("dismissed by the primary", "reason", reason)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err := clusterinfo.Transition(ctx, m.st, []string{clusterinfo.Remote}, func(i *clusterinfo.Info) {
			i.Role, i.Primary = clusterinfo.Standalone, ""
		}, store.Op{Type: store.OpDeletePrefix, Key: PrefixLink},
			store.Op{Type: store.OpDeletePrefix, Key: PrefixFederated},
			store.Op{Type: store.OpPut, Key: KeyDismissal, Value: []byte(fmt.Sprintf("%s at %s", reason, time.Now().UTC().Format(time.RFC3339)))})
		if err != nil {
			m.log.Error("leave the federation after dismissal", logfields.Error, err)
		}
	}
	return fedclient.New(cfg)
}

// applier writes the primary's stream into the federated keyspace, one
// primary revision per transaction, and remembers the revision with it.
type applier struct{ st *store.Store }

func (a applier) Applied() uint64 {
	kv, ok, _ := a.st.Get(KeyApplied)
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(string(kv.Value), 10, 64)
	return n
}

func (a applier) Apply(ctx context.Context, d fedproto.Delta) error {
	if d.Revision <= a.Applied() {
		return nil
	}
	txn := store.Txn{}
	for _, op := range d.Ops {
		switch op.Kind {
		case fedproto.OpPut:
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: PrefixFederated + op.Key, Value: op.Value})
		case fedproto.OpDelete:
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: PrefixFederated + op.Key})
		default:
			return fmt.Errorf("federation: unknown op %q for %s", op.Kind, op.Key)
		}
	}
	txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: KeyApplied, Value: []byte(strconv.FormatUint(d.Revision, 10))})
	_, err := a.st.Txn(ctx, txn)
	return err
}

func (a applier) ApplySnapshot(ctx context.Context, snap fedproto.Snapshot) error {
	txn := store.Txn{Ops: []store.Op{{Type: store.OpDeletePrefix, Key: PrefixFederated}}}
	for _, o := range snap.Objects {
		txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: PrefixFederated + o.Key, Value: o.Value})
	}
	txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: KeyApplied, Value: []byte(strconv.FormatUint(snap.Revision, 10))})
	_, err := a.st.Txn(ctx, txn)
	return err
}

// serveLink serves an API request the primary carried over the link.
func (m *Module) serveLink(w http.ResponseWriter, r *http.Request) {
	var h http.Handler
	if m.cfg.API != nil {
		h = m.cfg.API()
	}
	if h == nil {
		http.Error(w, `{"code":"unavailable","message":"API not ready"}`, http.StatusServiceUnavailable)
		return
	}
	user := r.Header.Get(httpapi.LinkUserHeader)
	if user == "" {
		user = "unknown"
	}
	r.Header.Del("Authorization")
	r.Header.Del("Cookie")
	ctx := httpapi.WithLinkSession(r.Context(), httpapi.Session{User: "primary:" + user, Role: string(auth.RoleFedReader)})
	h.ServeHTTP(w, r.WithContext(ctx))
}
