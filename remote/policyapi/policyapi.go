// Package policyapi serves a controller cluster's policy endpoints under
// /v1: applying and exporting policy as code, importing NeuVector exports,
// listing groups and network rules, and setting group modes. The policy
// itself is kept by remote/policystore.
package policyapi

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// ContentTypeYAML is the media type of YAML request and response bodies.
const ContentTypeYAML = "application/yaml"

// Config configures the API.
type Config struct {
	// Policy is the cluster's policy store.
	Policy *policystore.Store
	// MaxBodyBytes bounds a YAML request body.
	MaxBodyBytes int64
	// DefaultLimit is the page size of a listing without ?limit=.
	DefaultLimit int
	// MaxLimit is the largest page size a listing serves.
	MaxLimit int
	// Logger receives the API's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Policy must be set.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: code.MaxInputBytes, DefaultLimit: 100, MaxLimit: 1000}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Policy == nil:
		return errors.New("policyapi: config: policy store is nil")
	case c.MaxBodyBytes <= 0:
		return errors.New("policyapi: config: max body bytes must be positive")
	case c.DefaultLimit < 1 || c.MaxLimit < c.DefaultLimit:
		return fmt.Errorf("policyapi: config: limits %d/%d: want 1 <= default <= max", c.DefaultLimit, c.MaxLimit)
	}
	return nil
}

// API is the policy module of a controller's REST API.
type API struct {
	cfg Config
	log *slog.Logger
}

// New builds the API.
func New(cfg Config) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &API{cfg: cfg, log: log.With(logfields.Component, "policyapi")}, nil
}

// Routes implements httpapi.Module.
func (a *API) Routes(r httpapi.Routes) {
	r.HandleLeader(http.MethodPost, "/policy/apply", httpapi.Write, a.apply)
	r.HandleLeader(http.MethodPost, "/policy/import-neuvector", httpapi.Write, a.importNeuVector)
	r.Raw(http.MethodGet, "/policy/export", httpapi.Read, a.export)
	r.Handle(http.MethodGet, "/policy", httpapi.Read, a.status)
	r.Handle(http.MethodGet, "/groups", httpapi.Read, a.groups)
	r.Handle(http.MethodGet, "/rules", httpapi.Read, a.rules)
	r.Handle(http.MethodGet, "/admission/rules", httpapi.Read, a.admissionRules)
	r.HandleLeader(http.MethodPut, "/modes", httpapi.Write, a.setMode)
}

// Status is the body of GET /v1/policy.
type Status struct {
	Revision       uint64   `json:"revision"`
	Groups         int      `json:"groups"`
	NetworkRules   int      `json:"networkRules"`
	ProcessRules   int      `json:"processRules"`
	FileRules      int      `json:"fileRules"`
	AdmissionRules int      `json:"admissionRules"`
	Shadowed       []string `json:"shadowed,omitempty"`
	Problems       []string `json:"problems,omitempty"`
}

// GroupList is the body of GET /v1/groups.
type GroupList struct {
	Items    []policystore.GroupInfo `json:"items" openapi:"nonnull"`
	Total    int                     `json:"total"`
	Limit    int                     `json:"limit"`
	Offset   int                     `json:"offset"`
	Revision uint64                  `json:"revision"`
}

// RuleList is the body of GET /v1/rules.
type RuleList struct {
	Items    []policystore.RuleInfo `json:"items" openapi:"nonnull"`
	Total    int                    `json:"total"`
	Limit    int                    `json:"limit"`
	Offset   int                    `json:"offset"`
	Revision uint64                 `json:"revision"`
}

// AdmissionRuleInfo is one admission rule in GET /v1/admission/rules.
type AdmissionRuleInfo struct {
	// Order is the rule's position in evaluation order, from 1; disabled
	// rules come last with order 0.
	Order int `json:"order"`
	policy.AdmissionRule
}

// AdmissionRuleList is the body of GET /v1/admission/rules.
type AdmissionRuleList struct {
	Items    []AdmissionRuleInfo `json:"items" openapi:"nonnull"`
	Total    int                 `json:"total"`
	Limit    int                 `json:"limit"`
	Offset   int                 `json:"offset"`
	Revision uint64              `json:"revision"`
}

// readYAML reads a YAML request body, bounded.
func (a *API) readYAML(c *gin.Context) ([]byte, error) {
	if ct := c.GetHeader("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err != nil:
			return nil, apierr.BadRequest("Content-Type", "%q: %v", ct, err)
		case mt != ContentTypeYAML && mt != "application/x-yaml" && mt != "text/yaml" && mt != "text/plain" && mt != "application/json":
			return nil, apierr.BadRequest("Content-Type", "%q: want %s", mt, ContentTypeYAML)
		}
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, a.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > a.cfg.MaxBodyBytes {
		return nil, apierr.BadRequest("body", "request body exceeds %d bytes", a.cfg.MaxBodyBytes)
	}
	return b, nil
}

func (a *API) applyOptions(c *gin.Context, prune bool) (policystore.ApplyOptions, error) {
	opts := policystore.ApplyOptions{User: httpapi.SessionOf(c).User}
	var err error
	if opts.DryRun, _, err = httpapi.QueryBool(c, "dryRun"); err != nil {
		return opts, err
	}
	if prune {
		if opts.Prune, _, err = httpapi.QueryBool(c, "prune"); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

func (a *API) apply(c *gin.Context) (any, error) {
	opts, err := a.applyOptions(c, true)
	if err != nil {
		return nil, err
	}
	body, err := a.readYAML(c)
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Policy.ApplyYAML(c.Request.Context(), body, opts)
	if err != nil {
		return nil, toAPIError(err)
	}
	return res, nil
}

func (a *API) importNeuVector(c *gin.Context) (any, error) {
	opts, err := a.applyOptions(c, false)
	if err != nil {
		return nil, err
	}
	body, err := a.readYAML(c)
	if err != nil {
		return nil, err
	}
	res, err := a.cfg.Policy.ImportNeuVector(c.Request.Context(), body, opts)
	if err != nil {
		return nil, toAPIError(err)
	}
	return res, nil
}

func (a *API) export(c *gin.Context) {
	v, err := a.cfg.Policy.View()
	var body []byte
	if err == nil {
		body, err = v.Export()
	}
	if err != nil {
		a.log.Error("export policy", logfields.Error, err)
		e := apierr.Internal("export policy: %v", err)
		c.AbortWithStatusJSON(e.Status(), e)
		return
	}
	c.Header("X-Palisade-Revision", strconv.FormatUint(v.Revision, 10))
	c.Data(http.StatusOK, ContentTypeYAML+"; charset=utf-8", body)
}

func (a *API) status(*gin.Context) (any, error) {
	v, err := a.cfg.Policy.View()
	if err != nil {
		return nil, err
	}
	s := v.Set
	return Status{Revision: v.Revision, Groups: len(s.Groups), NetworkRules: len(s.NetworkRules), ProcessRules: len(s.ProcessRules),
		FileRules: len(s.FileRules), AdmissionRules: len(s.AdmissionRules), Shadowed: v.Shadowed, Problems: v.Problems}, nil
}

// listParams reads ?limit=&offset=&source=&group=.
func (a *API) listParams(c *gin.Context) (httpapi.Page, policystore.Filter, error) {
	var f policystore.Filter
	p, err := httpapi.ParsePage(c, a.cfg.DefaultLimit, a.cfg.MaxLimit)
	if err != nil {
		return p, f, err
	}
	if s := c.Query("source"); s != "" {
		f.Source = policy.Source(s)
		if !f.Source.Valid() {
			return p, f, apierr.BadRequest("source", "%q is not federated, code, user or learned", s)
		}
	}
	f.Group = c.Query("group")
	return p, f, nil
}

func (a *API) groups(c *gin.Context) (any, error) {
	p, f, err := a.listParams(c)
	if err != nil {
		return nil, err
	}
	mode, err := httpapi.QueryEnum(c, "mode", string(policy.ModeDiscover), string(policy.ModeMonitor), string(policy.ModeProtect))
	if err != nil {
		return nil, err
	}
	v, err := a.cfg.Policy.View()
	if err != nil {
		return nil, err
	}
	name, criteria := c.Query("name"), c.Query("criteria")
	all := httpapi.Filter(v.Groups(f), func(g policystore.GroupInfo) bool {
		return httpapi.Contains(g.Name, name) && (mode == "" || string(g.NetworkMode) == mode || string(g.ProcessMode) == mode) &&
			(criteria == "" || slices.ContainsFunc(g.Criteria, func(cr string) bool { return httpapi.Contains(cr, criteria) }))
	})
	l := httpapi.NewList(all, p)
	return GroupList{Items: l.Items, Total: l.Total, Limit: l.Limit, Offset: l.Offset, Revision: v.Revision}, nil
}

func (a *API) rules(c *gin.Context) (any, error) {
	p, f, err := a.listParams(c)
	if err != nil {
		return nil, err
	}
	if f.Learned, _, err = httpapi.QueryBool(c, "learned"); err != nil {
		return nil, err
	}
	action, err := httpapi.QueryEnum(c, "action", string(policy.ActionAllow), string(policy.ActionDeny))
	if err != nil {
		return nil, err
	}
	v, err := a.cfg.Policy.View()
	if err != nil {
		return nil, err
	}
	name := c.Query("name")
	all := httpapi.Filter(v.Rules(f), func(r policystore.RuleInfo) bool {
		return httpapi.Contains(r.Name, name) && (action == "" || string(r.Action) == action)
	})
	l := httpapi.NewList(all, p)
	return RuleList{Items: l.Items, Total: l.Total, Limit: l.Limit, Offset: l.Offset, Revision: v.Revision}, nil
}

func (a *API) admissionRules(c *gin.Context) (any, error) {
	p, f, err := a.listParams(c)
	if err != nil {
		return nil, err
	}
	action, err := httpapi.QueryEnum(c, "action", string(policy.ActionAllow), string(policy.ActionDeny))
	if err != nil {
		return nil, err
	}
	disabled, disabledSet, err := httpapi.QueryBool(c, "disabled")
	if err != nil {
		return nil, err
	}
	v, err := a.cfg.Policy.View()
	if err != nil {
		return nil, err
	}
	var all []AdmissionRuleInfo
	for i, r := range policy.SortedAdmissionRules(v.Set.AdmissionRules) {
		all = append(all, AdmissionRuleInfo{Order: i + 1, AdmissionRule: *r})
	}
	for _, r := range v.Set.AdmissionRules {
		if r.Disabled {
			all = append(all, AdmissionRuleInfo{AdmissionRule: r})
		}
	}
	name := c.Query("name")
	all = httpapi.Filter(all, func(r AdmissionRuleInfo) bool {
		return httpapi.Contains(r.Name, name) && (f.Source == "" || r.Source == f.Source) &&
			(action == "" || string(r.Action) == action) && (!disabledSet || r.Disabled == disabled)
	})
	l := httpapi.NewList(all, p)
	return AdmissionRuleList{Items: l.Items, Total: l.Total, Limit: l.Limit, Offset: l.Offset, Revision: v.Revision}, nil
}

func (a *API) setMode(c *gin.Context) (any, error) {
	var req policystore.ModeRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	req.User = httpapi.SessionOf(c).User
	res, err := a.cfg.Policy.SetMode(c.Request.Context(), req)
	if err != nil {
		return nil, toAPIError(err)
	}
	return res, nil
}

// toAPIError maps the policy store's errors to API errors; others pass
// through to the router's mapping.
func toAPIError(err error) error {
	var ro *policystore.ReadOnlyError
	var inv *policystore.InvalidError
	switch {
	case errors.As(err, &ro):
		return apierr.Forbidden("%s", ro.Error())
	case errors.As(err, &inv):
		return apierr.BadRequest(inv.Field, "%s", inv.Problem)
	case errors.Is(err, policystore.ErrUnknownGroup):
		return apierr.NotFound("%s", strings.TrimPrefix(err.Error(), "policystore: "))
	case errors.Is(err, store.ErrConflict):
		return apierr.Conflict("the policy changed while this request ran; read it again and retry (%v)", err)
	}
	return err
}
