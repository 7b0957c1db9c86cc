package agents

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// TokenRequest is the body of POST /v1/agents/tokens.
type TokenRequest struct {
	// TTL is how long the token is valid ("1h"); default 1h.
	TTL string `json:"ttl,omitempty"`
}

// FlowList is the body of GET /v1/flows.
type FlowList = httpapi.List[FlowRecord]

// EventList is the body of GET /v1/events, newest first.
type EventList = httpapi.List[EventRecord]

// AgentList is the body of GET /v1/agents.
type AgentList = httpapi.List[AgentInfo]

// AgentInfo is one node in GET /v1/agents.
type AgentInfo struct {
	NodeRecord
	// Connected is true when the node's agent holds a stream to the
	// replica that answered.
	Connected bool `json:"connected"`
}

// Routes implements httpapi.Module.
func (m *Module) Routes(r httpapi.Routes) {
	r.Handle(http.MethodPost, "/agents/tokens", httpapi.Write, m.postToken)
	r.Handle(http.MethodGet, "/agents", httpapi.Read, m.listAgents)
	r.Handle(http.MethodGet, "/flows", httpapi.Read, m.listFlows)
	r.Handle(http.MethodGet, "/events", httpapi.Read, m.listEvents)
}

func (m *Module) postToken(c *gin.Context) (any, error) {
	var req TokenRequest
	if c.Request.ContentLength != 0 {
		if err := httpapi.DecodeJSON(c, &req); err != nil {
			return nil, err
		}
	}
	ttl := time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > 365*24*time.Hour {
			return nil, apierr.BadRequest("ttl", "%q is not a duration from 1s to 8760h", req.TTL)
		}
		ttl = d
	}
	t, err := m.CreateToken(c.Request.Context(), ttl, httpapi.SessionOf(c).User)
	if err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusCreated, Body: t}, nil
}

func (m *Module) page(c *gin.Context) (httpapi.Page, error) {
	return httpapi.ParsePage(c, m.cfg.DefaultLimit, m.cfg.MaxLimit)
}

func (m *Module) listAgents(c *gin.Context) (any, error) {
	p, err := m.page(c)
	if err != nil {
		return nil, err
	}
	conn, connSet, err := httpapi.QueryBool(c, "connected")
	if err != nil {
		return nil, err
	}
	name, workload := c.Query("name"), c.Query("workload")
	connected := map[string]bool{}
	m.sessMu.Lock()
	for s := range m.sessions {
		connected[s.node] = true
	}
	m.sessMu.Unlock()
	out := []AgentInfo{}
	for _, n := range m.readNodes() {
		if !httpapi.Contains(n.Name, name) || (connSet && connected[n.Name] != conn) || !hasWorkload(n, workload) {
			continue
		}
		out = append(out, AgentInfo{NodeRecord: n, Connected: connected[n.Name]})
	}
	return httpapi.NewList(out, p), nil
}

// hasWorkload reports whether a node runs a workload whose ID, name or
// namespace contains sub.
func hasWorkload(n NodeRecord, sub string) bool {
	if sub == "" {
		return true
	}
	for _, w := range n.Workloads {
		if httpapi.Contains(w.ID, sub) || httpapi.Contains(w.Name, sub) || httpapi.Contains(w.Namespace, sub) {
			return true
		}
	}
	return false
}

// Flows returns the stored flows, most recently seen first, with their
// groups; group, when set, keeps flows with an end in that group.
func (m *Module) Flows(group string) []FlowRecord {
	kvs, _ := m.st.List(PrefixFlows)
	out := []FlowRecord{}
	for _, kv := range kvs {
		var r FlowRecord
		if json.Unmarshal(kv.Value, &r) != nil {
			continue
		}
		r.ClientGroups, r.ServerGroups = m.groupsOf(r.Client), m.groupsOf(r.Server)
		if group != "" && !slices.Contains(r.ClientGroups, group) && !slices.Contains(r.ServerGroups, group) {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b FlowRecord) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

func (m *Module) listFlows(c *gin.Context) (any, error) {
	p, err := m.page(c)
	if err != nil {
		return nil, err
	}
	since, err := httpapi.QuerySince(c, "since", time.Now())
	if err != nil {
		return nil, err
	}
	violations, violSet, err := httpapi.QueryBool(c, "violations")
	if err != nil {
		return nil, err
	}
	var port int
	if s := c.Query("port"); s != "" {
		if port, err = strconv.Atoi(s); err != nil || port < 1 || port > 65535 {
			return nil, apierr.BadRequest("port", "%q is not a port from 1 to 65535", s)
		}
	}
	node, app, mode := c.Query("node"), c.Query("app"), c.Query("mode")
	all := httpapi.Filter(m.Flows(c.Query("group")), func(r FlowRecord) bool {
		return (node == "" || r.Node == node) && httpapi.Contains(r.App, app) && (mode == "" || strings.EqualFold(r.Mode, mode)) &&
			(port == 0 || int(r.Port) == port) && (!violSet || (r.Violations > 0) == violations) &&
			(since.IsZero() || !r.LastSeen.Before(since))
	})
	return httpapi.NewList(all, p), nil
}

// Events returns the stored events, newest first.
func (m *Module) Events() []EventRecord {
	kvs, _ := m.st.List(PrefixEvents)
	out := make([]EventRecord, 0, len(kvs))
	for i := len(kvs) - 1; i >= 0; i-- {
		var r EventRecord
		if json.Unmarshal(kvs[i].Value, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

func (m *Module) listEvents(c *gin.Context) (any, error) {
	p, err := m.page(c)
	if err != nil {
		return nil, err
	}
	since, err := httpapi.QuerySince(c, "since", time.Now())
	if err != nil {
		return nil, err
	}
	node, kind, action, workload := c.Query("node"), c.Query("kind"), c.Query("action"), c.Query("workload")
	all := httpapi.Filter(m.Events(), func(e EventRecord) bool {
		return (node == "" || e.Node == node) && (kind == "" || strings.EqualFold(e.Kind, kind)) &&
			(action == "" || strings.EqualFold(e.Action, action)) && httpapi.Contains(e.Workload, workload) &&
			(since.IsZero() || !e.Time.Before(since))
	})
	return httpapi.NewList(all, p), nil
}
