// Package admission is a controller's admission webhook: an HTTPS server
// speaking AdmissionReview v1 for pods and workload controllers, deciding
// with the cluster's admission rules (federated first) and the scan verdicts
// of the images by digest, within a deadline, recording every decision as an
// audit event, and keeping its ValidatingWebhookConfiguration registered.
//
// It is a controller module: Routes adds /v1/admission/... and
// /v1/scan/results/... to the API, and Run serves the webhook on its own port
// and keeps rules and verdicts current by watching the store, so nothing on
// the request path reads the store or scans.
//
// Sub-packages: review (the AdmissionReview wire format), verdict (image
// verdicts by digest), digest (tag to digest resolution), audit (decision
// events) and webhookconfig (registration with the API server).
package admission

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/remote/admission/audit"
	"github.com/palisade-sec/palisade/remote/admission/digest"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/admission/webhookconfig"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// Config configures the webhook.
type Config struct {
	// Addr is where the webhook's HTTPS server listens.
	Addr string
	// Replica names this controller replica (audit events, store keys).
	Replica string
	// Timeout is the API server's timeout for the webhook (the
	// configuration's timeoutSeconds); decisions aim to finish in Budget.
	Timeout time.Duration
	// FailurePolicy is webhookconfig.Ignore (admit when no decision can be
	// made in time) or webhookconfig.Fail (deny).
	FailurePolicy string
	// DefaultMode is the mode when no AdmissionRule document sets one.
	DefaultMode policy.Mode
	// MaxInFlight bounds the decisions made at once; the rest wait,
	// within their deadline.
	MaxInFlight int
	// DNSNames and IPs are the subject alternative names of the webhook's
	// certificate (127.0.0.1 and localhost are always added).
	DNSNames []string
	IPs      []net.IP
	// Resolver configures tag-to-digest resolution.
	Resolver digest.Config
	// Audit configures the decision log (Replica and Store are filled in).
	Audit audit.Config
	// Registration, when Kube is set, is the ValidatingWebhookConfiguration
	// kept registered (CABundle is filled in from the cluster CA).
	Registration webhookconfig.Config
	// Kube is the Kubernetes API client; nil disables registration.
	Kube *webhookconfig.Client

	// Store holds rules and verdicts and receives audit events.
	Store *store.Store
	// CA returns the cluster CA that issues the webhook's certificate.
	CA func() *pki.CA
	// Registry, when set, receives the webhook's metrics.
	Registry prometheus.Registerer
	// Logger receives the webhook's logs.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of `palisade controller`.
func DefaultConfig() Config {
	return Config{
		Addr:          "0.0.0.0:20443",
		Timeout:       3 * time.Second,
		FailurePolicy: webhookconfig.Ignore,
		DefaultMode:   policy.ModeProtect,
		MaxInFlight:   256,
		DNSNames:      []string{"palisade-admission", "palisade-admission.palisade", "palisade-admission.palisade.svc", "palisade-admission.palisade.svc.cluster.local"},
		Resolver:      digest.DefaultConfig(),
		Audit:         audit.DefaultConfig(),
		Registration:  webhookconfig.DefaultConfig(),
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("admission: config: --admission-addr %q: %w", c.Addr, err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("admission: config: --admission-addr %q: bad port", c.Addr)
	}
	switch {
	case c.Replica == "":
		return errors.New("admission: config: replica name is empty")
	case c.Timeout < 100*time.Millisecond || c.Timeout > 30*time.Second:
		return fmt.Errorf("admission: config: timeout %v (want 100ms to 30s)", c.Timeout)
	case c.FailurePolicy != webhookconfig.Ignore && c.FailurePolicy != webhookconfig.Fail:
		return fmt.Errorf("admission: config: failure policy %q (want Ignore or Fail)", c.FailurePolicy)
	case c.DefaultMode != policy.ModeMonitor && c.DefaultMode != policy.ModeProtect:
		return fmt.Errorf("admission: config: mode %q (want monitor or protect)", c.DefaultMode)
	case c.MaxInFlight < 1:
		return fmt.Errorf("admission: config: max in flight %d must be at least 1", c.MaxInFlight)
	case c.Store == nil:
		return errors.New("admission: config: no store")
	case c.CA == nil:
		return errors.New("admission: config: no cluster CA")
	}
	if err := c.Resolver.Validate(); err != nil {
		return err
	}
	if c.Kube != nil && (c.Registration.TimeoutSeconds < 1 || time.Duration(c.Registration.TimeoutSeconds)*time.Second != c.Timeout) {
		return fmt.Errorf("admission: config: registered timeout %ds differs from the webhook timeout %v", c.Registration.TimeoutSeconds, c.Timeout)
	}
	return nil
}

// Budget is how long a decision may take: three quarters of the timeout,
// leaving the rest for the network and the API server.
func (c *Config) Budget() time.Duration { return c.Timeout * 3 / 4 }

// Webhook is the admission module.
type Webhook struct {
	cfg      Config
	log      *slog.Logger
	rules    atomic.Pointer[Rules]
	verdicts *verdict.Index
	resolver *digest.Resolver
	audit    *audit.Log
	sem      chan struct{}
	cert     atomic.Pointer[certificate]
	metrics  *metrics
}

// New builds the webhook; Run starts it.
func New(cfg Config) (*Webhook, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	res, err := digest.New(cfg.Resolver)
	if err != nil {
		return nil, err
	}
	acfg := cfg.Audit
	acfg.Replica, acfg.Store, acfg.Logger = cfg.Replica, cfg.Store, cfg.Logger
	al, err := audit.New(acfg)
	if err != nil {
		return nil, err
	}
	w := &Webhook{
		cfg:      cfg,
		log:      cfg.Logger.With(logfields.Component, "admission"),
		verdicts: verdict.NewIndex(),
		resolver: res,
		audit:    al,
		sem:      make(chan struct{}, cfg.MaxInFlight),
		metrics:  newMetrics(cfg.Registry),
	}
	return w, nil
}

type metrics struct {
	latency   *prometheus.HistogramVec
	decisions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "palisade_admission_latency_seconds", Help: "Time from reading an AdmissionReview to answering it.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "palisade_admission_decisions_total", Help: "Admission decisions by outcome and answer.",
		}, []string{"outcome", "allowed"}),
	}
	if reg != nil {
		reg.MustRegister(m.latency, m.decisions)
	}
	return m
}
