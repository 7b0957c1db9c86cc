package admit

import (
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

func ptr[T any](v T) *T { return &v }

func basePod() *Request {
	return &Request{
		Kind: "Pod", Name: "web", Namespace: "demo",
		Labels:      map[string]string{"app": "web", "team": "payments"},
		Annotations: map[string]string{"owner": "alice"},
		RunAsUser:   ptr(int64(1000)),
		Containers: []Container{{
			Name: "app", Image: "quay.io/acme/web:1.2",
			AllowPrivilegeEscalation: ptr(false),
			CPULimit:                 "500m", MemoryLimit: "256Mi",
			Env: []EnvVar{{Name: "LOG_LEVEL", Value: "debug"}},
		}},
	}
}

func baseVerdicts() Verdicts {
	return Verdicts{"quay.io/acme/web:1.2": {Scanned: true, Signed: true, HighCount: 2, HighWithFix: 1, MediumCount: 5, CVENames: []string{"CVE-2024-1111", "CVE-2023-2222"}}}
}

func TestCriteria(t *testing.T) {
	tests := []struct {
		name   string
		crit   policy.AdmissionCriterion
		mutate func(r *Request, v Verdicts)
		want   bool // does the criterion hold
	}{
		// Counts.
		{"critical none", crit("cveCriticalCount", ">", "0"), nil, false},
		{"critical some", crit("cveCriticalCount", ">=", "1"), func(r *Request, v Verdicts) { setV(v, func(x *ImageVerdict) { x.CriticalCount = 1 }) }, true},
		{"critical with fix", crit("cveCriticalWithFixCount", ">", "0"), func(r *Request, v Verdicts) { setV(v, func(x *ImageVerdict) { x.CriticalWithFix = 3 }) }, true},
		{"high count >", crit("cveHighCount", ">", "1"), nil, true},
		{"high count > equal", crit("cveHighCount", ">", "2"), nil, false},
		{"high count =", crit("cveHighCount", "=", "2"), nil, true},
		{"high count !=", crit("cveHighCount", "!=", "2"), nil, false},
		{"high count <", crit("cveHighCount", "<", "3"), nil, true},
		{"high count <=", crit("cveHighCount", "<=", "1"), nil, false},
		{"high with fix", crit("cveHighWithFixCount", ">=", "1"), nil, true},
		{"medium", crit("cveMediumCount", ">", "4"), nil, true},
		{"medium with fix", crit("cveMediumWithFixCount", ">", "0"), nil, false},
		{"unscanned image has no counts", crit("cveHighCount", ">", "0"), func(r *Request, v Verdicts) { delete(v, "quay.io/acme/web:1.2") }, false},
		// CVE names.
		{"cve names any", crit("cveNames", "containsAny", "CVE-2024-1111, CVE-2020-1"), nil, true},
		{"cve names any miss", crit("cveNames", "containsAny", "CVE-2020-1"), nil, false},
		{"cve names all", crit("cveNames", "containsAll", "CVE-2024-1111,CVE-2023-2222"), nil, true},
		{"cve names all miss", crit("cveNames", "containsAll", "CVE-2024-1111,CVE-2020-1"), nil, false},
		{"cve names none", crit("cveNames", "notContainsAny", "CVE-2020-1"), nil, true},
		{"cve names wildcard", crit("cveNames", "containsAny", "CVE-2024-*"), nil, true},
		{"cve names other than", crit("cveNames", "containsOtherThan", "CVE-2024-1111"), nil, true},
		{"cve names no other", crit("cveNames", "containsOtherThan", "CVE-2024-1111,CVE-2023-2222"), nil, false},
		// Scan and signature.
		{"scanned", crit("imageScanned", "=", "true"), nil, true},
		{"not scanned", crit("imageScanned", "=", "false"), func(r *Request, v Verdicts) { delete(v, "quay.io/acme/web:1.2") }, true},
		{"signed", crit("imageSigned", "=", "false"), nil, false},
		{"unsigned", crit("imageSigned", "!=", "true"), func(r *Request, v Verdicts) { setV(v, func(x *ImageVerdict) { x.Signed = false }) }, true},
		// Security context.
		{"non-root user", crit("runAsRoot", "=", "true"), nil, false},
		{"container uid 0 overrides pod", crit("runAsRoot", "=", "true"), func(r *Request, v Verdicts) { r.Containers[0].RunAsUser = ptr(int64(0)) }, true},
		{"unset user and unknown image user is root", crit("runAsRoot", "=", "true"), func(r *Request, v Verdicts) { r.RunAsUser = nil }, true},
		{"runAsNonRoot", crit("runAsRoot", "=", "true"), func(r *Request, v Verdicts) { r.RunAsUser, r.RunAsNonRoot = nil, ptr(true) }, false},
		{"image user", crit("runAsRoot", "=", "true"), func(r *Request, v Verdicts) {
			r.RunAsUser = nil
			setV(v, func(x *ImageVerdict) { x.User = "nginx" })
		}, false},
		{"privileged", crit("runAsPrivileged", "=", "true"), func(r *Request, v Verdicts) { r.Containers[0].Privileged = ptr(true) }, true},
		{"not privileged", crit("runAsPrivileged", "=", "true"), nil, false},
		{"priv escalation off", crit("allowPrivEscalation", "=", "true"), nil, false},
		{"priv escalation default on", crit("allowPrivEscalation", "=", "true"), func(r *Request, v Verdicts) { r.Containers[0].AllowPrivilegeEscalation = nil }, true},
		{"host ipc", crit("shareIpcWithHost", "=", "true"), func(r *Request, v Verdicts) { r.HostIPC = true }, true},
		{"host pid", crit("sharePidWithHost", "=", "true"), func(r *Request, v Verdicts) { r.HostPID = true }, true},
		{"host net", crit("shareNetWithHost", "=", "true"), func(r *Request, v Verdicts) { r.HostNetwork = true }, true},
		{"no host net", crit("shareNetWithHost", "=", "true"), nil, false},
		// Env secrets.
		{"no secrets", crit("envVarSecrets", "=", "true"), nil, false},
		{"password literal", crit("envVarSecrets", "=", "true"), func(r *Request, v Verdicts) {
			r.Containers[0].Env = append(r.Containers[0].Env, EnvVar{Name: "DB_PASSWORD", Value: "hunter2hunter2"})
		}, true},
		{"password from secret", crit("envVarSecrets", "=", "true"), func(r *Request, v Verdicts) {
			r.Containers[0].Env = append(r.Containers[0].Env, EnvVar{Name: "DB_PASSWORD", FromRef: true})
		}, false},
		{"aws key value", crit("envVarSecrets", "=", "true"), func(r *Request, v Verdicts) {
			r.Containers[0].Env = append(r.Containers[0].Env, EnvVar{Name: "X", Value: "AKIAABCDEFGHIJKLMNOP"})
		}, true},
		{"private key value", crit("envVarSecrets", "=", "true"), func(r *Request, v Verdicts) {
			r.Containers[0].Env = append(r.Containers[0].Env, EnvVar{Name: "CERT", Value: "-----BEGIN RSA PRIVATE KEY-----\nMII..."})
		}, true},
		// Resource limits.
		{"limits set", crit("resourceLimit", "=", "false"), nil, false},
		{"memory limit missing", crit("resourceLimit", "=", "false"), func(r *Request, v Verdicts) { r.Containers[0].MemoryLimit = "" }, true},
		// Pod metadata.
		{"namespace any", crit("namespace", "containsAny", "prod,demo"), nil, true},
		{"namespace none", crit("namespace", "notContainsAny", "prod,demo"), nil, false},
		{"namespace equal wildcard", crit("namespace", "=", "de*"), nil, true},
		{"namespace not equal", crit("namespace", "!=", "demo"), nil, false},
		{"namespace regex", crit("namespace", "regex", "^d[a-z]+$"), nil, true},
		{"namespace !regex", crit("namespace", "!regex", "^kube-"), nil, true},
		{"labels key", crit("labels", "containsAny", "app"), nil, true},
		{"labels key value", crit("labels", "containsAny", "app=db"), nil, false},
		{"labels all", crit("labels", "containsAll", "app=web,team=pay*"), nil, true},
		{"labels other than", crit("labels", "containsOtherThan", "app"), nil, true},
		{"labels no other", crit("labels", "containsOtherThan", "app,team"), nil, false},
		{"labels missing", crit("labels", "notContainsAny", "owner"), nil, true},
		{"annotations", crit("annotations", "containsAny", "owner=alice"), nil, true},
		// Image and registry.
		{"image exact", crit("image", "=", "quay.io/acme/web:1.2"), nil, true},
		{"image without tag", crit("image", "containsAny", "acme/web"), nil, true},
		{"image wildcard", crit("image", "containsAny", "quay.io/acme/*"), nil, true},
		{"image other", crit("image", "containsAny", "nginx"), nil, false},
		{"image docker hub short", crit("image", "containsAny", "nginx:1.25"), func(r *Request, v Verdicts) { r.Containers[0].Image = "nginx:1.25" }, true},
		{"image docker hub full", crit("image", "=", "docker.io/library/nginx"), func(r *Request, v Verdicts) { r.Containers[0].Image = "nginx" }, true},
		{"image not", crit("image", "notContainsAny", "nginx"), nil, true},
		{"image regex", crit("image", "regex", `:1\.\d+$`), nil, true},
		{"registry", crit("imageRegistry", "containsAny", "quay.io"), nil, true},
		{"registry not", crit("imageRegistry", "notContainsAny", "quay.io,gcr.io"), nil, false},
		{"registry docker hub", crit("imageRegistry", "=", "docker.io"), func(r *Request, v Verdicts) { r.Containers[0].Image = "redis:7" }, true},
		{"registry from verdict", crit("imageRegistry", "=", "mirror.local"), func(r *Request, v Verdicts) { setV(v, func(x *ImageVerdict) { x.Registry = "mirror.local" }) }, true},
		{"registry localhost with port", crit("imageRegistry", "=", "localhost:5000"), func(r *Request, v Verdicts) { r.Containers[0].Image = "localhost:5000/app:1" }, true},
	}
	for _, tt := range tests {
		req, v := basePod(), baseVerdicts()
		if tt.mutate != nil {
			tt.mutate(req, v)
		}
		rules := []policy.AdmissionRule{{Meta: policy.Meta{Name: "r", Source: policy.SourceUser}, Action: policy.ActionDeny, Criteria: []policy.AdmissionCriterion{tt.crit}}}
		d, err := Evaluate(rules, policy.AdmissionSettings{Enabled: true, Mode: policy.ModeProtect}, req, v)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := !d.Allowed; got != tt.want {
			t.Errorf("%s: criterion %s %s %q held = %v, want %v (%s)", tt.name, tt.crit.Name, tt.crit.Op, tt.crit.Value, got, tt.want, d.Message)
		}
	}
}

func crit(name, op, value string) policy.AdmissionCriterion {
	return policy.AdmissionCriterion{Name: name, Op: op, Value: value}
}

func setV(v Verdicts, f func(*ImageVerdict)) {
	x := v["quay.io/acme/web:1.2"]
	f(&x)
	v["quay.io/acme/web:1.2"] = x
}

func TestOrderAndModes(t *testing.T) {
	r := func(name string, src policy.Source, a policy.Action, cs ...policy.AdmissionCriterion) policy.AdmissionRule {
		m := policy.Meta{Name: name, Source: src}
		if src == policy.SourceFederated {
			m.Revision = 1
		}
		return policy.AdmissionRule{Meta: m, Action: a, Criteria: cs}
	}
	highs := crit("cveHighCount", ">", "0")
	inDemo := crit("namespace", "=", "demo")
	tests := []struct {
		name     string
		rules    []policy.AdmissionRule
		settings policy.AdmissionSettings
		want     bool
		wantRule string
		wantMsg  string
	}{
		{"no rules", nil, policy.AdmissionSettings{Enabled: true}, true, "", "no admission rule matched"},
		{"disabled", []policy.AdmissionRule{r("d", policy.SourceUser, policy.ActionDeny, highs)}, policy.AdmissionSettings{}, true, "", "disabled"},
		{"deny", []policy.AdmissionRule{r("d", policy.SourceUser, policy.ActionDeny, highs)}, policy.AdmissionSettings{Enabled: true}, false, "d", `denied by admission rule "d" (cveHighCount > 0; container "app" image "quay.io/acme/web:1.2")`},
		{"monitor", []policy.AdmissionRule{r("d", policy.SourceUser, policy.ActionDeny, highs)}, policy.AdmissionSettings{Enabled: true, Mode: policy.ModeMonitor}, true, "d", "allowed in monitor mode"},
		{"user allow exception before user deny", []policy.AdmissionRule{r("d", policy.SourceUser, policy.ActionDeny, highs), r("z-allow", policy.SourceUser, policy.ActionAllow, inDemo)}, policy.AdmissionSettings{Enabled: true}, true, "z-allow", "allowed by"},
		{"federated deny before code allow", []policy.AdmissionRule{r("code-allow", policy.SourceCode, policy.ActionAllow, inDemo), r("fed-deny", policy.SourceFederated, policy.ActionDeny, highs)}, policy.AdmissionSettings{Enabled: true}, false, "fed-deny", "denied"},
		{"federated allow before federated deny", []policy.AdmissionRule{r("fed-deny", policy.SourceFederated, policy.ActionDeny, highs), r("fed-allow", policy.SourceFederated, policy.ActionAllow, inDemo)}, policy.AdmissionSettings{Enabled: true}, true, "fed-allow", "allowed"},
		{"code deny before user allow", []policy.AdmissionRule{r("user-allow", policy.SourceUser, policy.ActionAllow, inDemo), r("code-deny", policy.SourceCode, policy.ActionDeny, highs)}, policy.AdmissionSettings{Enabled: true}, false, "code-deny", "denied"},
		{"all criteria must hold", []policy.AdmissionRule{r("d", policy.SourceUser, policy.ActionDeny, highs, crit("namespace", "=", "prod"))}, policy.AdmissionSettings{Enabled: true}, true, "", "no admission rule matched"},
		{"disabled rule", []policy.AdmissionRule{{Meta: policy.Meta{Name: "d", Source: policy.SourceUser}, Action: policy.ActionDeny, Disabled: true, Criteria: []policy.AdmissionCriterion{highs}}}, policy.AdmissionSettings{Enabled: true}, true, "", "no admission rule matched"},
	}
	for _, tt := range tests {
		d, err := Evaluate(tt.rules, tt.settings, basePod(), baseVerdicts())
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if d.Allowed != tt.want || d.Rule != tt.wantRule || !strings.Contains(d.Message, tt.wantMsg) {
			t.Errorf("%s: got %+v, want allowed=%v rule=%q message containing %q", tt.name, d, tt.want, tt.wantRule, tt.wantMsg)
		}
	}
}

func TestContainerKinds(t *testing.T) {
	req := basePod()
	req.InitContainers = []Container{{Name: "init", Image: "busybox", Privileged: ptr(true)}}
	priv := crit("runAsPrivileged", "=", "true")
	for _, tt := range []struct {
		kinds []policy.ContainerKind
		want  bool
	}{
		{nil, false},
		{[]policy.ContainerKind{policy.ContainersMain}, true},
		{[]policy.ContainerKind{policy.ContainersInit}, false},
		{[]policy.ContainerKind{policy.ContainersEphemeral}, true},
	} {
		rules := []policy.AdmissionRule{{Meta: policy.Meta{Name: "p", Source: policy.SourceUser}, Action: policy.ActionDeny, Containers: tt.kinds, Criteria: []policy.AdmissionCriterion{priv}}}
		d, _ := Evaluate(rules, policy.AdmissionSettings{Enabled: true}, req, nil)
		if d.Allowed != tt.want {
			t.Errorf("containers %v: allowed = %v, want %v", tt.kinds, d.Allowed, tt.want)
		}
	}
	// Criteria must hold in one container together, not across containers.
	req = basePod()
	req.Containers = append(req.Containers, Container{Name: "side", Image: "envoy", Privileged: ptr(true), AllowPrivilegeEscalation: ptr(false)})
	rules := []policy.AdmissionRule{{Meta: policy.Meta{Name: "p", Source: policy.SourceUser}, Action: policy.ActionDeny,
		Criteria: []policy.AdmissionCriterion{priv, crit("image", "=", "quay.io/acme/web:1.2")}}}
	if d, _ := Evaluate(rules, policy.AdmissionSettings{Enabled: true}, req, nil); !d.Allowed {
		t.Errorf("criteria matched across two containers: %s", d.Message)
	}
}

func TestNewRejectsBadRules(t *testing.T) {
	for _, c := range []policy.AdmissionCriterion{crit("colour", "=", "x"), crit("cveHighCount", "containsAny", "1"), crit("image", "regex", "(")} {
		_, err := New([]policy.AdmissionRule{{Meta: policy.Meta{Name: "bad", Source: policy.SourceUser}, Action: policy.ActionDeny, Criteria: []policy.AdmissionCriterion{c}}}, policy.AdmissionSettings{Enabled: true})
		if err == nil || !strings.Contains(err.Error(), `admission rule "bad"`) {
			t.Errorf("criterion %+v: err = %v", c, err)
		}
	}
}

func TestParseImage(t *testing.T) {
	for in, want := range map[string]imageRef{
		"nginx":                             {"docker.io", "library/nginx", "", ""},
		"nginx:1.25":                        {"docker.io", "library/nginx", "1.25", ""},
		"acme/web:2":                        {"docker.io", "acme/web", "2", ""},
		"quay.io/acme/web:1.2":              {"quay.io", "acme/web", "1.2", ""},
		"localhost:5000/app":                {"localhost:5000", "app", "", ""},
		"gcr.io/p/app@sha256:abc":           {"gcr.io", "p/app", "", "sha256:abc"},
		"registry.local:443/a/b:c@sha256:d": {"registry.local:443", "a/b", "c", "sha256:d"},
	} {
		if got := parseImage(in); got != want {
			t.Errorf("parseImage(%q) = %+v, want %+v", in, got, want)
		}
	}
}
