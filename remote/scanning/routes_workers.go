package scanning

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/store"
)

// MaxResultBytes bounds a worker's decompressed job result.
const MaxResultBytes = 64 << 20

// WorkerTokenRequest is the body of POST /v1/scanners/tokens.
type WorkerTokenRequest struct {
	// TTL is how long the token is valid ("1h"); default 1h.
	TTL string `json:"ttl,omitempty"`
}

// Routed is the module as a controller runs it: Routes adds the routes of
// routes.go and WorkerRoutes, OpenAPI documents them all, and Run is the
// Module's.
type Routed struct{ *Module }

// WithWorkerRoutes returns m with the scanner-worker and credential routes.
func (m *Module) WithWorkerRoutes() Routed { return Routed{m} }

// Routes implements httpapi.Module.
func (r Routed) Routes(rt httpapi.Routes) {
	r.Module.Routes(rt)
	r.WorkerRoutes(rt)
}

// OpenAPI implements httpapi.Documented.
func (r Routed) OpenAPI() []httpapi.Op { return append(r.Module.OpenAPI(), r.WorkerOpenAPI()...) }

// WorkerRoutes adds the routes of scanner workers and registry
// credentials. The worker routes (enroll, poll, jobs) are public at the
// router and authenticated here by the enrolment token or the worker's
// credential; poll and jobs are served by the leader (followers proxy).
func (m *Module) WorkerRoutes(r httpapi.Routes) {
	r.Handle(http.MethodPut, "/registries/:name/credentials", httpapi.Write, m.putCredentials)
	r.Handle(http.MethodDelete, "/registries/:name/credentials", httpapi.Write, m.deleteCredentials)
	r.Handle(http.MethodPost, "/scanners/tokens", httpapi.Write, m.postWorkerToken)
	r.Handle(http.MethodPost, "/scanners/enroll", httpapi.Public, m.enroll)
	r.HandleLeader(http.MethodGet, "/scanners", httpapi.Read, m.listWorkers)
	r.Handle(http.MethodDelete, "/scanners/:name", httpapi.Write, m.deleteWorker)
	r.HandleLeader(http.MethodPost, "/scanners/poll", httpapi.Public, m.pollJobs)
	r.HandleLeader(http.MethodPost, "/scanners/jobs/:id/resolve", httpapi.Public, m.resolveJob)
	r.HandleLeader(http.MethodPost, "/scanners/jobs/:id/result", httpapi.Public, m.jobResult)
}

// WorkerOpenAPI documents WorkerRoutes.
func (m *Module) WorkerOpenAPI() []httpapi.Op {
	const tag = "scanning"
	return []httpapi.Op{
		{Method: http.MethodPut, Path: "/registries/:name/credentials", Tag: tag,
			Summary: "set a registry's credentials (basic or bearer), kept sealed and never returned", Body: Credentials{}, Response: RegistryInfo{}},
		{Method: http.MethodDelete, Path: "/registries/:name/credentials", Tag: tag, Summary: "remove a registry's credentials", Response: RegistryInfo{}},
		{Method: http.MethodPost, Path: "/scanners/tokens", Tag: tag, Summary: "make a scanner worker enrolment token",
			Body: WorkerTokenRequest{}, Status: http.StatusCreated, Response: CreatedWorkerToken{}},
		{Method: http.MethodPost, Path: "/scanners/enroll", Tag: tag, Summary: "enrol a scanner worker with a token (no session)",
			Body: EnrollRequest{}, Status: http.StatusCreated, Response: Enrolled{}},
		{Method: http.MethodGet, Path: "/scanners", Tag: tag, Summary: "list scanner workers with their load and last contact", Paged: true, Response: WorkerList{}},
		{Method: http.MethodDelete, Path: "/scanners/:name", Tag: tag, Summary: "revoke a scanner worker", Status: http.StatusNoContent},
		{Method: http.MethodPost, Path: "/scanners/poll", Tag: tag, Summary: "a scanner worker takes jobs (long poll, worker credential)",
			Body: PollRequest{}, Response: PollResponse{}},
		{Method: http.MethodPost, Path: "/scanners/jobs/:id/resolve", Tag: tag, Summary: "a scanner worker asks whether an image digest has a result",
			Body: ResolveRequest{}, Response: ResolveResponse{}},
		{Method: http.MethodPost, Path: "/scanners/jobs/:id/result", Tag: tag, Summary: "a scanner worker returns a job's result (gzip accepted)",
			Body: JobResult{}, Status: http.StatusNoContent},
	}
}

func (m *Module) putCredentials(c *gin.Context) (any, error) {
	reg, err := m.nameParam(c)
	if err != nil {
		return nil, err
	}
	if reg.Federated && !auth.Role(httpapi.SessionOf(c).Role).CanWriteFederated() {
		return nil, apierr.Forbidden("a federated registry needs the fedAdmin or admin role")
	}
	var cr Credentials
	if err := httpapi.DecodeJSON(c, &cr); err != nil {
		return nil, err
	}
	if err := cr.Validate(); err != nil {
		return nil, apierr.BadRequest("body", "%v", err)
	}
	b, err := sealCredentials(m.ca(), reg.Name, cr)
	if err != nil {
		return nil, apierr.Unavailable("%v", err)
	}
	reg.Auth = cr.Kind()
	rb, _ := json.Marshal(reg)
	// Rewriting the registry makes the scheduler scan it again at once.
	if _, err := m.st.Txn(c.Request.Context(), store.Txn{Ops: []store.Op{
		{Type: store.OpPut, Key: PrefixCredentials + reg.Name, Value: b},
		{Type: store.OpPut, Key: PrefixRegistries + reg.Name, Value: rb},
	}}); err != nil {
		return nil, err
	}
	return m.registryInfo(reg), nil
}

func (m *Module) deleteCredentials(c *gin.Context) (any, error) {
	reg, err := m.nameParam(c)
	if err != nil {
		return nil, err
	}
	if reg.Federated && !auth.Role(httpapi.SessionOf(c).Role).CanWriteFederated() {
		return nil, apierr.Forbidden("a federated registry needs the fedAdmin or admin role")
	}
	reg.Auth = ""
	rb, _ := json.Marshal(reg)
	if _, err := m.st.Txn(c.Request.Context(), store.Txn{Ops: []store.Op{
		{Type: store.OpDelete, Key: PrefixCredentials + reg.Name},
		{Type: store.OpPut, Key: PrefixRegistries + reg.Name, Value: rb},
	}}); err != nil {
		return nil, err
	}
	return m.registryInfo(reg), nil
}

func (m *Module) postWorkerToken(c *gin.Context) (any, error) {
	var req WorkerTokenRequest
	if c.Request.ContentLength != 0 {
		if err := httpapi.DecodeJSON(c, &req); err != nil {
			return nil, err
		}
	}
	ttl := m.cfg.WorkerTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > 365*24*time.Hour {
			return nil, apierr.BadRequest("ttl", "%q is not a duration from 1s to 8760h", req.TTL)
		}
		ttl = d
	}
	t, err := m.CreateWorkerToken(c.Request.Context(), ttl, httpapi.SessionOf(c).User)
	if err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusCreated, Body: t}, nil
}

func (m *Module) enroll(c *gin.Context) (any, error) {
	var req EnrollRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	e, err := m.Enroll(c.Request.Context(), req, time.Now())
	if errors.Is(err, ErrWorkerToken) {
		return nil, apierr.Unauthorized("%v", err)
	}
	if err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusCreated, Body: e}, nil
}

// Workers lists the enrolled workers and, on the leader, the in-process
// ones, with their load and last contact.
func (m *Module) Workers() []WorkerInfo {
	var live map[string]WorkerInfo
	if s, err := m.current(); err == nil {
		live = s.workerInfos()
	}
	out := []WorkerInfo{}
	for _, w := range m.workerRecords() {
		wi, ok := live[w.Name]
		if !ok || !wi.Remote {
			wi = WorkerInfo{Name: w.Name, Remote: true}
		}
		wi.ID, wi.Enrolled = w.ID, w.Enrolled
		delete(live, w.Name)
		out = append(out, wi)
	}
	for _, wi := range live {
		if !wi.Remote {
			out = append(out, wi)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Remote != out[j].Remote {
			return !out[i].Remote
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func (m *Module) listWorkers(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, DefaultLimit, MaxLimit)
	if err != nil {
		return nil, err
	}
	return httpapi.NewList(m.Workers(), p), nil
}

func (m *Module) deleteWorker(c *gin.Context) (any, error) {
	n := c.Param("name")
	var ops []store.Op
	for _, w := range m.workerRecords() {
		if w.Name == n {
			ops = append(ops, store.Op{Type: store.OpDelete, Key: PrefixWorkers + w.ID})
		}
	}
	if len(ops) == 0 {
		return nil, apierr.NotFound("no scanner worker named %q", n)
	}
	if _, err := m.st.Txn(c.Request.Context(), store.Txn{Ops: ops}); err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusNoContent}, nil
}

// worker authenticates a worker request and returns the scheduler.
func (m *Module) worker(c *gin.Context) (WorkerRecord, *scheduler, error) {
	h := c.GetHeader("Authorization")
	cred, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return WorkerRecord{}, nil, apierr.Unauthorized("a scanner worker request needs Authorization: Bearer %s.<id>.<secret>", workerCredPrefix)
	}
	w, err := m.authenticateWorker(cred)
	if err != nil {
		return WorkerRecord{}, nil, apierr.Unauthorized("%v", err)
	}
	s, err := m.current()
	if err != nil {
		return WorkerRecord{}, nil, apierr.Unavailable("%v; retry", err)
	}
	return w, s, nil
}

func (m *Module) pollJobs(c *gin.Context) (any, error) {
	w, s, err := m.worker(c)
	if err != nil {
		return nil, err
	}
	var req PollRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	if req.Slots < 1 || req.Slots > 1024 || req.Free < 0 || req.Free > req.Slots {
		return nil, apierr.BadRequest("slots", "slots %d and free %d: want 1 <= slots <= 1024 and 0 <= free <= slots", req.Slots, req.Free)
	}
	jobs, err := s.poll(c.Request.Context(), w.ID, w.Name, req)
	if err != nil {
		return nil, err
	}
	if jobs == nil {
		jobs = []Job{}
	}
	return PollResponse{Jobs: jobs}, nil
}

func jobError(err error) error {
	if errors.Is(err, ErrUnknownJob) {
		return apierr.NotFound("%v", err)
	}
	return err
}

func (m *Module) resolveJob(c *gin.Context) (any, error) {
	w, s, err := m.worker(c)
	if err != nil {
		return nil, err
	}
	var req ResolveRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	skip, err := s.resolve(c.Request.Context(), w.Name, c.Param("id"), req.Digest)
	if err != nil {
		return nil, jobError(err)
	}
	return ResolveResponse{Skip: skip}, nil
}

func (m *Module) jobResult(c *gin.Context) (any, error) {
	w, s, err := m.worker(c)
	if err != nil {
		return nil, err
	}
	var body io.Reader = c.Request.Body
	if strings.EqualFold(c.GetHeader("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(c.Request.Body)
		if err != nil {
			return nil, apierr.BadRequest("body", "gzip: %v", err)
		}
		defer zr.Close()
		body = zr
	}
	dec := json.NewDecoder(io.LimitReader(body, MaxResultBytes+1))
	dec.DisallowUnknownFields()
	var res JobResult
	if err := dec.Decode(&res); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, apierr.BadRequest("body", "job result: %v", err)
	}
	if err := s.complete(c.Request.Context(), w.Name, c.Param("id"), res); err != nil {
		return nil, jobError(err)
	}
	return httpapi.Status{Code: http.StatusNoContent}, nil
}
