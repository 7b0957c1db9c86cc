package admission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/remote/admission/webhookconfig"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// certValidity is how long the webhook's certificate is valid; it is
// renewed after two thirds of it.
const certValidity = 90 * 24 * time.Hour

type certificate struct {
	tls     tls.Certificate
	renewAt time.Time
}

// issueCert issues the webhook's serving certificate from the cluster CA.
func (w *Webhook) issueCert() error {
	ca := w.cfg.CA()
	if ca == nil {
		return errors.New("admission: cluster CA not available")
	}
	dns := append([]string{"localhost"}, w.cfg.DNSNames...)
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, w.cfg.IPs...)
	leaf, err := ca.Issue(pki.LeafRequest{CommonName: "palisade-admission", DNSNames: dns, IPs: ips, Server: true, Validity: certValidity})
	if err != nil {
		return fmt.Errorf("issue webhook certificate: %w", err)
	}
	tc, err := leaf.TLSCertificate(ca)
	if err != nil {
		return fmt.Errorf("webhook certificate: %w", err)
	}
	w.cert.Store(&certificate{tls: tc, renewAt: time.Now().Add(certValidity * 2 / 3)})
	return nil
}

// Run serves the webhook and keeps rules, verdicts, audit events and the
// registration current until ctx ends. It returns an error when the
// webhook cannot start (certificate, port in use).
func (w *Webhook) Run(ctx context.Context) error {
	if err := w.issueCert(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", w.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admission: listen %s: %w", w.cfg.Addr, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	goRun := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("admission "+name+" stopped", logfields.Error, err)
			}
		})
	}
	goRun("rules", w.followRules)
	goRun("verdicts", func(ctx context.Context) error { return w.followVerdicts(ctx, verdict.PrefixLocal) })
	goRun("federated verdicts", func(ctx context.Context) error { return w.followVerdicts(ctx, verdict.PrefixFederated) })
	goRun("audit", w.audit.Run)
	goRun("certificate renewal", w.renewCert)
	if w.cfg.Kube != nil {
		rc := w.cfg.Registration
		rc.CABundle = w.cfg.CA().CertPEM
		rc.Logger = w.cfg.Logger
		st := w.cfg.Store
		goRun("registration", func(ctx context.Context) error {
			// Register once the rules are loaded, so the first requests
			// find them.
			for w.rules.Load() == nil {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(50 * time.Millisecond):
				}
			}
			return webhookconfig.Run(ctx, w.cfg.Kube, rc, st.IsLeader)
		})
	}

	srv := &http.Server{
		Handler:           w.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       w.cfg.Timeout + 5*time.Second,
		WriteTimeout:      w.cfg.Timeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return &w.cert.Load().tls, nil
			},
		},
		ErrorLog: nil,
	}
	wg.Go(func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	})
	w.log.Info("admission webhook serving", logfields.Address, ln.Addr().String(), "failurePolicy", w.cfg.FailurePolicy, "timeout", w.cfg.Timeout)
	err = srv.ServeTLS(ln, "", "")
	cancel()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admission: serve: %w", err)
}

func (w *Webhook) renewCert(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if time.Now().After(w.cert.Load().renewAt) {
				if err := w.issueCert(); err != nil {
					w.log.Warn("renew webhook certificate", logfields.Error, err)
				}
			}
		}
	}
}

// follow lists prefix, hands the list to onList, then hands every later
// revision's events to onEvents; it lists again when the watch falls behind
// the store's retained history.
func follow(ctx context.Context, st *store.Store, prefix string, onList func([]store.KV, uint64), onEvents func([]store.Event, uint64)) error {
	for {
		kvs, rev := st.List(prefix)
		onList(kvs, rev)
		wt, err := st.Watch(prefix, rev)
		if errors.Is(err, store.ErrCompacted) {
			continue
		}
		if err != nil {
			return fmt.Errorf("watch %s: %w", prefix, err)
		}
		for {
			rev, evs, err := wt.NextRevision(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, store.ErrCompacted) {
				break
			}
			if err != nil {
				return fmt.Errorf("watch %s: %w", prefix, err)
			}
			onEvents(evs, rev)
		}
	}
}

// followRules rebuilds the rules whenever an AdmissionRule document changes
// (either prefix), off the request path.
func (w *Webhook) followRules(ctx context.Context) error {
	var mu sync.Mutex
	rebuild := func() {
		mu.Lock()
		defer mu.Unlock()
		fed, _ := w.cfg.Store.List(PrefixFederatedRules)
		local, rev := w.cfg.Store.List(PrefixRules)
		r := CompileRules(fed, local, w.cfg.DefaultMode)
		r.Revision = rev
		old := w.rules.Swap(r)
		for _, p := range r.Problems {
			w.log.Warn("admission rule left out", logfields.Error, p)
		}
		if old == nil || old.Count != r.Count || old.Settings != r.Settings {
			w.log.Info("admission rules loaded", logfields.Count, r.Count, "mode", string(r.Settings.Mode), "enabled", r.Settings.Enabled, logfields.Revision, rev)
		}
	}
	rebuild()
	var wg sync.WaitGroup
	defer wg.Wait()
	errs := make(chan error, 2)
	for _, p := range []string{PrefixFederatedRules, PrefixRules} {
		wg.Go(func() {
			errs <- follow(ctx, w.cfg.Store, p,
				func([]store.KV, uint64) { rebuild() },
				func([]store.Event, uint64) { rebuild() })
		})
	}
	return errors.Join(<-errs, <-errs)
}

// followVerdicts keeps the verdict index in step with one prefix.
func (w *Webhook) followVerdicts(ctx context.Context, prefix string) error {
	put := func(key string, val []byte) {
		v, err := verdict.Decode(val)
		if err != nil {
			w.log.Warn("skip unreadable scan verdict", "key", key, logfields.Error, err)
			w.verdicts.Delete(key)
			return
		}
		w.verdicts.Put(key, v)
	}
	return follow(ctx, w.cfg.Store, prefix,
		func(kvs []store.KV, _ uint64) {
			w.verdicts.Reset(prefix)
			for _, kv := range kvs {
				put(kv.Key, kv.Value)
			}
		},
		func(evs []store.Event, _ uint64) {
			for _, e := range evs {
				if e.Type == store.EventDelete {
					w.verdicts.Delete(e.Key)
				} else {
					put(e.Key, e.Value)
				}
			}
		})
}
