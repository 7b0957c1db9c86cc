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
type FlowList struct {
	Items  []FlowRecord `json:"items"`
	Total  int          `json:"total"`
	Limit  int          `json:"limit"`
	Offset int          `json:"offset"`
}

// EventList is the body of GET /v1/events, newest first.
type EventList struct {
	Items  []EventRecord `json:"items"`
	Total  int           `json:"total"`
	Limit  int           `json:"limit"`
	Offset int           `json:"offset"`
}

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

func (m *Module) pageParams(c *gin.Context) (limit, offset int, err error) {
	limit = m.cfg.DefaultLimit
	if s := c.Query("limit"); s != "" {
		n, perr := strconv.Atoi(s)
		if perr != nil || n < 1 || n > m.cfg.MaxLimit {
			return 0, 0, apierr.BadRequest("limit", "%q is not a number from 1 to %d", s, m.cfg.MaxLimit)
		}
		limit = n
	}
	if s := c.Query("offset"); s != "" {
		n, perr := strconv.Atoi(s)
		if perr != nil || n < 0 {
			return 0, 0, apierr.BadRequest("offset", "%q is not a number from 0", s)
		}
		offset = n
	}
	return limit, offset, nil
}

func page[T any](items []T, limit, offset int) []T {
	if offset >= len(items) {
		return []T{}
	}
	return items[offset:min(len(items), offset+limit)]
}

func (m *Module) listAgents(c *gin.Context) (any, error) {
	connected := map[string]bool{}
	m.sessMu.Lock()
	for s := range m.sessions {
		connected[s.node] = true
	}
	m.sessMu.Unlock()
	out := []AgentInfo{}
	for _, n := range m.readNodes() {
		out = append(out, AgentInfo{NodeRecord: n, Connected: connected[n.Name]})
	}
	return out, nil
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
	limit, offset, err := m.pageParams(c)
	if err != nil {
		return nil, err
	}
	all := m.Flows(c.Query("group"))
	return FlowList{Items: page(all, limit, offset), Total: len(all), Limit: limit, Offset: offset}, nil
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
	limit, offset, err := m.pageParams(c)
	if err != nil {
		return nil, err
	}
	all := m.Events()
	return EventList{Items: page(all, limit, offset), Total: len(all), Limit: limit, Offset: offset}, nil
}
