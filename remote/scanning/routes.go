package scanning

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/store"
)

// Paging of the module's listings.
const (
	DefaultLimit = httpapi.DefaultLimit
	MaxLimit     = httpapi.MaxLimit
)

// Sources of a result.
const (
	SourceLocal     = "local"
	SourceFederated = "federated"
)

// Result is one image's verdict and where it came from.
type Result struct {
	verdict.Verdict
	// Source is "local" (this cluster scanned it) or "federated" (the
	// primary did).
	Source string `json:"source"`
}

// ResultList is the body of GET /v1/scan/results; Total counts the
// results that match, before paging.
type ResultList = httpapi.List[Result]

// RegistryList is the body of GET /v1/registries.
type RegistryList = httpapi.List[RegistryInfo]

// FailureList is the body of GET /v1/scan/failures.
type FailureList = httpapi.List[Failure]

// Routes adds the registry and scan-result routes. GET, PUT and DELETE of
// /v1/scan/results/:digest belong to the admission module, which serves
// the same stored verdicts; GET is added here only with
// Config.ServeResultByDigest.
func (m *Module) Routes(r httpapi.Routes) {
	if m.cfg.ServeResultByDigest {
		r.Handle(http.MethodGet, "/scan/results/:digest", httpapi.Read, m.getResult)
	}
	r.Handle(http.MethodGet, "/registries", httpapi.Read, m.listRegistries)
	r.Handle(http.MethodPost, "/registries", httpapi.Write, m.addRegistry)
	r.Handle(http.MethodGet, "/registries/:name", httpapi.Read, m.getRegistry)
	r.Handle(http.MethodDelete, "/registries/:name", httpapi.Write, m.deleteRegistry)
	r.Handle(http.MethodPost, "/registries/:name/scan", httpapi.Write, m.requestScan)
	r.Handle(http.MethodGet, "/scan/results", httpapi.Read, m.listResults)
	r.Handle(http.MethodGet, "/scan/failures", httpapi.Read, m.listFailures)
	r.HandleLeader(http.MethodGet, "/scan/reports/:digest", httpapi.Read, m.getReport)
}

func (m *Module) registryInfo(reg Registry) RegistryInfo {
	info := RegistryInfo{Registry: reg}
	if kv, ok, _ := m.st.Get(PrefixStatus + reg.Name); ok {
		var st Status
		if json.Unmarshal(kv.Value, &st) == nil {
			info.Status = &st
		}
	}
	return info
}

func (m *Module) listRegistries(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, DefaultLimit, MaxLimit)
	if err != nil {
		return nil, err
	}
	fed, fedSet, err := httpapi.QueryBool(c, "federated")
	if err != nil {
		return nil, err
	}
	name := c.Query("name")
	kvs, _ := m.st.List(PrefixRegistries)
	all := []RegistryInfo{}
	for _, kv := range kvs {
		var reg Registry
		if json.Unmarshal(kv.Value, &reg) == nil && httpapi.Contains(reg.Name, name) && (!fedSet || reg.Federated == fed) {
			all = append(all, m.registryInfo(reg))
		}
	}
	return httpapi.NewList(all, p), nil
}

func (m *Module) nameParam(c *gin.Context) (Registry, error) {
	n := c.Param("name")
	if !nameRE.MatchString(n) {
		return Registry{}, apierr.BadRequest("name", "registry name %q: want 1-63 lower-case letters, digits, '.', '_' or '-'", n)
	}
	kv, ok, _ := m.st.Get(PrefixRegistries + n)
	if !ok {
		return Registry{}, apierr.NotFound("no registry named %q", n)
	}
	var reg Registry
	if err := json.Unmarshal(kv.Value, &reg); err != nil {
		return Registry{}, apierr.Internal("registry %q is unreadable: %v", n, err)
	}
	return reg, nil
}

func (m *Module) getRegistry(c *gin.Context) (any, error) {
	reg, err := m.nameParam(c)
	if err != nil {
		return nil, err
	}
	return m.registryInfo(reg), nil
}

func (m *Module) addRegistry(c *gin.Context) (any, error) {
	var reg Registry
	if err := httpapi.DecodeJSON(c, &reg); err != nil {
		return nil, err
	}
	if reg.Interval == 0 {
		reg.Interval = Duration(m.cfg.DefaultInterval)
	}
	if err := reg.Validate(m.cfg.MinInterval); err != nil {
		return nil, apierr.BadRequest("", "%v", err)
	}
	if reg.Federated {
		if !auth.Role(httpapi.SessionOf(c).Role).CanWriteFederated() {
			return nil, apierr.Forbidden("a federated registry needs the fedAdmin or admin role")
		}
		if info := clusterinfo.Get(m.st); info.Role != clusterinfo.Primary {
			return nil, apierr.Conflict("cluster %q is %s, not a primary: a federated registry is scanned by the primary (run palisade fed promote first)", info.Name, info.Role)
		}
	}
	reg.CreatedAt = time.Now().UTC()
	b, err := json.Marshal(reg)
	if err != nil {
		return nil, err
	}
	if _, err := m.st.Create(c.Request.Context(), PrefixRegistries+reg.Name, b); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, apierr.Conflict("a registry named %q exists (delete it first)", reg.Name)
		}
		return nil, err
	}
	return httpapi.Status{Code: http.StatusCreated, Body: RegistryInfo{Registry: reg}}, nil
}

func (m *Module) deleteRegistry(c *gin.Context) (any, error) {
	reg, err := m.nameParam(c)
	if err != nil {
		return nil, err
	}
	if reg.Federated && !auth.Role(httpapi.SessionOf(c).Role).CanWriteFederated() {
		return nil, apierr.Forbidden("a federated registry needs the fedAdmin or admin role")
	}
	_, err = m.st.Txn(c.Request.Context(), store.Txn{Ops: []store.Op{
		{Type: store.OpDelete, Key: PrefixRegistries + reg.Name},
		{Type: store.OpDelete, Key: PrefixStatus + reg.Name},
		{Type: store.OpDelete, Key: PrefixRequests + reg.Name},
	}})
	if err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusNoContent}, nil
}

func (m *Module) requestScan(c *gin.Context) (any, error) {
	reg, err := m.nameParam(c)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(map[string]any{"at": time.Now().UTC(), "user": httpapi.SessionOf(c).User})
	if _, err := m.st.Put(c.Request.Context(), PrefixRequests+reg.Name, b); err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusAccepted, Body: ScanRequested{Registry: reg.Name, Status: "requested"}}, nil
}

// Results returns every result this cluster holds, one per image digest:
// its own and the primary's; when both exist the later scan wins, and on
// a tie the primary's.
func (m *Module) Results() []Result {
	byDigest := map[string]Result{}
	for _, src := range []struct{ prefix, name string }{{PrefixResults, SourceLocal}, {PrefixFederated, SourceFederated}} {
		kvs, _ := m.st.List(src.prefix)
		for _, kv := range kvs {
			v, err := verdict.Decode(kv.Value)
			if err != nil {
				continue
			}
			old, ok := byDigest[v.Digest]
			if !ok || v.ScannedAt.After(old.ScannedAt) || (v.ScannedAt.Equal(old.ScannedAt) && src.name == SourceFederated) {
				byDigest[v.Digest] = Result{Verdict: v, Source: src.name}
			}
		}
	}
	out := make([]Result, 0, len(byDigest))
	for _, r := range byDigest {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ScannedAt.Equal(out[j].ScannedAt) {
			return out[i].ScannedAt.After(out[j].ScannedAt)
		}
		return out[i].Digest < out[j].Digest
	})
	return out
}

// ResolveRef returns the digest ref was last scanned at: through the ref
// index, else from the reference a result was scanned as.
func (m *Module) ResolveRef(ref string) (string, bool) {
	norm, err := NormalizeRef(ref)
	if err != nil {
		return "", false
	}
	if kv, ok, _ := m.st.Get(PrefixRefs + norm); ok {
		var e RefEntry
		if json.Unmarshal(kv.Value, &e) == nil && e.Digest != "" {
			return e.Digest, true
		}
	}
	var best Result
	found := false
	for _, r := range m.Results() {
		if n, err := NormalizeRef(r.Ref); err == nil && n == norm && (!found || r.ScannedAt.After(best.ScannedAt)) {
			best, found = r, true
		}
	}
	return best.Digest, found
}

func (m *Module) listResults(c *gin.Context) (any, error) {
	q := c.Request.URL.Query()
	p, err := httpapi.ParsePage(c, DefaultLimit, MaxLimit)
	if err != nil {
		return nil, err
	}
	source, err := httpapi.QueryEnum(c, "source", SourceLocal, SourceFederated)
	if err != nil {
		return nil, err
	}
	severity, err := httpapi.QueryEnum(c, "severity", "critical", "high", "medium", "low")
	if err != nil {
		return nil, err
	}
	image := q.Get("image")
	digest := q.Get("digest")
	if digest != "" && !verdict.ValidDigest(digest) {
		return nil, apierr.BadRequest("digest", "digest %q is not sha256:<64 lower-case hex>", digest)
	}
	if ref := q.Get("ref"); ref != "" {
		if _, err := NormalizeRef(ref); err != nil {
			return nil, apierr.BadRequest("ref", "%v", err)
		}
		d, ok := m.ResolveRef(ref)
		if !ok {
			return httpapi.NewList([]Result{}, p), nil
		}
		digest = d
	}
	all := m.Results()
	if digest != "" {
		all = filterDigest(all, digest)
	}
	all = httpapi.Filter(all, func(r Result) bool {
		return (source == "" || r.Source == source) && httpapi.Contains(r.Ref, image) && atLeast(r.Verdict, severity)
	})
	return httpapi.NewList(all, p), nil
}

// atLeast reports whether v has a finding of severity sev or worse ("" is
// any verdict).
func atLeast(v verdict.Verdict, sev string) bool {
	switch sev {
	case "critical":
		return v.Critical > 0
	case "high":
		return v.Critical+v.High > 0
	case "medium":
		return v.Critical+v.High+v.Medium > 0
	case "low":
		return v.Critical+v.High+v.Medium+v.Low > 0
	}
	return true
}

func (m *Module) getResult(c *gin.Context) (any, error) {
	d := c.Param("digest")
	if !verdict.ValidDigest(d) {
		return nil, apierr.BadRequest("digest", "digest %q is not sha256:<64 lower-case hex>", d)
	}
	rs := filterDigest(m.Results(), d)
	if len(rs) == 0 {
		return nil, apierr.NotFound("no scan result for %s", d)
	}
	return rs[0], nil
}

// getReport returns the full report (packages, findings with fixed
// versions, secrets) of an image this cluster scanned, from the scanning
// leader's cache. Results from the primary carry the verdict only.
func (m *Module) getReport(c *gin.Context) (any, error) {
	d := c.Param("digest")
	if !verdict.ValidDigest(d) {
		return nil, apierr.BadRequest("digest", "digest %q is not sha256:<64 lower-case hex>", d)
	}
	r, ok, err := m.cache.Report(c.Request.Context(), d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierr.NotFound("no full report for %s on this cluster (results from the primary, or scanned by a previous leader, carry the verdict only)", d)
	}
	return r, nil
}

func filterDigest(rs []Result, d string) []Result {
	var out []Result
	for _, r := range rs {
		if r.Digest == d || strings.EqualFold(r.IndexDigest, d) {
			out = append(out, r)
		}
	}
	return out
}

func (m *Module) listFailures(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, DefaultLimit, MaxLimit)
	if err != nil {
		return nil, err
	}
	registry, image := c.Query("registry"), c.Query("image")
	kvs, _ := m.st.List(PrefixFailures)
	all := []Failure{}
	for _, kv := range kvs {
		var f Failure
		if json.Unmarshal(kv.Value, &f) == nil && (registry == "" || f.Registry == registry) && httpapi.Contains(f.Ref, image) {
			all = append(all, f)
		}
	}
	return httpapi.NewList(all, p), nil
}
