// Package review reads and writes Kubernetes AdmissionReview documents
// (admission.k8s.io/v1, and the identical v1beta1): it checks the envelope,
// turns the pod or the pod template of a workload controller into an
// admission request the policy engine understands, and builds the response.
// It depends on no Kubernetes library; unknown fields are ignored, bad input
// is an error naming the field.
package review

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/palisade-sec/palisade/policy/admit"
)

// API versions of AdmissionReview this package speaks.
const (
	V1      = "admission.k8s.io/v1"
	V1beta1 = "admission.k8s.io/v1beta1"
	// Kind is the kind of every review document.
	Kind = "AdmissionReview"
)

// MaxBytes bounds a review document. The API server refuses request bodies
// over 3 MiB, so a review (object and old object) stays well under this.
const MaxBytes = 8 << 20

// Errors of the envelope. Each is wrapped with the detail that names the
// field at fault.
var (
	// ErrMalformed is returned for input that is not a JSON review.
	ErrMalformed = errors.New("review: malformed AdmissionReview")
	// ErrVersion is returned for an apiVersion or kind other than
	// admission.k8s.io/v1 (or v1beta1) AdmissionReview.
	ErrVersion = errors.New("review: unsupported AdmissionReview version")
	// ErrNoUID is returned for a request without a uid.
	ErrNoUID = errors.New("review: request.uid is missing")
	// ErrTooLarge is returned for a review over MaxBytes.
	ErrTooLarge = errors.New("review: AdmissionReview too large")
	// ErrObject is returned for an object that cannot be read as the kind
	// the request names.
	ErrObject = errors.New("review: bad object")
)

// GroupVersionKind names a kind ("apps/v1 Deployment").
type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// String renders "group/version Kind" ("v1 Pod" for the core group).
func (g GroupVersionKind) String() string {
	gv := g.Version
	if g.Group != "" {
		gv = g.Group + "/" + g.Version
	}
	return gv + " " + g.Kind
}

// UserInfo is who made the request.
type UserInfo struct {
	Username string   `json:"username,omitempty"`
	UID      string   `json:"uid,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// Request is the request half of a review.
type Request struct {
	UID         string           `json:"uid"`
	Kind        GroupVersionKind `json:"kind"`
	SubResource string           `json:"subResource,omitempty"`
	Name        string           `json:"name,omitempty"`
	Namespace   string           `json:"namespace,omitempty"`
	Operation   string           `json:"operation"`
	UserInfo    UserInfo         `json:"userInfo"`
	Object      json.RawMessage  `json:"object,omitempty"`
	DryRun      *bool            `json:"dryRun,omitempty"`
}

// Review is a decoded AdmissionReview.
type Review struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Request    *Request `json:"request"`
}

// Decode reads an AdmissionReview and checks its envelope: version, kind,
// a request with a uid, kind and operation. The object is read later by
// [Review.AdmitRequest]. When the envelope is bad but a uid could be read,
// the returned review carries it (for the error response) with the error.
func Decode(data []byte) (*Review, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(data), MaxBytes)
	}
	var rv Review
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&rv); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, jsonProblem(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the review", ErrMalformed)
	}
	if rv.APIVersion != V1 && rv.APIVersion != V1beta1 {
		return &rv, fmt.Errorf("%w: apiVersion %q (want %s)", ErrVersion, rv.APIVersion, V1)
	}
	if rv.Kind != Kind {
		return &rv, fmt.Errorf("%w: kind %q (want %s)", ErrVersion, rv.Kind, Kind)
	}
	if rv.Request == nil {
		return &rv, fmt.Errorf("%w: request is missing", ErrMalformed)
	}
	if rv.Request.UID == "" {
		return &rv, ErrNoUID
	}
	if rv.Request.Kind.Kind == "" || rv.Request.Kind.Version == "" {
		return &rv, fmt.Errorf("%w: request.kind is missing", ErrMalformed)
	}
	if rv.Request.Operation == "" {
		return &rv, fmt.Errorf("%w: request.operation is missing", ErrMalformed)
	}
	return &rv, nil
}

// jsonProblem says where JSON decoding failed, without echoing input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		field := strings.ReplaceAll(te.Field, "podSpec.", "")
		return fmt.Sprintf("field %q: %s where %s was expected", field, te.Value, te.Type)
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	return "invalid JSON"
}

// Subject is what a review asks about.
type Subject int

// The subjects a review can have.
const (
	// Checked is a pod or a workload controller with a pod template.
	Checked Subject = iota
	// Skipped is a request admission has no opinion on: another kind, a
	// delete or connect, another subresource.
	Skipped
)

// supported maps the group and kind of each checked object to where its
// pod template is ("" for a pod itself).
var supported = map[[2]string]string{
	{"", "Pod"}:                   "",
	{"", "ReplicationController"}: "spec.template",
	{"apps", "Deployment"}:        "spec.template",
	{"apps", "StatefulSet"}:       "spec.template",
	{"apps", "DaemonSet"}:         "spec.template",
	{"apps", "ReplicaSet"}:        "spec.template",
	{"batch", "Job"}:              "spec.template",
	{"batch", "CronJob"}:          "spec.jobTemplate.spec.template",
}

// Kinds lists the group and kind of every object admission checks.
func Kinds() [][2]string {
	out := make([][2]string, 0, len(supported))
	for k := range supported {
		out = append(out, k)
	}
	return out
}

// AdmitRequest turns the review's object into an admission request. It
// returns Skipped (and a nil request) for what admission does not check;
// a reason says why. An object that cannot be read is an ErrObject error.
func (rv *Review) AdmitRequest() (*admit.Request, Subject, string, error) {
	r := rv.Request
	switch r.Operation {
	case "CREATE", "UPDATE":
	default:
		return nil, Skipped, "operation " + r.Operation + " is not checked", nil
	}
	if _, ok := supported[[2]string{r.Kind.Group, r.Kind.Kind}]; !ok {
		return nil, Skipped, "kind " + r.Kind.String() + " is not checked", nil
	}
	switch {
	case r.SubResource == "":
	case r.Kind.Kind == "Pod" && r.SubResource == "ephemeralcontainers":
	default:
		return nil, Skipped, "subresource " + r.SubResource + " is not checked", nil
	}
	if len(r.Object) == 0 || string(r.Object) == "null" {
		return nil, Checked, "", fmt.Errorf("%w: request.object is missing", ErrObject)
	}
	req, err := fromObject(r.Kind.Group, r.Kind.Kind, r.Object)
	if err != nil {
		return nil, Checked, "", err
	}
	req.Name = firstNonEmpty(req.Name, r.Name)
	req.Namespace = firstNonEmpty(r.Namespace, req.Namespace)
	return req, Checked, "", nil
}

// FromObject reads a Kubernetes object (JSON, as kubectl would send it) of
// a checked kind into an admission request, for dry runs without an API
// server. Objects of other kinds are Skipped with a reason.
func FromObject(data []byte) (*admit.Request, Subject, string, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, Checked, "", fmt.Errorf("%w: %s", ErrObject, jsonProblem(err))
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, Checked, "", fmt.Errorf("%w: apiVersion and kind are required", ErrObject)
	}
	group, _, ok := strings.Cut(tm.APIVersion, "/")
	if !ok {
		group = ""
	}
	if _, ok := supported[[2]string{group, tm.Kind}]; !ok {
		return nil, Skipped, "kind " + tm.APIVersion + " " + tm.Kind + " is not checked", nil
	}
	req, err := fromObject(group, tm.Kind, data)
	return req, Checked, "", err
}

func fromObject(group, kind string, data []byte) (*admit.Request, error) {
	path := supported[[2]string{group, kind}]
	var obj object
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("%w: %s %s", ErrObject, kind, jsonProblem(err))
	}
	var tmpl *podTemplate
	switch path {
	case "":
		tmpl = &podTemplate{Metadata: obj.Metadata, Spec: obj.Spec.podSpec}
	case "spec.template":
		tmpl = obj.Spec.Template
	default:
		if jt := obj.Spec.JobTemplate; jt != nil {
			tmpl = jt.Spec.Template
		}
	}
	if tmpl == nil {
		return nil, fmt.Errorf("%w: %s has no %s", ErrObject, kind, path)
	}
	req, err := tmpl.admitRequest()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrObject, kind, err)
	}
	req.Kind = kind
	req.Name = firstNonEmpty(obj.Metadata.Name, obj.Metadata.GenerateName)
	req.Namespace = obj.Metadata.Namespace
	return req, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// The object model: only the fields admission looks at.

type meta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
}

type object struct {
	Metadata meta    `json:"metadata"`
	Spec     objSpec `json:"spec"`
}

// objSpec is a pod spec or a controller spec: both decode into it.
type objSpec struct {
	podSpec
	Template    *podTemplate `json:"template"`
	JobTemplate *struct {
		Spec struct {
			Template *podTemplate `json:"template"`
		} `json:"spec"`
	} `json:"jobTemplate"`
}

type podTemplate struct {
	Metadata meta    `json:"metadata"`
	Spec     podSpec `json:"spec"`
}

type podSpec struct {
	HostNetwork         bool             `json:"hostNetwork"`
	HostPID             bool             `json:"hostPID"`
	HostIPC             bool             `json:"hostIPC"`
	SecurityContext     *securityContext `json:"securityContext"`
	Containers          []container      `json:"containers"`
	InitContainers      []container      `json:"initContainers"`
	EphemeralContainers []container      `json:"ephemeralContainers"`
}

type securityContext struct {
	Privileged               *bool  `json:"privileged"`
	AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
	RunAsUser                *int64 `json:"runAsUser"`
	RunAsNonRoot             *bool  `json:"runAsNonRoot"`
}

type container struct {
	Name            string           `json:"name"`
	Image           string           `json:"image"`
	SecurityContext *securityContext `json:"securityContext"`
	Env             []struct {
		Name      string          `json:"name"`
		Value     string          `json:"value"`
		ValueFrom json.RawMessage `json:"valueFrom"`
	} `json:"env"`
	Resources struct {
		Limits map[string]quantity `json:"limits"`
	} `json:"resources"`
}

// quantity is a resource quantity as JSON writes it: a string ("500m") or,
// from hand-written input, a number.
type quantity string

func (q *quantity) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*q = quantity(s)
		return nil
	}
	if string(b) == "null" {
		*q = ""
		return nil
	}
	if _, err := strconv.ParseFloat(string(b), 64); err != nil {
		return &json.UnmarshalTypeError{Value: "non-numeric value", Type: reflect.TypeFor[string]()}
	}
	*q = quantity(b)
	return nil
}

// MaxContainers bounds the containers of one pod (of each kind); the API
// server's own validation allows far fewer in practice.
const MaxContainers = 1000

func (t *podTemplate) admitRequest() (*admit.Request, error) {
	s := &t.Spec
	req := &admit.Request{
		Labels:      t.Metadata.Labels,
		Annotations: t.Metadata.Annotations,
		HostNetwork: s.HostNetwork,
		HostPID:     s.HostPID,
		HostIPC:     s.HostIPC,
	}
	if sc := s.SecurityContext; sc != nil {
		req.RunAsUser, req.RunAsNonRoot = sc.RunAsUser, sc.RunAsNonRoot
	}
	for _, l := range []struct {
		field string
		in    []container
		out   *[]admit.Container
	}{
		{"containers", s.Containers, &req.Containers},
		{"initContainers", s.InitContainers, &req.InitContainers},
		{"ephemeralContainers", s.EphemeralContainers, &req.EphemeralContainers},
	} {
		if len(l.in) > MaxContainers {
			return nil, fmt.Errorf("spec.%s: %d containers (limit %d)", l.field, len(l.in), MaxContainers)
		}
		for i, c := range l.in {
			if c.Image == "" {
				return nil, fmt.Errorf("spec.%s[%d] (%q): image is empty", l.field, i, c.Name)
			}
			*l.out = append(*l.out, c.admit())
		}
	}
	if len(req.Containers) == 0 {
		return nil, errors.New("spec.containers is empty")
	}
	return req, nil
}

func (c *container) admit() admit.Container {
	out := admit.Container{Name: c.Name, Image: c.Image}
	if sc := c.SecurityContext; sc != nil {
		out.Privileged = sc.Privileged
		out.AllowPrivilegeEscalation = sc.AllowPrivilegeEscalation
		out.RunAsUser = sc.RunAsUser
		out.RunAsNonRoot = sc.RunAsNonRoot
	}
	for _, e := range c.Env {
		out.Env = append(out.Env, admit.EnvVar{Name: e.Name, Value: e.Value, FromRef: len(e.ValueFrom) > 0 && string(e.ValueFrom) != "null"})
	}
	out.CPULimit = string(c.Resources.Limits["cpu"])
	out.MemoryLimit = string(c.Resources.Limits["memory"])
	return out
}
