// Package webhookconfig keeps the cluster's ValidatingWebhookConfiguration
// for the admission webhook correct: it builds the desired object (caBundle
// from the cluster CA, timeout, failure policy, system namespaces excluded,
// no side effects) and creates or repairs it through the Kubernetes API,
// using a kubeconfig's credentials or the pod's service account, with plain
// HTTPS and no Kubernetes client library.
package webhookconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"time"

	"github.com/palisade-sec/palisade/shared/logfields"
)

// Failure policies.
const (
	Ignore = "Ignore"
	Fail   = "Fail"
)

// Service names the Kubernetes service in front of the webhook.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Path      string `json:"path,omitempty"`
	Port      int32  `json:"port,omitempty"`
}

// Config describes the registration.
type Config struct {
	// Name is the ValidatingWebhookConfiguration's name.
	Name string
	// WebhookName is the webhook's name (a qualified domain name); kubectl
	// shows it in denials.
	WebhookName string
	// URL is where the API server calls the webhook, when it is not reached
	// through a service (a controller outside the cluster, tests).
	URL string
	// Service is the webhook's service, used when URL is empty.
	Service Service
	// CABundle is the PEM of the CA that signed the webhook's certificate.
	CABundle []byte
	// FailurePolicy is Ignore (admit when the webhook cannot answer) or
	// Fail (deny).
	FailurePolicy string
	// TimeoutSeconds is how long the API server waits for an answer (1-30).
	TimeoutSeconds int32
	// ExcludeNamespaces are never sent to the webhook.
	ExcludeNamespaces []string
	// Interval is how often the object is checked and repaired.
	Interval time.Duration
	// Logger receives what was changed.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: the palisade service, Ignore, 3
// seconds, Kubernetes' own namespaces excluded, checked every 30 seconds.
func DefaultConfig() Config {
	return Config{
		Name:              "palisade-admission",
		WebhookName:       "admission.palisade.dev",
		Service:           Service{Namespace: "palisade", Name: "palisade-admission", Path: "/validate", Port: 443},
		FailurePolicy:     Ignore,
		TimeoutSeconds:    3,
		ExcludeNamespaces: []string{"kube-system", "kube-public", "kube-node-lease", "palisade"},
		Interval:          30 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Name == "" || c.WebhookName == "":
		return errors.New("webhookconfig: config: name and webhook name are required")
	case c.FailurePolicy != Ignore && c.FailurePolicy != Fail:
		return fmt.Errorf("webhookconfig: config: failure policy %q (want Ignore or Fail)", c.FailurePolicy)
	case c.TimeoutSeconds < 1 || c.TimeoutSeconds > 30:
		return fmt.Errorf("webhookconfig: config: timeout %ds (want 1 to 30)", c.TimeoutSeconds)
	case len(c.CABundle) == 0:
		return errors.New("webhookconfig: config: CA bundle is empty")
	case c.Interval <= 0:
		return fmt.Errorf("webhookconfig: config: interval %v must be positive", c.Interval)
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("webhookconfig: config: URL %q must be https://host[:port][/path] without user, query or fragment", c.URL)
		}
	} else if c.Service.Namespace == "" || c.Service.Name == "" {
		return errors.New("webhookconfig: config: give a URL or a service namespace and name")
	}
	return nil
}

// The object, as far as this package writes it. Every field the API server
// would default is set, so a fetched object compares equal to the desired
// one when nothing was changed.

type objectMeta struct {
	Name            string            `json:"name"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
}

// ValidatingWebhookConfiguration is the admissionregistration.k8s.io/v1 kind.
type ValidatingWebhookConfiguration struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Webhooks   []Webhook  `json:"webhooks"`
}

// Webhook is one webhook of the configuration.
type Webhook struct {
	Name                    string           `json:"name"`
	ClientConfig            ClientConfig     `json:"clientConfig"`
	Rules                   []Rule           `json:"rules"`
	FailurePolicy           string           `json:"failurePolicy"`
	MatchPolicy             string           `json:"matchPolicy"`
	NamespaceSelector       *LabelSelector   `json:"namespaceSelector"`
	ObjectSelector          *LabelSelector   `json:"objectSelector"`
	SideEffects             string           `json:"sideEffects"`
	TimeoutSeconds          int32            `json:"timeoutSeconds"`
	AdmissionReviewVersions []string         `json:"admissionReviewVersions"`
	MatchConditions         []MatchCondition `json:"matchConditions,omitempty"`
}

// ClientConfig says how the API server reaches the webhook.
type ClientConfig struct {
	URL      string   `json:"url,omitempty"`
	Service  *Service `json:"service,omitempty"`
	CABundle []byte   `json:"caBundle"`
}

// Rule selects requests by operation and resource.
type Rule struct {
	Operations  []string `json:"operations"`
	APIGroups   []string `json:"apiGroups"`
	APIVersions []string `json:"apiVersions"`
	Resources   []string `json:"resources"`
	Scope       string   `json:"scope"`
}

// LabelSelector selects namespaces or objects by label.
type LabelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels,omitempty"`
	MatchExpressions []Requirement     `json:"matchExpressions,omitempty"`
}

// Requirement is one label selector expression.
type Requirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// MatchCondition is a CEL expression the API server checks before calling.
type MatchCondition struct {
	Name       string `json:"name"`
	Expression string `json:"expression"`
}

// namespaceNameLabel is set by the API server on every namespace.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// Desired builds the configuration the webhook needs.
func Desired(c *Config) *ValidatingWebhookConfiguration {
	cc := ClientConfig{URL: c.URL, CABundle: c.CABundle}
	if c.URL == "" {
		s := c.Service
		if s.Port == 0 {
			s.Port = 443
		}
		cc.Service = &s
	}
	ops := []string{"CREATE", "UPDATE"}
	nsSel := &LabelSelector{}
	if len(c.ExcludeNamespaces) > 0 {
		nsSel.MatchExpressions = []Requirement{{Key: namespaceNameLabel, Operator: "NotIn", Values: c.ExcludeNamespaces}}
	}
	return &ValidatingWebhookConfiguration{
		APIVersion: "admissionregistration.k8s.io/v1",
		Kind:       "ValidatingWebhookConfiguration",
		Metadata:   objectMeta{Name: c.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": "palisade"}},
		Webhooks: []Webhook{{
			Name:         c.WebhookName,
			ClientConfig: cc,
			Rules: []Rule{
				{Operations: ops, APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "pods/ephemeralcontainers", "replicationcontrollers"}, Scope: "Namespaced"},
				{Operations: ops, APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}, Scope: "Namespaced"},
				{Operations: ops, APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"jobs", "cronjobs"}, Scope: "Namespaced"},
			},
			FailurePolicy:     c.FailurePolicy,
			MatchPolicy:       "Equivalent",
			NamespaceSelector: nsSel,
			ObjectSelector:    &LabelSelector{},
			SideEffects:       "None",
			TimeoutSeconds:    c.TimeoutSeconds,
			// Only v1 is offered: every supported API server speaks it.
			AdmissionReviewVersions: []string{"v1"},
			MatchConditions: []MatchCondition{{
				// An update that leaves the spec alone (labels, annotations,
				// finalizers, owner references) cannot change what runs.
				Name:       "spec-changed",
				Expression: "request.operation != 'UPDATE' || request.subResource == 'ephemeralcontainers' || !has(object.spec) || !has(oldObject.spec) || object.spec != oldObject.spec",
			}},
		}},
	}
}

const basePath = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"

// Action says what Reconcile did.
type Action string

// Actions.
const (
	Unchanged Action = "unchanged"
	Created   Action = "created"
	Repaired  Action = "repaired"
)

// Reconcile creates the configuration when it is missing and rewrites it
// when any part this package manages differs.
func Reconcile(ctx context.Context, cl *Client, c *Config) (Action, error) {
	want := Desired(c)
	var have ValidatingWebhookConfiguration
	err := cl.do(ctx, http.MethodGet, basePath+"/"+url.PathEscape(c.Name), nil, &have)
	var se *StatusError
	switch {
	case errors.As(err, &se) && se.Code == http.StatusNotFound:
		if err := cl.do(ctx, http.MethodPost, basePath, want, nil); err != nil {
			return "", fmt.Errorf("create validatingwebhookconfiguration %s: %w", c.Name, err)
		}
		return Created, nil
	case err != nil:
		return "", fmt.Errorf("get validatingwebhookconfiguration %s: %w", c.Name, err)
	}
	if same(want, &have) {
		return Unchanged, nil
	}
	want.Metadata.ResourceVersion = have.Metadata.ResourceVersion
	for k, v := range have.Metadata.Labels {
		if _, ok := want.Metadata.Labels[k]; !ok {
			want.Metadata.Labels[k] = v
		}
	}
	if err := cl.do(ctx, http.MethodPut, basePath+"/"+url.PathEscape(c.Name), want, nil); err != nil {
		return "", fmt.Errorf("repair validatingwebhookconfiguration %s: %w", c.Name, err)
	}
	return Repaired, nil
}

// same compares the parts this package manages, after both went through
// the same JSON encoding.
func same(want, have *ValidatingWebhookConfiguration) bool {
	norm := func(v any) []Webhook {
		b, _ := json.Marshal(v)
		var out ValidatingWebhookConfiguration
		json.Unmarshal(b, &out)
		return out.Webhooks
	}
	if have.Metadata.Labels["app.kubernetes.io/managed-by"] != "palisade" {
		return false
	}
	return reflect.DeepEqual(norm(want), norm(have))
}

// Run reconciles every Interval while isLeader says this replica leads
// (one writer per cluster), until ctx ends.
func Run(ctx context.Context, cl *Client, c Config, isLeader func() bool) error {
	if err := c.Validate(); err != nil {
		return err
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(logfields.Component, "admission-registration")
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	failing := false
	for {
		if isLeader() {
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			act, err := Reconcile(rctx, cl, &c)
			cancel()
			switch {
			case err != nil && ctx.Err() == nil:
				if !failing {
					log.Warn("cannot register admission webhook", "server", cl.Server(), logfields.Error, err)
				}
				failing = true
			case err == nil && act != Unchanged:
				log.Info("admission webhook registered", "action", string(act), "name", c.Name, "failurePolicy", c.FailurePolicy)
				failing = false
			case err == nil:
				failing = false
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
