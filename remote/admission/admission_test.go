package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/remote/admission/audit"
	"github.com/palisade-sec/palisade/remote/admission/review"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/admission/webhookconfig"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

// Digests of the test images.
var (
	vulnDigest  = "sha256:" + strings.Repeat("c1", 32)
	cleanDigest = "sha256:" + strings.Repeat("0a", 32)
	vulnImage   = "registry.example/shop/web@" + vulnDigest
	cleanImage  = "registry.example/shop/web@" + cleanDigest
	otherImage  = "registry.example/shop/unscanned@sha256:" + strings.Repeat("ee", 32)
)

const localRules = `apiVersion: palisade.dev/v1
kind: AdmissionRule
metadata: {name: cluster-admission}
spec:
  rules:
  - name: deny-critical
    action: deny
    criteria: [{name: cveCriticalCount, op: ">", value: "0"}]
  - name: deny-unscanned
    action: deny
    criteria: [{name: imageScanned, op: "=", value: "false"}, {name: namespace, op: "=", value: "strict"}]
  - name: deny-privileged
    action: deny
    criteria: [{name: runAsPrivileged, op: "=", value: "true"}]
  - name: deny-host-pid
    action: deny
    criteria: [{name: sharePidWithHost, op: "=", value: "true"}]
`

// env is a webhook serving over TLS on loopback with a real store.
type env struct {
	t      testing.TB
	st     *store.Store
	w      *Webhook
	url    string
	client *http.Client
	ca     *pki.CA
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func start(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	return startTB(t, mod)
}

func startTB(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	st := storetest.Open(t, "r1")
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Addr, cfg.Replica, cfg.Store, cfg.CA = freeAddr(t), "r1", st, func() *pki.CA { return ca }
	cfg.Resolver.Insecure = true
	if mod != nil {
		mod(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e := &env{t: t, st: st, w: w, url: "https://" + cfg.Addr + PathValidate, ca: ca,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}}
	e.waitFor("rules loaded", func() bool { return w.rules.Load() != nil })
	return e
}

func (e *env) waitFor(what string, ok func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// putRules stores an AdmissionRule document the way the policy store does.
func (e *env) putRules(prefix, docName, yamlDoc string) {
	e.t.Helper()
	b, err := yaml.YAMLToJSON([]byte(yamlDoc))
	if err != nil {
		e.t.Fatal(err)
	}
	rev, err := e.st.Put(context.Background(), prefix+docName, b)
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("rules at revision", func() bool { r := e.w.rules.Load(); return r != nil && r.Revision >= rev })
}

func (e *env) putVerdict(v verdict.Verdict) {
	e.t.Helper()
	b, _ := json.Marshal(v)
	if _, err := e.st.Put(context.Background(), verdict.PrefixLocal+v.Digest, b); err != nil {
		e.t.Fatal(err)
	}
	e.waitFor("verdict indexed", func() bool { _, ok := e.w.verdicts.Get(verdict.PrefixLocal + v.Digest); return ok })
}

// post sends a review and returns the HTTP status and the decoded reply.
func (e *env) post(body string) (int, *review.Reply, []byte) {
	e.t.Helper()
	resp, err := e.client.Post(e.url, "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r review.Reply
	if err := json.Unmarshal(raw, &r); err != nil {
		e.t.Fatalf("status %d: reply is not JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, &r, raw
}

// podReview builds an AdmissionReview v1 of a pod CREATE.
func podReview(uid, ns, spec string) string {
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `",` +
		`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
		`"name":"p-` + uid + `","namespace":"` + ns + `","operation":"CREATE","userInfo":{"username":"alice","groups":["dev"]},` +
		`"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p-` + uid + `","namespace":"` + ns + `"},"spec":` + spec + `}}}`
}

func containers(images ...string) string {
	var cs []string
	for i, img := range images {
		cs = append(cs, fmt.Sprintf(`{"name":"c%d","image":%q}`, i, img))
	}
	return `{"containers":[` + strings.Join(cs, ",") + `]}`
}

func workloadReview(uid, group, kind, object string) string {
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid + `",` +
		`"kind":{"group":"` + group + `","version":"v1","kind":"` + kind + `"},"namespace":"shop","operation":"CREATE",` +
		`"userInfo":{"username":"ci"},"object":` + object + `}}`
}

func seed(e *env) {
	e.putVerdict(verdict.Verdict{Digest: vulnDigest, Critical: 2, CriticalWithFix: 1, High: 3, CVEs: []string{"CVE-2024-3094"}})
	e.putVerdict(verdict.Verdict{Digest: cleanDigest})
	e.putRules(PrefixRules, "cluster-admission", localRules)
}

func TestDecisions(t *testing.T) {
	e := start(t, nil)
	seed(e)
	tmpl := func(spec string) string { return `{"metadata":{"labels":{"app":"x"}},"spec":` + spec + `}` }
	tests := []struct {
		name, body  string
		wantAllowed bool
		wantIn      []string // in the status message
	}{
		{"critical CVEs denied", podReview("u1", "shop", containers(vulnImage)), false,
			[]string{`denied by admission rule "deny-critical"`, "cveCriticalCount > 0", vulnImage}},
		{"clean admitted", podReview("u2", "shop", containers(cleanImage)), true, []string{"no admission rule matched"}},
		{"unscanned admitted where no rule asks", podReview("u3", "shop", containers(otherImage)), true, nil},
		{"unscanned denied", podReview("u4", "strict", containers(otherImage)), false, []string{`"deny-unscanned"`, "imageScanned = false"}},
		{"vulnerable init container", podReview("u5", "shop", `{"initContainers":[{"name":"i","image":"`+vulnImage+`"}],"containers":[{"name":"c","image":"`+cleanImage+`"}]}`), false,
			[]string{`"deny-critical"`, `container "i"`}},
		{"privileged ephemeral container", podReview("u6", "shop", `{"containers":[{"name":"c","image":"`+cleanImage+`"}],"ephemeralContainers":[{"name":"dbg","image":"`+cleanImage+`","securityContext":{"privileged":true}}]}`), false,
			[]string{`"deny-privileged"`, `container "dbg"`}},
		{"host PID", podReview("u7", "shop", `{"hostPID":true,"containers":[{"name":"c","image":"`+cleanImage+`"}]}`), false, []string{`"deny-host-pid"`}},
		{"deployment", workloadReview("u8", "apps", "Deployment", `{"metadata":{"name":"d"},"spec":{"template":`+tmpl(containers(vulnImage))+`}}`), false, []string{`"deny-critical"`}},
		{"statefulset", workloadReview("u9", "apps", "StatefulSet", `{"metadata":{"name":"d"},"spec":{"template":`+tmpl(containers(cleanImage))+`}}`), true, nil},
		{"daemonset", workloadReview("u10", "apps", "DaemonSet", `{"metadata":{"name":"d"},"spec":{"template":`+tmpl(containers(vulnImage))+`}}`), false, []string{`"deny-critical"`}},
		{"replicaset", workloadReview("u11", "apps", "ReplicaSet", `{"metadata":{"name":"d"},"spec":{"template":`+tmpl(containers(vulnImage))+`}}`), false, []string{`"deny-critical"`}},
		{"job", workloadReview("u12", "batch", "Job", `{"metadata":{"name":"d"},"spec":{"template":`+tmpl(containers(vulnImage))+`}}`), false, []string{`"deny-critical"`}},
		{"cronjob", workloadReview("u13", "batch", "CronJob", `{"metadata":{"name":"d"},"spec":{"jobTemplate":{"spec":{"template":`+tmpl(containers(vulnImage))+`}}}}`), false, []string{`"deny-critical"`}},
		{"odd reference is unscanned", podReview("u14", "strict", containers("Registry.Example/UPPER@sha256:nope")), false, []string{`"deny-unscanned"`}},
		{"configmap is not checked", workloadReview("u15", "", "ConfigMap", `{"data":{}}`), true, []string{"kind v1 ConfigMap is not checked"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, r, raw := e.post(tt.body)
			if code != 200 || r.APIVersion != review.V1 || r.Kind != "AdmissionReview" || r.Response == nil {
				t.Fatalf("status %d reply %s", code, raw)
			}
			var uid struct {
				Request struct{ UID string } `json:"request"`
			}
			json.Unmarshal([]byte(tt.body), &uid)
			if r.Response.UID != uid.Request.UID {
				t.Errorf("uid %q, want %q", r.Response.UID, uid.Request.UID)
			}
			if r.Response.Allowed != tt.wantAllowed {
				t.Errorf("allowed = %v, want %v: %s", r.Response.Allowed, tt.wantAllowed, raw)
			}
			msg := ""
			if r.Response.Status != nil {
				msg = r.Response.Status.Message
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
			if !tt.wantAllowed && r.Response.Status.Code != 403 {
				t.Errorf("status code %d, want 403", r.Response.Status.Code)
			}
		})
	}

	// Every decision is an audit event with who, what, which rule and how
	// long it took.
	e.waitFor("audit events", func() bool { l, _ := e.w.audit.List(audit.Filter{Limit: 1000}); return len(l) >= len(tests) })
	evs, _ := e.w.audit.List(audit.Filter{Limit: 1000})
	var found bool
	for _, ev := range evs {
		if ev.UID == "u1" {
			found = true
			if ev.User != "alice" || ev.Allowed || ev.Rule != "deny-critical" || ev.Kind != "Pod" || ev.Namespace != "shop" ||
				ev.Outcome != audit.Decided || ev.LatencyMicros <= 0 || len(ev.Images) != 1 || ev.Replica != "r1" || ev.Mode != "protect" {
				t.Errorf("audit event %+v", ev)
			}
		}
	}
	if !found {
		t.Errorf("no audit event for u1")
	}
}

func TestMonitorMode(t *testing.T) {
	e := start(t, func(c *Config) { c.DefaultMode = policy.ModeMonitor })
	seed(e)
	_, r, raw := e.post(podReview("m1", "shop", containers(vulnImage)))
	if !r.Response.Allowed || len(r.Response.Warnings) != 1 || !strings.Contains(r.Response.Warnings[0], `would be denied by admission rule "deny-critical"`) {
		t.Fatalf("monitor mode reply %s", raw)
	}
	evs, _ := e.w.audit.List(audit.Filter{Denied: true})
	if len(evs) != 1 || !evs[0].WouldDeny || !evs[0].Allowed || evs[0].Mode != "monitor" {
		t.Errorf("audit %+v, want one would-be denial", evs)
	}
	// A document's mode wins over the default.
	e.putRules(PrefixRules, "cluster-admission", strings.Replace(localRules, "spec:\n", "spec:\n  mode: protect\n", 1))
	if _, r, raw := e.post(podReview("m2", "shop", containers(vulnImage))); r.Response.Allowed {
		t.Errorf("protect mode from the document: %s", raw)
	}
}

func TestFederatedFirst(t *testing.T) {
	e := start(t, nil)
	seed(e)
	// The primary allows the "trusted" namespace and switches the cluster to
	// monitor mode; it also redefines deny-host-pid to allow.
	e.putRules(PrefixFederatedRules, "fleet", `apiVersion: palisade.dev/v1
kind: AdmissionRule
metadata: {name: fleet}
spec:
  mode: monitor
  rules:
  - name: allow-trusted
    action: allow
    criteria: [{name: namespace, op: "=", value: "trusted"}]
  - name: deny-host-pid
    action: allow
    criteria: [{name: sharePidWithHost, op: "=", value: "true"}]
`)
	tests := []struct {
		name, body, wantRule string
		wantWarn             bool
	}{
		{"federated allow beats local deny", podReview("f1", "trusted", containers(vulnImage)), "allow-trusted", false},
		{"federated mode monitor", podReview("f2", "shop", containers(vulnImage)), "deny-critical", true},
		{"federated rule shadows local one of the same name", podReview("f3", "shop", `{"hostPID":true,"containers":[{"name":"c","image":"`+cleanImage+`"}]}`), "deny-host-pid", false},
	}
	for _, tt := range tests {
		_, r, raw := e.post(tt.body)
		if !r.Response.Allowed || !strings.Contains(r.Response.Status.Message, `"`+tt.wantRule+`"`) || (len(r.Response.Warnings) > 0) != tt.wantWarn {
			t.Errorf("%s: %s", tt.name, raw)
		}
	}
	st := e.w.rules.Load()
	if st.Settings.Mode != policy.ModeMonitor || st.Count != 5 {
		t.Errorf("settings %+v, %d rules; want monitor and 5 (one local rule shadowed)", st.Settings, st.Count)
	}
	// A broken document is left out and reported; the others still apply.
	if _, err := e.st.Put(context.Background(), PrefixRules+"broken", []byte(`{"apiVersion":"palisade.dev/v1","kind":"AdmissionRule","metadata":{"name":"broken"},"spec":{"rules":[{"name":"x","action":"deny","criteria":[{"name":"nope","op":"=","value":"1"}]}]}}`)); err != nil {
		t.Fatal(err)
	}
	e.waitFor("problem reported", func() bool { return len(e.w.rules.Load().Problems) == 1 })
	if got := e.w.rules.Load().Count; got != 5 {
		t.Errorf("%d rules after a broken document, want 5", got)
	}
}

// testRegistry serves one image at HOST/shop/app:1 from a real in-process
// registry; delay slows every manifest request.
func testRegistry(t *testing.T, delay time.Duration) (host, digest string) {
	t.Helper()
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodHead {
			time.Sleep(delay)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host+"/shop/app:1", name.Insecure)
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return host, d.String()
}

func TestTagResolvedToDigest(t *testing.T) {
	host, d := testRegistry(t, 0)
	e := start(t, nil)
	seed(e)
	e.putVerdict(verdict.Verdict{Digest: d, Critical: 1})
	_, r, raw := e.post(podReview("t1", "shop", containers(host+"/shop/app:1")))
	if r.Response.Allowed || !strings.Contains(r.Response.Status.Message, "deny-critical") {
		t.Errorf("tagged image with a critical verdict: %s", raw)
	}
	// An unknown tag has no digest and so no verdict.
	_, r, raw = e.post(podReview("t2", "strict", containers(host+"/shop/app:2")))
	if r.Response.Allowed || !strings.Contains(r.Response.Status.Message, "deny-unscanned") {
		t.Errorf("unknown tag: %s", raw)
	}
}

func TestDeadlineUsesFailurePolicy(t *testing.T) {
	host, _ := testRegistry(t, 2*time.Second)
	for _, policyName := range []string{webhookconfig.Ignore, webhookconfig.Fail} {
		t.Run(policyName, func(t *testing.T) {
			e := start(t, func(c *Config) {
				c.Timeout, c.FailurePolicy = 400*time.Millisecond, policyName
			})
			seed(e)
			startAt := time.Now()
			code, r, raw := e.post(podReview("d1", "shop", containers(host+"/shop/app:1")))
			took := time.Since(startAt)
			if code != 200 || r.Response.Allowed != (policyName == webhookconfig.Ignore) ||
				!strings.Contains(r.Response.Status.Message, "failure policy "+policyName) {
				t.Errorf("reply %s", raw)
			}
			if took >= 2*time.Second {
				t.Errorf("answered after %v, past the registry's delay", took)
			}
			evs, _ := e.w.audit.List(audit.Filter{})
			if len(evs) != 1 || evs[0].Outcome != audit.Deadline {
				t.Errorf("audit %+v, want a deadline outcome", evs)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	e := start(t, nil)
	seed(e)
	huge := podReview("h1", "shop", `{"containers":[{"name":"c","image":"x","args":["`+strings.Repeat("a", review.MaxBytes)+`"]}]}`)
	tests := []struct {
		name, method, body string
		wantCode           int
		wantAllowed        bool
		wantUID, wantIn    string
	}{
		{"malformed JSON", "POST", `{"apiVersion":`, 400, false, "", "truncated"},
		{"empty", "POST", ``, 400, false, "", "empty body"},
		{"unknown version", "POST", `{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"v2"}}`, 400, false, "v2", "unsupported AdmissionReview version"},
		{"missing uid", "POST", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"version":"v1","kind":"Pod"},"operation":"CREATE"}}`, 400, false, "", "uid is missing"},
		{"huge", "POST", huge, 413, false, "", "too large"},
		{"GET", "GET", "", 405, false, "", "POST an AdmissionReview"},
		{"pod without containers: failure policy", "POST", podReview("b1", "shop", `{"containers":[]}`), 200, true, "b1", "spec.containers is empty; allowed by failure policy Ignore"},
		{"pod spec of wrong type", "POST", podReview("b2", "shop", `{"containers":"nginx"}`), 200, true, "b2", "bad object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.url, strings.NewReader(tt.body))
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var r review.Reply
			if err := json.Unmarshal(raw, &r); err != nil || r.Response == nil {
				t.Fatalf("status %d: body %q is not a review reply", resp.StatusCode, raw)
			}
			if tt.wantCode != 200 && r.Response.Status.Code != tt.wantCode {
				t.Errorf("status.code %d, want %d", r.Response.Status.Code, tt.wantCode)
			}
			if resp.StatusCode != tt.wantCode || r.Response.Allowed != tt.wantAllowed || r.Response.UID != tt.wantUID ||
				r.Response.Status == nil || !strings.Contains(r.Response.Status.Message, tt.wantIn) {
				t.Errorf("status %d reply %s; want %d allowed=%v uid=%q with %q", resp.StatusCode, raw, tt.wantCode, tt.wantAllowed, tt.wantUID, tt.wantIn)
			}
		})
	}
	// The webhook still answers afterwards.
	if _, r, raw := e.post(podReview("ok", "shop", containers(cleanImage))); !r.Response.Allowed {
		t.Errorf("after bad input: %s", raw)
	}
}

// TestConcurrentDecisions runs many reviews at once while rules and
// verdicts change, for the race detector.
func TestConcurrentDecisions(t *testing.T) {
	e := start(t, nil)
	seed(e)
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for i := range 8 {
		wg.Go(func() {
			for j := range 25 {
				img := []string{vulnImage, cleanImage}[(i+j)%2]
				_, r, raw := e.post(podReview(fmt.Sprintf("c%d-%d", i, j), "shop", containers(img)))
				if r.Response.Allowed != (img == cleanImage) {
					errs <- string(raw)
				}
			}
		})
	}
	for i := range 5 {
		e.putVerdict(verdict.Verdict{Digest: "sha256:" + strings.Repeat(fmt.Sprintf("%02x", i+16), 32)})
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Errorf("wrong decision: %s", s)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		c.Replica, c.Store, c.CA = "r1", &store.Store{}, func() *pki.CA { return nil }
		return c
	}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
	}{
		{"addr", func(c *Config) { c.Addr = "nope" }},
		{"port", func(c *Config) { c.Addr = "0.0.0.0:99999" }},
		{"replica", func(c *Config) { c.Replica = "" }},
		{"timeout", func(c *Config) { c.Timeout = time.Minute }},
		{"policy", func(c *Config) { c.FailurePolicy = "ignore" }},
		{"mode", func(c *Config) { c.DefaultMode = policy.ModeDiscover }},
		{"in flight", func(c *Config) { c.MaxInFlight = 0 }},
		{"store", func(c *Config) { c.Store = nil }},
		{"ca", func(c *Config) { c.CA = nil }},
		{"registered timeout", func(c *Config) { c.Kube = &webhookconfig.Client{}; c.Registration.TimeoutSeconds = 5 }},
	} {
		c := base()
		tt.mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
	c := base()
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestCertificate checks the webhook's certificate: issued by the cluster
// CA, valid for 127.0.0.1 and the service names.
func TestCertificate(t *testing.T) {
	e := start(t, nil)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimSuffix(e.url, PathValidate), "https://"))
	for _, sn := range []string{"palisade-admission.palisade.svc", "localhost", host} {
		conn, err := tls.Dial("tcp", net.JoinHostPort(host, port), &tls.Config{RootCAs: e.ca.Pool(), ServerName: sn})
		if err != nil {
			t.Errorf("TLS as %s: %v", sn, err)
			continue
		}
		conn.Close()
	}
	resp, err := e.client.Get(strings.TrimSuffix(e.url, PathValidate) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(b, []byte("ok\n")) {
		t.Errorf("healthz %d %q", resp.StatusCode, b)
	}
}
