package admission

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/admission/audit"
	"github.com/palisade-sec/palisade/remote/admission/review"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// EventList is the body of GET /v1/admission/events, newest first.
type EventList struct {
	Items []audit.Event `json:"items" openapi:"nonnull"`
	// Total counts the matching events among the newest audit.MaxLimit.
	Total  int `json:"total"`
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
	// Dropped counts events this replica could not store in time.
	Dropped uint64 `json:"dropped,omitempty"`
}

// Status is the body of GET /v1/admission/status.
type Status struct {
	Replica       string   `json:"replica"`
	Enabled       bool     `json:"enabled"`
	Mode          string   `json:"mode"`
	Rules         int      `json:"rules"`
	RulesRevision uint64   `json:"rulesRevision"`
	Problems      []string `json:"problems,omitempty"`
	Verdicts      int      `json:"verdicts"`
	FailurePolicy string   `json:"failurePolicy"`
	TimeoutMillis int64    `json:"timeoutMillis"`
	Registered    bool     `json:"registration"`
}

// TestRequest is the body of POST /v1/admission/test: Kubernetes objects
// (JSON) to run through admission without creating them.
type TestRequest struct {
	Objects []json.RawMessage `json:"objects"`
}

// TestResult is the decision on one object of a dry run.
type TestResult struct {
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Allowed   bool   `json:"allowed"`
	// Skipped marks an object admission does not check.
	Skipped bool   `json:"skipped,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Message string `json:"message"`
	// Error says why the object could not be read; the decision is then
	// "not admitted".
	Error string `json:"error,omitempty"`
}

// TestResponse is the answer of POST /v1/admission/test.
type TestResponse struct {
	Results []TestResult `json:"results"`
}

// MaxTestObjects bounds a dry run's objects.
const MaxTestObjects = 1000

// Routes adds the admission and scan-result routes.
func (w *Webhook) Routes(r httpapi.Routes) {
	r.Handle(http.MethodGet, "/admission/status", httpapi.Read, w.status)
	r.Handle(http.MethodGet, "/admission/events", httpapi.Read, w.events)
	r.Handle(http.MethodPost, "/admission/test", httpapi.Read, w.test)
	r.Handle(http.MethodGet, "/scan/results/:digest", httpapi.Read, w.getVerdict)
	r.Handle(http.MethodPut, "/scan/results/:digest", httpapi.Write, w.putVerdict)
	r.Handle(http.MethodDelete, "/scan/results/:digest", httpapi.Write, w.deleteVerdict)
}

func (w *Webhook) status(*gin.Context) (any, error) {
	st := Status{Replica: w.cfg.Replica, Verdicts: w.verdicts.Len(), FailurePolicy: w.cfg.FailurePolicy,
		TimeoutMillis: w.cfg.Timeout.Milliseconds(), Registered: w.cfg.Kube != nil}
	if r := w.rules.Load(); r != nil {
		st.Enabled, st.Mode, st.Rules, st.RulesRevision, st.Problems = r.Settings.Enabled, string(r.Settings.Mode), r.Count, r.Revision, r.Problems
	}
	return st, nil
}

func (w *Webhook) events(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, httpapi.DefaultLimit, httpapi.MaxLimit)
	if err != nil {
		return nil, err
	}
	f := audit.Filter{Limit: audit.MaxLimit}
	q := c.Request.URL.Query()
	if f.Denied, _, err = httpapi.QueryBool(c, "denied"); err != nil {
		return nil, err
	}
	if f.Since, err = httpapi.QuerySince(c, "since", time.Now()); err != nil {
		return nil, err
	}
	allowed, allowedSet, err := httpapi.QueryBool(c, "allowed")
	if err != nil {
		return nil, err
	}
	f.Namespace, f.Rule = q.Get("namespace"), q.Get("rule")
	kind, name, image := q.Get("kind"), q.Get("name"), q.Get("image")
	all, err := w.audit.List(f)
	if errors.Is(err, audit.ErrBadFilter) {
		return nil, apierr.BadRequest("limit", "%v", err)
	}
	if err != nil {
		return nil, err
	}
	all = httpapi.Filter(all, func(e audit.Event) bool {
		return (kind == "" || strings.EqualFold(e.Kind, kind)) && httpapi.Contains(e.Name, name) &&
			(!allowedSet || e.Allowed == allowed) && hasImage(e.Images, image)
	})
	l := httpapi.NewList(all, p)
	return EventList{Items: l.Items, Total: l.Total, Limit: l.Limit, Offset: l.Offset, Dropped: w.audit.Dropped()}, nil
}

// hasImage reports whether one of images contains sub ("" matches all).
func hasImage(images []string, sub string) bool {
	if sub == "" {
		return true
	}
	for _, im := range images {
		if httpapi.Contains(im, sub) {
			return true
		}
	}
	return false
}

func (w *Webhook) test(c *gin.Context) (any, error) {
	var req TestRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	if len(req.Objects) == 0 {
		return nil, apierr.BadRequest("objects", "no objects to test")
	}
	if len(req.Objects) > MaxTestObjects {
		return nil, apierr.BadRequest("objects", "%d objects (limit %d)", len(req.Objects), MaxTestObjects)
	}
	rules := w.rules.Load()
	if rules == nil {
		return nil, apierr.Unavailable("admission rules are not loaded yet")
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 10*time.Second)
	defer cancel()
	resp := TestResponse{Results: make([]TestResult, 0, len(req.Objects))}
	for _, o := range req.Objects {
		resp.Results = append(resp.Results, Test(ctx, rules, w, o))
	}
	return resp, nil
}

// Test runs one Kubernetes object (JSON) through rules, with verdicts from
// src. Objects without a namespace are taken to be in "default".
func Test(ctx context.Context, rules *Rules, src VerdictSource, object []byte) TestResult {
	req, subj, reason, err := review.FromObject(object)
	if err != nil {
		return TestResult{Error: err.Error(), Message: "not admitted: " + err.Error()}
	}
	if subj == review.Skipped {
		return TestResult{Allowed: true, Skipped: true, Message: reason}
	}
	if req.Namespace == "" {
		req.Namespace = "default"
	}
	verdicts, notes := Verdicts(ctx, src, req)
	d := rules.Engine.Evaluate(req, verdicts)
	res := TestResult{Kind: req.Kind, Namespace: req.Namespace, Name: req.Name, Allowed: d.Allowed, Rule: d.Rule, Mode: string(d.Mode), Message: d.Message}
	if len(notes) > 0 {
		res.Message += " [" + strings.Join(notes, "; ") + "]"
	}
	return res
}

// ObjectImages lists the distinct images of a Kubernetes object's
// containers (none for kinds admission does not check or cannot read).
func ObjectImages(object []byte) []string {
	req, subj, _, err := review.FromObject(object)
	if err != nil || subj != review.Checked {
		return nil
	}
	return images(req)
}

func (w *Webhook) digestParam(c *gin.Context) (string, error) {
	d := c.Param("digest")
	if !verdict.ValidDigest(d) {
		return "", apierr.BadRequest("digest", "digest %q is not sha256:<64 lower-case hex>", d)
	}
	return d, nil
}

func (w *Webhook) getVerdict(c *gin.Context) (any, error) {
	d, err := w.digestParam(c)
	if err != nil {
		return nil, err
	}
	v, ok := w.verdicts.ByDigest(d)
	if !ok {
		return nil, apierr.NotFound("no scan result for %s", d)
	}
	return v, nil
}

func (w *Webhook) putVerdict(c *gin.Context) (any, error) {
	d, err := w.digestParam(c)
	if err != nil {
		return nil, err
	}
	var v verdict.Verdict
	if err := httpapi.DecodeJSON(c, &v); err != nil {
		return nil, err
	}
	if v.Digest == "" {
		v.Digest = d
	}
	if v.Digest != d {
		return nil, apierr.BadRequest("digest", "body digest %s differs from the path's %s", v.Digest, d)
	}
	if v.ScannedAt.IsZero() {
		v.ScannedAt = time.Now().UTC()
	}
	if err := v.Validate(); err != nil {
		return nil, apierr.BadRequest("", "%v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	rev, err := w.cfg.Store.Put(c.Request.Context(), verdict.PrefixLocal+d, b)
	if err != nil {
		return nil, err
	}
	// Answer once this replica's index has it, so a request that follows
	// sees the verdict.
	if err := w.cfg.Store.WaitFor(c.Request.Context(), rev); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if got, ok := w.verdicts.Get(verdict.PrefixLocal + d); ok && got.ScannedAt.Equal(v.ScannedAt) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return v, nil
}

func (w *Webhook) deleteVerdict(c *gin.Context) (any, error) {
	d, err := w.digestParam(c)
	if err != nil {
		return nil, err
	}
	if _, err := w.cfg.Store.Delete(c.Request.Context(), verdict.PrefixLocal+d); err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusNoContent}, nil
}
