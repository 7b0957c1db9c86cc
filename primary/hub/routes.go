package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// PromoteRequest is the body of POST /v1/fed/promote.
type PromoteRequest struct {
	// Name renames the cluster in the federation (optional).
	Name string `json:"name,omitempty"`
	// FedAddrs override the addresses put in join tokens (for example a
	// load balancer); default: every replica's own federation address.
	FedAddrs []string `json:"fedAddrs,omitempty"`
}

type primaryConfig struct {
	FedAddrs   []string  `json:"fedAddrs,omitempty"`
	PromotedAt time.Time `json:"promotedAt"`
}

// TokenRequest is the body of POST /v1/fed/tokens.
type TokenRequest struct {
	// TTL is a Go duration ("1h"); default 1h, at most 30 days.
	TTL       string `json:"ttl,omitempty"`
	SingleUse bool   `json:"singleUse,omitempty"`
}

// TokenResponse carries a new join token.
type TokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Expires   time.Time `json:"expires"`
	Addrs     []string  `json:"addrs"`
	SingleUse bool      `json:"singleUse"`
}

// RemoteInfo is one remote in the primary's status.
type RemoteInfo struct {
	fedserver.RemoteStatus
	Kicked   bool      `json:"kicked,omitempty"`
	JoinedAt time.Time `json:"joinedAt"`
	// Lag is how many revisions of the federation keyspace the remote has
	// not acknowledged.
	Lag uint64 `json:"lag"`
}

// Status is the body of GET /v1/fed/status on a primary.
type Status struct {
	Role     string         `json:"role"`
	Name     string         `json:"name"`
	Revision uint64         `json:"revision"`
	Addrs    []string       `json:"addrs"`
	Remotes  []RemoteInfo   `json:"remotes"`
	Rollout  *rollout.State `json:"rollout,omitempty"`
}

// ApplyResponse is the answer to a federated policy apply or rollback.
type ApplyResponse struct {
	DryRun   bool          `json:"dryRun"`
	Changes  []code.Change `json:"changes"`
	Revision uint64        `json:"revision,omitempty"`
	Rollout  string        `json:"rollout,omitempty"`
}

// RollbackRequest is the body of POST /v1/fed/rollback.
type RollbackRequest struct {
	To uint64 `json:"to"`
}

// PromoteResponse is the body of POST /v1/fed/promote.
type PromoteResponse struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	Revision uint64   `json:"revision"`
	FedAddrs []string `json:"fedAddrs"`
}

// DemoteResponse is the body of POST /v1/fed/demote.
type DemoteResponse struct {
	Role     string `json:"role"`
	Revision uint64 `json:"revision"`
}

// KickResponse is the body of POST /v1/fed/members/:name/kick.
type KickResponse struct {
	Kicked string `json:"kicked"`
}

// ClusterList is the body of GET /v1/fed/clusters: the remotes, by name.
type ClusterList = httpapi.List[RemoteInfo]

// HistoryList is the body of GET /v1/fed/history, newest first.
type HistoryList = httpapi.List[HistoryEntry]

// PolicyObject is one federated object in GET /v1/fed/policy.
type PolicyObject struct {
	Key      string          `json:"key"`
	Revision uint64          `json:"revision"`
	Object   json.RawMessage `json:"object"`
}

// PolicyList is the body of GET /v1/fed/policy.
type PolicyList struct {
	Items  []PolicyObject `json:"items" openapi:"nonnull"`
	Total  int            `json:"total"`
	Limit  int            `json:"limit"`
	Offset int            `json:"offset"`
	// Revision is the primary's store revision.
	Revision uint64 `json:"revision"`
}

// HistoryEntry is one recorded state of the federated objects.
type HistoryEntry struct {
	Revision uint64    `json:"revision"`
	At       time.Time `json:"at"`
	User     string    `json:"user,omitempty"`
	Objects  int       `json:"objects"`
}

type historyRecord struct {
	At      time.Time         `json:"at"`
	User    string            `json:"user,omitempty"`
	Objects []fedproto.Object `json:"objects"`
}

// Routes implements httpapi.Module.
func (h *Hub) Routes(r httpapi.Routes) {
	r.Handle(http.MethodPost, "/fed/promote", httpapi.FedWrite, h.promote)
	r.HandleLeader(http.MethodPost, "/fed/demote", httpapi.FedWrite, h.demote)
	r.Handle(http.MethodPost, "/fed/tokens", httpapi.FedWrite, h.createToken)
	r.HandleLeader(http.MethodGet, "/fed/status", httpapi.FedRead, h.status)
	r.HandleLeader(http.MethodGet, "/fed/clusters", httpapi.FedRead, h.listClusters)
	r.HandleLeader(http.MethodPost, "/fed/members/:name/kick", httpapi.FedWrite, h.kick)
	r.HandleLeader(http.MethodPost, "/fed/policy/apply", httpapi.FedWrite, h.applyPolicy)
	r.Handle(http.MethodGet, "/fed/policy", httpapi.FedRead, h.listPolicy)
	r.Handle(http.MethodGet, "/fed/history", httpapi.FedRead, h.history)
	r.HandleLeader(http.MethodPost, "/fed/rollback", httpapi.FedWrite, h.rollback)
	r.HandleLeader(http.MethodGet, "/fed/rollout", httpapi.FedRead, h.getRollout)
	r.HandleLeader(http.MethodPost, "/fed/rollout/pause", httpapi.FedWrite, h.pauseRollout)
	r.HandleLeader(http.MethodPost, "/fed/rollout/resume", httpapi.FedWrite, h.resumeRollout)
	r.RawLeader(http.MethodGet, "/fed/clusters/:name/api/*path", httpapi.FedRead, h.drillIn)
}

// drillIn carries a read-only API request to a remote over its federation
// link: GET /v1/fed/clusters/NAME/api/v1/... answers what the remote's own
// GET /v1/... answers. The remote serves it as role fedReader, acting for
// the primary's user, so nothing can be changed this way.
func (h *Hub) drillIn(c *gin.Context) {
	srv := h.Server()
	if srv == nil {
		c.AbortWithStatusJSON(http.StatusServiceUnavailable, apierr.Unavailable("this cluster serves no federation now"))
		return
	}
	name := c.Param("name")
	if _, ok := (members{h.st}).Get(name); !ok {
		c.AbortWithStatusJSON(http.StatusNotFound, apierr.NotFound("no remote named %q", name))
		return
	}
	user := httpapi.SessionOf(c).User
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", name
			pr.Out.URL.Path = c.Param("path")
			pr.Out.URL.RawPath = ""
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Set(httpapi.LinkUserHeader, user)
		},
		Transport: srv.RoundTripper(name),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			status, e := http.StatusBadGateway, apierr.Unavailable("remote %s: %v", name, err)
			if errors.Is(err, fedserver.ErrNotConnected) {
				e = apierr.Unavailable("remote %s is not connected", name)
				status = http.StatusServiceUnavailable
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(e)
		},
	}
	rp.ServeHTTP(c.Writer, c.Request)
}

func (h *Hub) requirePrimary() (clusterinfo.Info, error) {
	info := clusterinfo.Get(h.st)
	if info.Role != clusterinfo.Primary {
		return info, apierr.Conflict("cluster %q is %s, not a primary (run palisade fed promote first)", info.Name, info.Role)
	}
	return info, nil
}

func (h *Hub) promote(c *gin.Context) (any, error) {
	var req PromoteRequest
	if c.Request.ContentLength != 0 {
		if err := httpapi.DecodeJSON(c, &req); err != nil {
			return nil, err
		}
	}
	for i, a := range req.FedAddrs {
		if _, _, err := netSplit(a); err != nil {
			return nil, apierr.BadRequest(fmt.Sprintf("fedAddrs[%d]", i), "%q is not HOST:PORT", a)
		}
	}
	key, err := jointoken.NewKey()
	if err != nil {
		return nil, err
	}
	cfg, _ := json.Marshal(primaryConfig{FedAddrs: req.FedAddrs, PromotedAt: time.Now().UTC()})
	info, rev, err := clusterinfo.Transition(c.Request.Context(), h.st, []string{clusterinfo.Standalone}, func(i *clusterinfo.Info) {
		i.Role = clusterinfo.Primary
		if req.Name != "" {
			i.Name = req.Name
		}
	}, store.Op{Type: store.OpPut, Key: KeySigningKey, Value: key.Marshal()}, store.Op{Type: store.OpPut, Key: KeyConfig, Value: cfg})
	if err != nil {
		return nil, roleError(err)
	}
	return PromoteResponse{Name: info.Name, Role: info.Role, Revision: rev, FedAddrs: h.fedAddrs()}, nil
}

func roleError(err error) error {
	if errors.Is(err, clusterinfo.ErrRole) {
		return apierr.Conflict("%s", strings.TrimPrefix(err.Error(), "clusterinfo: "))
	}
	return err
}

func netSplit(a string) (string, string, error) {
	i := strings.LastIndexByte(a, ':')
	if i <= 0 || i == len(a)-1 {
		return "", "", fmt.Errorf("missing port")
	}
	if _, err := strconv.Atoi(a[i+1:]); err != nil {
		return "", "", err
	}
	return a[:i], a[i+1:], nil
}

// fedAddrs are the addresses tokens carry: the configured override, or
// every replica's published federation address.
func (h *Hub) fedAddrs() []string {
	var cfg primaryConfig
	if kv, ok, _ := h.st.Get(KeyConfig); ok {
		json.Unmarshal(kv.Value, &cfg)
	}
	if len(cfg.FedAddrs) > 0 {
		return cfg.FedAddrs
	}
	// The leader, which serves federation, comes first; remotes try the
	// others when it changes.
	leader, _ := h.st.Leader()
	var first, rest []string
	for _, r := range h.st.Replicas() {
		if a := r.Meta["fed"]; a != "" {
			if r.Name == leader {
				first = append(first, a)
			} else {
				rest = append(rest, a)
			}
		}
	}
	sort.Strings(rest)
	out := append(first, rest...)
	if len(out) == 0 {
		out = []string{h.cfg.FedAdvertise}
	}
	return out
}

func (h *Hub) demote(c *gin.Context) (any, error) {
	if _, err := h.requirePrimary(); err != nil {
		return nil, err
	}
	if srv := h.Server(); srv != nil {
		srv.DismissAll(fedproto.DismissDemoted)
	}
	_, rev, err := clusterinfo.Transition(c.Request.Context(), h.st, []string{clusterinfo.Primary}, func(i *clusterinfo.Info) {
		i.Role = clusterinfo.Standalone
	}, store.Op{Type: store.OpDeletePrefix, Key: prefixFed})
	if err != nil {
		return nil, roleError(err)
	}
	return DemoteResponse{Role: clusterinfo.Standalone, Revision: rev}, nil
}

func (h *Hub) createToken(c *gin.Context) (any, error) {
	info, err := h.requirePrimary()
	if err != nil {
		return nil, err
	}
	var req TokenRequest
	if c.Request.ContentLength != 0 {
		if err := httpapi.DecodeJSON(c, &req); err != nil {
			return nil, err
		}
	}
	ttl := time.Hour
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 || ttl > 30*24*time.Hour {
			return nil, apierr.BadRequest("ttl", "%q is not a duration between 1s and 720h", req.TTL)
		}
	}
	key, err := h.signingKey()
	if err != nil {
		return nil, err
	}
	addrs := h.fedAddrs()
	tok, text, err := key.Issue(jointoken.Options{Primary: info.Name, Addrs: addrs, CAFingerprint: pki.Fingerprint(h.cfg.CA().Cert), TTL: ttl, SingleUse: req.SingleUse}, time.Now())
	if err != nil {
		return nil, err
	}
	return TokenResponse{Token: text, ID: tok.ID, Expires: tok.Expires, Addrs: addrs, SingleUse: tok.SingleUse}, nil
}

func (h *Hub) status(*gin.Context) (any, error) {
	info, err := h.requirePrimary()
	if err != nil {
		return nil, err
	}
	out := Status{Role: info.Role, Name: info.Name, Revision: streamRevision(h.st), Addrs: h.fedAddrs()}
	if srv := h.Server(); srv != nil {
		if r, ok := srv.Rollout(); ok {
			out.Rollout = &r
		}
	}
	out.Remotes = h.remotes(out.Revision)
	return out, nil
}

// remotes lists the members with their live link status and their lag
// behind rev.
func (h *Hub) remotes(rev uint64) []RemoteInfo {
	live := map[string]fedserver.RemoteStatus{}
	if srv := h.Server(); srv != nil {
		for _, s := range srv.Status() {
			live[s.Name] = s
		}
	}
	out := []RemoteInfo{}
	for _, m := range (members{h.st}).list() {
		ri := RemoteInfo{RemoteStatus: live[m.Name], Kicked: m.Kicked, JoinedAt: m.JoinedAt}
		ri.Name, ri.Labels = m.Name, m.Labels
		if ri.AckedRevision < rev {
			ri.Lag = rev - ri.AckedRevision
		}
		out = append(out, ri)
	}
	return out
}

func (h *Hub) listClusters(c *gin.Context) (any, error) {
	if _, err := h.requirePrimary(); err != nil {
		return nil, err
	}
	p, err := httpapi.ParsePage(c, httpapi.DefaultLimit, httpapi.MaxLimit)
	if err != nil {
		return nil, err
	}
	connected, connSet, err := httpapi.QueryBool(c, "connected")
	if err != nil {
		return nil, err
	}
	healthy, healthySet, err := httpapi.QueryBool(c, "healthy")
	if err != nil {
		return nil, err
	}
	selector := c.Query("selector")
	if selector != "" {
		if err := ValidateSelector(selector); err != nil {
			return nil, apierr.BadRequest("selector", "%q: %v", selector, err)
		}
	}
	name := c.Query("name")
	all := httpapi.Filter(h.remotes(streamRevision(h.st)), func(r RemoteInfo) bool {
		return httpapi.Contains(r.Name, name) && (!connSet || r.Connected == connected) && (!healthySet || r.Healthy == healthy) &&
			(selector == "" || MatchLabels(selector, r.Labels))
	})
	return httpapi.NewList(all, p), nil
}

// streamRevision is the revision of the latest change under fed/stream/.
func streamRevision(st *store.Store) uint64 {
	kvs, _ := st.List(PrefixStream)
	var max uint64
	for _, kv := range kvs {
		if kv.ModRevision > max {
			max = kv.ModRevision
		}
	}
	// Deletes leave no key behind; the history records them.
	hist, _ := st.List(PrefixHistory)
	for _, kv := range hist {
		if r, err := strconv.ParseUint(strings.TrimPrefix(kv.Key, PrefixHistory), 10, 64); err == nil && r > max {
			max = r
		}
	}
	return max
}

func (h *Hub) kick(c *gin.Context) (any, error) {
	if _, err := h.requirePrimary(); err != nil {
		return nil, err
	}
	name := c.Param("name")
	if _, ok := (members{h.st}).Get(name); !ok {
		return nil, apierr.NotFound("no remote named %q", name)
	}
	srv := h.Server()
	if srv == nil {
		return nil, apierr.Unavailable("the federation server is starting; retry")
	}
	if err := srv.Kick(c.Request.Context(), name); err != nil {
		return nil, err
	}
	return KickResponse{Kicked: name}, nil
}

// objectKey is where a federated object lives.
func objectKey(o code.Object) string {
	name := o.GetName()
	if ns := metaOf(o).Namespace; ns != "" {
		name = ns + "." + name
	}
	return PrefixObjects + o.GetKind() + "/" + name
}

// metaOf returns an object's Kubernetes-style metadata.
func metaOf(o code.Object) code.ObjectMeta {
	b, _ := json.Marshal(o)
	var m struct {
		Metadata code.ObjectMeta `json:"metadata"`
	}
	json.Unmarshal(b, &m)
	return m.Metadata
}

// currentObjects returns the federated objects by key.
func (h *Hub) currentObjects() map[string][]byte {
	kvs, _ := h.st.List(PrefixObjects)
	out := make(map[string][]byte, len(kvs))
	for _, kv := range kvs {
		out[kv.Key] = kv.Value
	}
	return out
}

// validateObjects decodes stored or incoming objects and validates them as
// one federated policy.
func validateObjects(objs map[string][]byte) error {
	var all []code.Object
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		decoded, err := code.Decode(objs[k])
		if err != nil {
			return fmt.Errorf("stored object %s: %w", k, err)
		}
		all = append(all, decoded...)
	}
	// Validated as policy as code: they become federated, with a primary
	// revision, only once committed.
	set, err := code.ToSet(all, policy.SourceCode)
	if err != nil {
		return apierr.BadRequest("body", "%v", err)
	}
	if err := set.Validate(); err != nil {
		return apierr.BadRequest("body", "%v", err)
	}
	return nil
}

func (h *Hub) applyPolicy(c *gin.Context) (any, error) {
	if _, err := h.requirePrimary(); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, code.MaxInputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > code.MaxInputBytes {
		return nil, apierr.BadRequest("body", "policy is larger than %d bytes", code.MaxInputBytes)
	}
	objs, err := code.Decode(body)
	if err != nil {
		return nil, apierr.BadRequest("body", "%v", err)
	}
	if len(objs) == 0 {
		return nil, apierr.BadRequest("body", "no policy objects in the request")
	}
	dryRun := c.Query("dryRun") == "true"
	prune := c.Query("prune") == "true"
	canaries := splitComma(c.Query("canary"))
	current := h.currentObjects()
	desired := map[string][]byte{}
	if !prune {
		for k, v := range current {
			desired[k] = v
		}
	}
	for _, o := range objs {
		if sel := metaOf(o).Annotations[ClusterSelectorAnnotation]; sel != "" {
			if err := ValidateSelector(sel); err != nil {
				return nil, apierr.BadRequest("metadata.annotations."+ClusterSelectorAnnotation, "%s %q: %v", o.GetKind(), o.GetName(), err)
			}
		}
		b, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		desired[objectKey(o)] = b
	}
	if err := validateObjects(desired); err != nil {
		return nil, err
	}
	return h.writeObjects(c, current, desired, dryRun, canaries)
}

// writeObjects moves the federated objects from current to desired in one
// transaction, records the result for rollback, and starts a canary
// rollout when canaries are named.
func (h *Hub) writeObjects(c *gin.Context, current, desired map[string][]byte, dryRun bool, canaries []string) (any, error) {
	ctx := c.Request.Context()
	txn := store.Txn{}
	resp := ApplyResponse{DryRun: dryRun, Changes: []code.Change{}}
	keys := map[string]bool{}
	for k := range current {
		keys[k] = true
	}
	for k := range desired {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	curKVs, _ := h.st.List(PrefixObjects)
	modRev := map[string]uint64{}
	for _, kv := range curKVs {
		modRev[kv.Key] = kv.ModRevision
	}
	for _, k := range sorted {
		kind, name, _ := strings.Cut(strings.TrimPrefix(k, PrefixObjects), "/")
		old, had := current[k]
		nw, want := desired[k]
		ch := code.Change{Kind: policy.Kind(kind), Name: name}
		switch {
		case had && !want:
			ch.Op = code.OpDelete
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: k})
			txn.Conds = append(txn.Conds, store.Cond{Kind: store.CondModRevision, Key: k, ModRevision: modRev[k]})
		case !had && want:
			ch.Op = code.OpCreate
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: k, Value: nw})
			txn.Conds = append(txn.Conds, store.Cond{Kind: store.CondAbsent, Key: k})
		case string(old) != string(nw):
			ch.Op = code.OpUpdate
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: k, Value: nw})
			txn.Conds = append(txn.Conds, store.Cond{Kind: store.CondModRevision, Key: k, ModRevision: modRev[k]})
		default:
			ch.Op = code.OpUnchanged
		}
		resp.Changes = append(resp.Changes, ch)
	}
	if dryRun || len(txn.Ops) == 0 {
		return resp, nil
	}
	srv := h.Server()
	var ro *rollout.State
	if len(canaries) > 0 {
		if srv == nil {
			return nil, apierr.Unavailable("the federation server is starting; retry")
		}
		for _, name := range canaries {
			if _, ok := (members{h.st}).Get(name); !ok {
				return nil, apierr.BadRequest("canary", "no remote named %q", name)
			}
		}
		// The rollout is written in the same transaction as the objects,
		// without a revision (bound to the transaction's on read): no
		// replica can stream the objects without the rollout that gates
		// them. The record must not have changed since it was checked.
		kv, had, _ := h.st.Get(KeyRollout)
		srv.SyncRollout()
		if cur, ok := srv.Rollout(); ok && !finished(cur) {
			return nil, apierr.Conflict("rollout %s is still in phase %s; resume or roll it back first", cur.ID, cur.Phase)
		}
		var err error
		if ro, err = rollout.New(newID(), h.st.Revision(), canaries, time.Now()); err != nil {
			return nil, apierr.BadRequest("canary", "%v", err)
		}
		b, err := json.Marshal(ro)
		if err != nil {
			return nil, err
		}
		cond := store.Cond{Kind: store.CondAbsent, Key: KeyRollout}
		if had {
			cond = store.Cond{Kind: store.CondModRevision, Key: KeyRollout, ModRevision: kv.ModRevision}
		}
		txn.Conds = append(txn.Conds, cond)
		txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: KeyRollout, Value: b})
	}
	rev, err := h.st.Txn(ctx, txn)
	if err != nil {
		return nil, err
	}
	resp.Revision = rev
	if ro != nil {
		srv.SyncRollout()
		resp.Rollout = ro.ID
	}
	h.recordHistory(ctx, rev, httpapi.SessionOf(c).User, desired)
	return resp, nil
}

func (h *Hub) recordHistory(ctx context.Context, rev uint64, user string, objs map[string][]byte) {
	rec := historyRecord{At: time.Now().UTC(), User: user}
	for k, v := range objs {
		rec.Objects = append(rec.Objects, fedproto.Object{Key: k, Value: v})
	}
	sort.Slice(rec.Objects, func(i, j int) bool { return rec.Objects[i].Key < rec.Objects[j].Key })
	b, _ := json.Marshal(rec)
	txn := store.Txn{Ops: []store.Op{{Type: store.OpPut, Key: fmt.Sprintf("%s%020d", PrefixHistory, rev), Value: b}}}
	old, _ := h.st.List(PrefixHistory)
	for i := 0; i+historyRetained <= len(old); i++ {
		txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: old[i].Key})
	}
	if _, err := h.st.Txn(context.WithoutCancel(ctx), txn); err != nil {
		h.log.Warn("record federated policy history", "err", err)
	}
}

func (h *Hub) history(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, httpapi.DefaultLimit, httpapi.MaxLimit)
	if err != nil {
		return nil, err
	}
	since, err := httpapi.QuerySince(c, "since", time.Now())
	if err != nil {
		return nil, err
	}
	user := c.Query("user")
	kvs, _ := h.st.List(PrefixHistory)
	out := []HistoryEntry{}
	for i := len(kvs) - 1; i >= 0; i-- {
		var rec historyRecord
		if json.Unmarshal(kvs[i].Value, &rec) != nil {
			continue
		}
		rev, _ := strconv.ParseUint(strings.TrimPrefix(kvs[i].Key, PrefixHistory), 10, 64)
		if (user != "" && rec.User != user) || rec.At.Before(since) {
			continue
		}
		out = append(out, HistoryEntry{Revision: rev, At: rec.At, User: rec.User, Objects: len(rec.Objects)})
	}
	return httpapi.NewList(out, p), nil
}

func (h *Hub) listPolicy(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, httpapi.DefaultLimit, httpapi.MaxLimit)
	if err != nil {
		return nil, err
	}
	kind, name := c.Query("kind"), c.Query("name")
	kvs, rev := h.st.List(PrefixObjects)
	all := []PolicyObject{}
	for _, kv := range kvs {
		key := strings.TrimPrefix(kv.Key, PrefixObjects)
		k, n, _ := strings.Cut(key, "/")
		if (kind == "" || strings.EqualFold(k, kind)) && httpapi.Contains(n, name) {
			all = append(all, PolicyObject{Key: key, Revision: kv.ModRevision, Object: kv.Value})
		}
	}
	l := httpapi.NewList(all, p)
	return PolicyList{Items: l.Items, Total: l.Total, Limit: l.Limit, Offset: l.Offset, Revision: rev}, nil
}

func (h *Hub) rollback(c *gin.Context) (any, error) {
	if _, err := h.requirePrimary(); err != nil {
		return nil, err
	}
	var req RollbackRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	kv, ok, _ := h.st.Get(fmt.Sprintf("%s%020d", PrefixHistory, req.To))
	if !ok {
		return nil, apierr.NotFound("no recorded federated policy at revision %d (see palisade fed history)", req.To)
	}
	var rec historyRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return nil, err
	}
	desired := map[string][]byte{}
	for _, o := range rec.Objects {
		desired[o.Key] = o.Value
	}
	res, err := h.writeObjects(c, h.currentObjects(), desired, false, nil)
	if err != nil {
		return nil, err
	}
	resp := res.(ApplyResponse)
	if srv := h.Server(); srv != nil && resp.Revision != 0 {
		if cur, ok := srv.Rollout(); ok && !finished(cur) {
			if _, err := srv.UpdateRollout(func(s *rollout.State) error { return s.Rollback(resp.Revision, time.Now()) }); err != nil {
				return nil, apierr.Conflict("rolled back to revision %d as %d, but the rollout refused: %v", req.To, resp.Revision, err)
			}
		}
	}
	return resp, nil
}

func (h *Hub) getRollout(*gin.Context) (any, error) {
	srv := h.Server()
	if srv == nil {
		return nil, apierr.Unavailable("this cluster serves no federation now")
	}
	r, ok := srv.Rollout()
	if !ok {
		return nil, apierr.NotFound("no rollout")
	}
	return r, nil
}

func (h *Hub) updateRollout(fn func(*rollout.State) error) (any, error) {
	srv := h.Server()
	if srv == nil {
		return nil, apierr.Unavailable("this cluster serves no federation now")
	}
	if _, ok := srv.Rollout(); !ok {
		return nil, apierr.NotFound("no rollout")
	}
	st, err := srv.UpdateRollout(fn)
	if err != nil {
		return nil, apierr.Conflict("%v", err)
	}
	return st, nil
}

func (h *Hub) pauseRollout(*gin.Context) (any, error) {
	return h.updateRollout(func(s *rollout.State) error { return s.Pause(time.Now()) })
}

func (h *Hub) resumeRollout(*gin.Context) (any, error) {
	return h.updateRollout(func(s *rollout.State) error { return s.Resume(time.Now()) })
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func finished(s rollout.State) bool {
	return s.Phase == rollout.PhaseDone || s.Phase == rollout.PhaseRolledBack
}
