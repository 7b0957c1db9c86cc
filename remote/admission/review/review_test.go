package review

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/policy/admit"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func TestAdmitRequest(t *testing.T) {
	tests := []struct {
		file string
		want *admit.Request
	}{
		{"pod.json", &admit.Request{
			Kind: "Pod", Name: "web", Namespace: "shop",
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"team": "a"},
			HostNetwork: true, RunAsUser: ptr(int64(1000)),
			InitContainers: []admit.Container{{Name: "init", Image: "busybox:1.36"}},
			Containers: []admit.Container{{
				Name: "app", Image: "registry.example/shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				Privileged: ptr(true), AllowPrivilegeEscalation: ptr(true), RunAsUser: ptr(int64(0)),
				Env:      []admit.EnvVar{{Name: "DB_PASSWORD", Value: "hunter22"}, {Name: "FROM_SECRET", FromRef: true}},
				CPULimit: "500m", MemoryLimit: "256Mi",
			}},
		}},
		{"cronjob.json", &admit.Request{
			Kind: "CronJob", Name: "backup", Namespace: "ops",
			Labels: map[string]string{"job": "backup"}, HostPID: true,
			Containers: []admit.Container{{Name: "b", Image: "backup:2", CPULimit: "1"}},
		}},
		{"deployment.json", &admit.Request{
			Kind: "Deployment", Name: "api", Namespace: "shop",
			Labels: map[string]string{"app": "api"}, HostIPC: true,
			Containers: []admit.Container{{Name: "api", Image: "ghcr.io/shop/api:v2"}, {Name: "proxy", Image: "envoy:1.30"}},
		}},
		{"ephemeral.json", &admit.Request{
			Kind: "Pod", Name: "web", Namespace: "shop",
			Containers:          []admit.Container{{Name: "app", Image: "web:1"}},
			EphemeralContainers: []admit.Container{{Name: "debugger", Image: "nicolaka/netshoot", Privileged: ptr(true)}},
		}},
	}
	// The same objects as kube-apiserver v1.37.2 sent them to a webhook
	// (defaults filled in, managed fields, options; see testdata/README.md).
	pod := *tests[0].want
	pod.Namespace, pod.Annotations = "default", map[string]string{"team": "shop"}
	cron := *tests[1].want
	cron.Namespace = "default"
	debug := pod
	debug.EphemeralContainers = []admit.Container{{Name: "debugger", Image: "nicolaka/netshoot", Privileged: ptr(true)}}
	for file, want := range map[string]*admit.Request{"apiserver-pod.json": &pod, "apiserver-cronjob.json": &cron, "apiserver-ephemeral.json": &debug} {
		tests = append(tests, struct {
			file string
			want *admit.Request
		}{file, want})
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rv, err := Decode(readTestdata(t, tt.file))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got, subj, reason, err := rv.AdmitRequest()
			if err != nil || subj != Checked {
				t.Fatalf("AdmitRequest: subject %v reason %q err %v", subj, reason, err)
			}
			// kubectl's record of what it applied is left out of the comparison.
			delete(got.Annotations, "kubectl.kubernetes.io/last-applied-configuration")
			if len(got.Annotations) == 0 {
				got.Annotations = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(tt.want)
				t.Errorf("request\n got %s\nwant %s", gj, wj)
			}
		})
	}
}

// review wraps an object in a v1 review of kind k.
func review(uid, group, kind, op, sub, object string) string {
	return `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + uid +
		`","kind":{"group":"` + group + `","version":"v1","kind":"` + kind + `"},"subResource":"` + sub +
		`","namespace":"ns","operation":"` + op + `","userInfo":{"username":"u"},"object":` + object + `}}`
}

const podObj = `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`

func TestWorkloadKinds(t *testing.T) {
	tmpl := `{"metadata":{"labels":{"from":"template"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
	tests := []struct {
		group, kind, object string
	}{
		{"", "Pod", podObj},
		{"", "ReplicationController", `{"metadata":{"name":"p"},"spec":{"template":` + tmpl + `}}`},
		{"apps", "Deployment", `{"metadata":{"name":"p"},"spec":{"template":` + tmpl + `}}`},
		{"apps", "StatefulSet", `{"metadata":{"name":"p"},"spec":{"template":` + tmpl + `}}`},
		{"apps", "DaemonSet", `{"metadata":{"name":"p"},"spec":{"template":` + tmpl + `}}`},
		{"apps", "ReplicaSet", `{"metadata":{"name":"p"},"spec":{"template":` + tmpl + `}}`},
		{"batch", "Job", `{"metadata":{"name":"p"},"spec":{"template":` + tmpl + `}}`},
		{"batch", "CronJob", `{"metadata":{"name":"p"},"spec":{"jobTemplate":{"spec":{"template":` + tmpl + `}}}}`},
	}
	if len(tests) != len(Kinds()) {
		t.Fatalf("test covers %d kinds, package checks %d", len(tests), len(Kinds()))
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			rv, err := Decode([]byte(review("u1", tt.group, tt.kind, "CREATE", "", tt.object)))
			if err != nil {
				t.Fatal(err)
			}
			req, subj, _, err := rv.AdmitRequest()
			if err != nil || subj != Checked {
				t.Fatalf("subject %v err %v", subj, err)
			}
			if req.Kind != tt.kind || req.Name != "p" || req.Namespace != "ns" || len(req.Containers) != 1 || req.Containers[0].Image != "nginx" {
				t.Errorf("got %+v", req)
			}
			if tt.kind != "Pod" && req.Labels["from"] != "template" {
				t.Errorf("labels = %v, want the template's", req.Labels)
			}
		})
	}
}

func TestSkipped(t *testing.T) {
	tests := []struct {
		name, group, kind, op, sub, want string
	}{
		{"delete", "", "Pod", "DELETE", "", "operation DELETE"},
		{"connect", "", "Pod", "CONNECT", "", "operation CONNECT"},
		{"configmap", "", "ConfigMap", "CREATE", "", "kind v1 ConfigMap"},
		{"apps in core group", "", "Deployment", "CREATE", "", "kind v1 Deployment"},
		{"status", "", "Pod", "UPDATE", "status", "subresource status"},
		{"deployment scale", "apps", "Deployment", "UPDATE", "scale", "subresource scale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rv, err := Decode([]byte(review("u1", tt.group, tt.kind, tt.op, tt.sub, podObj)))
			if err != nil {
				t.Fatal(err)
			}
			req, subj, reason, err := rv.AdmitRequest()
			if err != nil || subj != Skipped || req != nil || !strings.Contains(reason, tt.want) {
				t.Errorf("got subject %v reason %q err %v, want Skipped with %q", subj, reason, err, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	big := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":"` + strings.Repeat("a", MaxBytes) + `"}}`
	tests := []struct {
		name, in string
		want     error
		wantUID  string
		detail   string
	}{
		{"empty", "", ErrMalformed, "", "empty body"},
		{"not json", "hello", ErrMalformed, "", "invalid JSON at byte 1"},
		{"truncated", `{"apiVersion":"admission.k8s.io/v1"`, ErrMalformed, "", "truncated"},
		{"array", `[]`, ErrMalformed, "", "array"},
		{"trailing", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"} {}`, ErrMalformed, "", "data after"},
		{"uid not string", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}`, ErrMalformed, "", `"request.uid"`},
		{"v2", `{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"a"}}`, ErrVersion, "a", `"admission.k8s.io/v2"`},
		{"no version", `{"kind":"AdmissionReview","request":{"uid":"a"}}`, ErrVersion, "a", `apiVersion ""`},
		{"wrong kind", `{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"a"}}`, ErrVersion, "a", `kind "Pod"`},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, ErrMalformed, "", "request is missing"},
		{"no uid", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"version":"v1","kind":"Pod"},"operation":"CREATE"}}`, ErrNoUID, "", "uid"},
		{"no kind", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","operation":"CREATE"}}`, ErrMalformed, "a", "request.kind"},
		{"no operation", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","kind":{"version":"v1","kind":"Pod"}}}`, ErrMalformed, "a", "request.operation"},
		{"too large", big, ErrTooLarge, "", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rv, err := Decode([]byte(tt.in))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.detail) {
				t.Fatalf("err = %v, want %v with %q", err, tt.want, tt.detail)
			}
			uid := ""
			if rv != nil && rv.Request != nil {
				uid = rv.Request.UID
			}
			if uid != tt.wantUID {
				t.Errorf("uid = %q, want %q", uid, tt.wantUID)
			}
			// Every error still gets a well-formed reply.
			var back Reply
			if err := json.Unmarshal(NewReply(rv, false, err.Error()).Marshal(), &back); err != nil || back.Response == nil || back.Response.UID != tt.wantUID || back.Kind != Kind {
				t.Errorf("reply %+v, %v", back, err)
			}
		})
	}
}

func TestBadObjects(t *testing.T) {
	tests := []struct {
		name, kind, group, object, want string
	}{
		{"missing", "Pod", "", `null`, "request.object is missing"},
		{"not an object", "Pod", "", `"pod"`, "Pod"},
		{"containers not a list", "Pod", "", `{"spec":{"containers":{}}}`, `"spec.containers"`},
		{"no containers", "Pod", "", `{"spec":{}}`, "spec.containers is empty"},
		{"empty image", "Pod", "", `{"spec":{"containers":[{"name":"c"}]}}`, `spec.containers[0] ("c"): image is empty`},
		{"image not string", "Pod", "", `{"spec":{"containers":[{"name":"c","image":7}]}}`, "image"},
		{"runAsUser overflow", "Pod", "", `{"spec":{"securityContext":{"runAsUser":1e40},"containers":[{"image":"x"}]}}`, "runAsUser"},
		{"bad quantity", "Pod", "", `{"spec":{"containers":[{"image":"x","resources":{"limits":{"cpu":true}}}]}}`, "spec.containers.resources.limits\": non-numeric value"},
		{"deployment without template", "Deployment", "apps", `{"spec":{"replicas":1}}`, "Deployment has no spec.template"},
		{"cronjob without job template", "CronJob", "batch", `{"spec":{}}`, "CronJob has no spec.jobTemplate.spec.template"},
		{"too many containers", "Pod", "", `{"spec":{"containers":[` + strings.TrimSuffix(strings.Repeat(`{"image":"x"},`, MaxContainers+1), ",") + `]}}`, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rv, err := Decode([]byte(review("u", tt.group, tt.kind, "CREATE", "", tt.object)))
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = rv.AdmitRequest()
			if !errors.Is(err, ErrObject) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrObject with %q", err, tt.want)
			}
		})
	}
}

func TestReply(t *testing.T) {
	rv, err := Decode(readTestdata(t, "deployment.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		allowed  bool
		msg      string
		wantCode int
	}{
		{false, `denied by admission rule "no-critical"`, 403},
		{true, "no admission rule matched", 0},
		{true, "", 0},
	}
	for _, tt := range tests {
		var back map[string]any
		if err := json.Unmarshal(NewReply(rv, tt.allowed, tt.msg).Marshal(), &back); err != nil {
			t.Fatal(err)
		}
		if back["apiVersion"] != V1beta1 || back["kind"] != Kind {
			t.Errorf("envelope %v %v, want the request's version", back["apiVersion"], back["kind"])
		}
		resp := back["response"].(map[string]any)
		if resp["uid"] != "d1" || resp["allowed"] != tt.allowed {
			t.Errorf("response %v", resp)
		}
		st, _ := resp["status"].(map[string]any)
		switch {
		case tt.msg == "" && st != nil:
			t.Errorf("status %v, want none", st)
		case tt.msg != "" && (st["message"] != tt.msg || int(asFloat(st["code"])) != tt.wantCode):
			t.Errorf("status %v, want message %q code %d", st, tt.msg, tt.wantCode)
		}
	}
}

func asFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"pod.json", "cronjob.json", "deployment.json", "ephemeral.json", "apiserver-pod.json", "apiserver-cronjob.json", "apiserver-ephemeral.json"} {
		f.Add(readTestdata(f, name))
	}
	for _, s := range []string{
		"", "{}", "null", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
		review("u", "", "Pod", "CREATE", "", `{"spec":{"containers":[{"image":"a@sha256:zz","resources":{"limits":{"cpu":1e999}}}]}}`),
		review("u", "batch", "CronJob", "CREATE", "", `{"spec":{"jobTemplate":{"spec":null}}}`),
		review("u", "apps", "Deployment", "UPDATE", "", `{"spec":{"template":{"spec":{"containers":[null]}}}}`),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rv, err := Decode(data)
		if err == nil {
			if rv.Request == nil || rv.Request.UID == "" {
				t.Fatalf("accepted a review without a uid")
			}
			req, subj, reason, err := rv.AdmitRequest()
			switch {
			case err != nil && req != nil:
				t.Fatalf("request with error %v", err)
			case err == nil && subj == Checked && (req == nil || len(req.Containers) == 0):
				t.Fatalf("checked without containers: %+v", req)
			case subj == Skipped && reason == "":
				t.Fatalf("skipped without a reason")
			}
		}
		out := NewReply(rv, false, "x").Marshal()
		var back Reply
		if err := json.Unmarshal(out, &back); err != nil || back.Response == nil {
			t.Fatalf("reply does not decode: %v", err)
		}
	})
}

func TestFromObject(t *testing.T) {
	tests := []struct {
		name, in string
		subj     Subject
		want     string // image of the first container, or error text
	}{
		{"pod", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},"spec":{"containers":[{"image":"a"}]}}`, Checked, "a"},
		{"job", `{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"p"},"spec":{"template":{"spec":{"containers":[{"image":"b"}]}}}}`, Checked, "b"},
		{"service", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"p"}}`, Skipped, ""},
		{"deployment in wrong group", `{"apiVersion":"extensions/v1beta1","kind":"Deployment"}`, Skipped, ""},
		{"no kind", `{"apiVersion":"v1"}`, Checked, "apiVersion and kind are required"},
		{"not an object", `[1]`, Checked, "array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, subj, reason, err := FromObject([]byte(tt.in))
			switch {
			case subj != tt.subj:
				t.Errorf("subject %v, want %v", subj, tt.subj)
			case subj == Skipped && (reason == "" || req != nil):
				t.Errorf("skipped with reason %q, request %v", reason, req)
			case subj == Checked && err == nil && (req.Containers[0].Image != tt.want || req.Name != "p"):
				t.Errorf("request %+v", req)
			case subj == Checked && err != nil && (!errors.Is(err, ErrObject) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}
