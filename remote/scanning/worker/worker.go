// Package worker is a remote scanner worker (`palisade scanner`): a
// process that enrols with a cluster's controller using a scanner token,
// then takes scan jobs from the leader's scheduler by long-polling the
// controller API over HTTPS, alongside or instead of the controller's
// in-process workers. It lists registries and pulls layers itself (its
// own layer and report cache), and returns inventories, which the
// controller matches against its feed and stores; the controller never
// sees a layer byte. Any controller replica may be given: followers
// proxy to the leader, so the worker follows leader changes.
package worker

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/registryscan/scan"
	"github.com/palisade-sec/palisade/remote/scanning"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/pki"
)

// Log field names.
const (
	logJob        = "job"
	logRef        = "ref"
	logController = "controller"
	logErr        = "err"
)

// ErrRevoked is returned by Run when the controller no longer accepts the
// worker's credential (deleted, or replaced by another enrolment).
var ErrRevoked = errors.New("worker: credential refused by the controller")

// ErrPin is returned when the controller's certificate chain does not hold
// the CA the enrolment token names.
var ErrPin = errors.New("worker: controller not trusted")

// Config configures a worker.
type Config struct {
	// Controllers are controller API addresses (HOST:PORT), tried in turn.
	Controllers []string
	// Token is the enrolment token (`palisade scanner token create`);
	// needed until the worker has enrolled and kept its identity.
	Token string
	// Name names the worker in the cluster.
	Name string
	// Slots is how many jobs run at once.
	Slots int
	// DataDir keeps the worker's identity and its layer and report cache;
	// "" keeps both in memory (the worker enrols again at each start).
	DataDir string
	// Scan tunes the scanner (timeouts, platform, limits); Insecure is set
	// per job.
	Scan scan.Config
	// PollTimeout bounds one poll (the controller answers sooner).
	PollTimeout time.Duration
	// RequestTimeout bounds every other request.
	RequestTimeout time.Duration
	// Heartbeat is how often a worker with every slot busy tells the
	// controller it is alive (keep it well below the controller's worker
	// timeout).
	Heartbeat time.Duration
	// RetryMin and RetryMax bound the wait after a failed request.
	RetryMin, RetryMax time.Duration
	// Logger receives the worker's logs.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of `palisade scanner`.
func DefaultConfig() Config {
	return Config{Slots: 2, Scan: scan.DefaultConfig(), PollTimeout: time.Minute, RequestTimeout: 30 * time.Second,
		Heartbeat: 10 * time.Second, RetryMin: 200 * time.Millisecond, RetryMax: 10 * time.Second}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case len(c.Controllers) == 0:
		return errors.New("worker: config: no controller address")
	case c.Name == "":
		return errors.New("worker: config: name is empty")
	case c.Slots < 1 || c.Slots > 1024:
		return fmt.Errorf("worker: config: slots %d must be from 1 to 1024", c.Slots)
	case c.PollTimeout <= 0 || c.RequestTimeout <= 0 || c.Heartbeat <= 0:
		return fmt.Errorf("worker: config: poll timeout %s, request timeout %s and heartbeat %s must be positive", c.PollTimeout, c.RequestTimeout, c.Heartbeat)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("worker: config: retry min %s and max %s must be positive, min <= max", c.RetryMin, c.RetryMax)
	case c.Logger == nil:
		return errors.New("worker: config: logger is nil")
	}
	for _, a := range c.Controllers {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("worker: config: controller %q: want HOST:PORT: %w", a, err)
		}
	}
	if c.Token != "" {
		if _, err := scanning.ParseWorkerToken(c.Token); err != nil {
			return fmt.Errorf("worker: config: %w", err)
		}
	}
	return c.Scan.Validate()
}

// identity is what the worker keeps of its enrolment.
type identity struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Credential string `json:"credential"`
	CAPEM      string `json:"caPEM"`
}

// Worker is one scanner worker.
type Worker struct {
	cfg              Config
	log              *slog.Logger
	secure, insecure *scan.Scanner

	mu      sync.Mutex
	id      *identity
	client  *http.Client
	ctl     int // index of the controller in use
	running map[string]bool
}

// New builds a worker; Run starts it.
func New(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var cache scan.Cache
	if cfg.DataDir != "" {
		dc, err := scan.NewDirCache(filepath.Join(cfg.DataDir, "cache"))
		if err != nil {
			return nil, fmt.Errorf("worker: cache: %w", err)
		}
		cache = dc
	} else {
		cache = scan.NewMemCache()
	}
	w := &Worker{cfg: cfg, log: cfg.Logger.With("component", "scanner"), running: map[string]bool{}}
	sc := cfg.Scan
	var err error
	sc.Insecure = false
	if w.secure, err = scan.New(sc, nil, cache, w.log); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	sc.Insecure = true
	if w.insecure, err = scan.New(sc, nil, cache, w.log); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}

// Stats returns what the worker pulled and found cached.
func (w *Worker) Stats() scan.Stats {
	a, b := w.secure.Stats(), w.insecure.Stats()
	return scan.Stats{LayersPulled: a.LayersPulled + b.LayersPulled, LayerBytes: a.LayerBytes + b.LayerBytes,
		LayerCacheHits: a.LayerCacheHits + b.LayerCacheHits, ImageCacheHits: a.ImageCacheHits + b.ImageCacheHits}
}

// Run enrols if needed, then takes and runs jobs until ctx ends. It
// returns an error only when the worker cannot go on (no identity and no
// usable token, or its credential was revoked).
func (w *Worker) Run(ctx context.Context) error {
	if err := w.identify(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, w.cfg.Slots)
	freed := make(chan struct{}, w.cfg.Slots)
	retry := w.cfg.RetryMin
	for ctx.Err() == nil {
		req := scanning.PollRequest{Slots: w.cfg.Slots, Free: w.cfg.Slots - len(slots), Running: w.runningIDs()}
		var resp scanning.PollResponse
		pctx, pcancel := context.WithTimeout(ctx, w.cfg.PollTimeout)
		err := w.call(pctx, http.MethodPost, "/v1/scanners/poll", req, &resp, false)
		pcancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ae *apierr.Error
			if errors.As(err, &ae) && ae.Code == apierr.CodeUnauthorized {
				return fmt.Errorf("%w: %v", ErrRevoked, err)
			}
			w.log.Warn("poll controller", logController, w.controller(), logErr, err)
			w.rotate(err)
			if !sleep(ctx, retry) {
				break
			}
			retry = min(2*retry, w.cfg.RetryMax)
			continue
		}
		retry = w.cfg.RetryMin
		for _, j := range resp.Jobs {
			slots <- struct{}{}
			w.setRunning(j.ID, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.runJob(jctx, j)
				w.setRunning(j.ID, false)
				<-slots
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
		}
		if len(slots) == w.cfg.Slots {
			// Every slot is busy: poll again when one frees up, or as a
			// heartbeat (a poll with no free slot returns at once).
			t := time.NewTimer(w.cfg.Heartbeat)
			select {
			case <-freed:
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (w *Worker) runningIDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.running))
	for id := range w.running {
		out = append(out, id)
	}
	return out
}

func (w *Worker) setRunning(id string, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		w.running[id] = true
	} else {
		delete(w.running, id)
	}
}

// runJob runs one job and returns its result to the controller.
func (w *Worker) runJob(ctx context.Context, j scanning.Job) {
	log := w.log.With(logJob, j.ID, logRef, j.Ref)
	log.Info("job started", "kind", j.Kind, "registry", j.Registry, "attempt", j.Attempt)
	sc := w.secure
	if j.Insecure {
		sc = w.insecure
	}
	var res scanning.JobResult
	switch j.Kind {
	case scanning.JobList:
		lctx, cancel := context.WithTimeout(ctx, w.cfg.Scan.ImageTimeout)
		refs, err := scanning.ListRefs(lctx, j.Registry, j.Host, j.Insecure, j.Filter, scanning.RemoteOptions(lctx, w.cfg.Scan, j.Credentials))
		cancel()
		res = scanning.JobResult{Refs: refs}
		if err != nil {
			res = scanning.JobResult{Error: scanning.ExplainAuth(err, j.Registry, j.Credentials != nil).Error()}
		}
	case scanning.JobImage:
		hctx, cancel := context.WithTimeout(ctx, w.cfg.Scan.ImageTimeout)
		res.Digest = scanning.HeadDigest(j.Ref, j.Insecure, scanning.RemoteOptions(hctx, w.cfg.Scan, j.Credentials))
		cancel()
		if res.Digest != "" {
			var rr scanning.ResolveResponse
			err := w.retrying(ctx, func(ctx context.Context) error {
				return w.call(ctx, http.MethodPost, "/v1/scanners/jobs/"+j.ID+"/resolve", scanning.ResolveRequest{Digest: res.Digest}, &rr, false)
			})
			if err != nil {
				log.Warn("resolve digest", logErr, err)
				return
			}
			if rr.Skip {
				log.Debug("image already has a result", "digest", res.Digest)
				return
			}
		}
		reps, err := sc.ScanImageAuth(ctx, j.Ref, j.Credentials.Authenticator())
		if err != nil {
			res.Error = scanning.ExplainAuth(err, j.Registry, j.Credentials != nil).Error()
			log.Warn("scan image", logErr, err)
		} else {
			res.Reports = reps
		}
	default:
		res.Error = fmt.Sprintf("this worker does not know jobs of kind %q", j.Kind)
	}
	if ctx.Err() != nil {
		return
	}
	err := w.retrying(ctx, func(ctx context.Context) error {
		return w.call(ctx, http.MethodPost, "/v1/scanners/jobs/"+j.ID+"/result", res, nil, true)
	})
	if err != nil {
		log.Warn("return job result", logErr, err)
	}
}

// retrying calls f until it succeeds, the controller says the job is
// unknown (a new leader, or the job was counted as lost), or ctx ends.
func (w *Worker) retrying(ctx context.Context, f func(context.Context) error) error {
	d := w.cfg.RetryMin
	for {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
		err := f(rctx)
		cancel()
		var ae *apierr.Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ae) && (ae.Code == apierr.CodeNotFound || ae.Code == apierr.CodeBadRequest || ae.Code == apierr.CodeUnauthorized):
			return err
		}
		w.rotate(err)
		if !sleep(ctx, d) {
			return err
		}
		d = min(2*d, w.cfg.RetryMax)
	}
}

// controller returns the controller address in use.
func (w *Worker) controller() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg.Controllers[w.ctl]
}

// rotate moves to the next controller after a connection failure.
func (w *Worker) rotate(err error) {
	var ae *apierr.Error
	if errors.As(err, &ae) || len(w.cfg.Controllers) == 1 {
		return // the controller answered
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctl = (w.ctl + 1) % len(w.cfg.Controllers)
}

// call sends in as JSON (gzip-compressed with zip) and decodes the answer
// into out; an API error is returned as *apierr.Error.
func (w *Worker) call(ctx context.Context, method, path string, in, out any, zip bool) error {
	var body bytes.Buffer
	if zip {
		zw := gzip.NewWriter(&body)
		if err := json.NewEncoder(zw).Encode(in); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
	} else if err := json.NewEncoder(&body).Encode(in); err != nil {
		return err
	}
	w.mu.Lock()
	client, cred, addr := w.client, w.id.Credential, w.cfg.Controllers[w.ctl]
	w.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if zip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	return do(client, req, out)
}

func do(client *http.Client, req *http.Request, out any) error {
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var ae apierr.Error
		if json.Unmarshal(raw, &ae) != nil || ae.Code == "" {
			return &apierr.Error{Code: apierr.CodeInternal, Message: fmt.Sprintf("HTTP %d from %s %s", resp.StatusCode, req.Method, req.URL.Path)}
		}
		return &ae
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (w *Worker) identityPath() string {
	if w.cfg.DataDir == "" {
		return ""
	}
	return filepath.Join(w.cfg.DataDir, "scanner.json")
}

// identify loads the worker's identity, or enrols with the token.
func (w *Worker) identify(ctx context.Context) error {
	if p := w.identityPath(); p != "" {
		b, err := os.ReadFile(p)
		switch {
		case err == nil:
			var id identity
			if err := json.Unmarshal(b, &id); err != nil {
				return fmt.Errorf("worker: identity %s: %w", p, err)
			}
			if id.Name == w.cfg.Name {
				return w.use(&id)
			}
			w.log.Info("name changed: enrolling again", "was", id.Name)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("worker: identity: %w", err)
		}
	}
	if w.cfg.Token == "" {
		return errors.New("worker: not enrolled: give --token from `palisade scanner token create`")
	}
	tok, _ := scanning.ParseWorkerToken(w.cfg.Token)
	// The first connection trusts the server only if its chain holds the
	// CA the token names.
	pinned := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified by VerifyConnection against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs, tok.CAFingerprint)
		},
	}}}
	defer pinned.CloseIdleConnections()
	d := w.cfg.RetryMin
	for {
		var e scanning.Enrolled
		addr := w.controller()
		body, _ := json.Marshal(scanning.EnrollRequest{Token: w.cfg.Token, Name: w.cfg.Name})
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
		req, err := http.NewRequestWithContext(rctx, http.MethodPost, "https://"+addr+"/v1/scanners/enroll", bytes.NewReader(body))
		if err != nil {
			cancel()
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		err = do(pinned, req, &e)
		cancel()
		if err == nil {
			id := &identity{ID: e.ID, Name: w.cfg.Name, Credential: e.Credential, CAPEM: e.CAPEM}
			if p := w.identityPath(); p != "" {
				b, _ := json.MarshalIndent(id, "", "  ")
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					return fmt.Errorf("worker: identity: %w", err)
				}
				if err := os.WriteFile(p, b, 0o600); err != nil {
					return fmt.Errorf("worker: identity: %w", err)
				}
			}
			w.log.Info("enrolled", logController, addr, "id", e.ID)
			return w.use(id)
		}
		var ae *apierr.Error
		if errors.Is(err, ErrPin) || errors.As(err, &ae) && (ae.Code == apierr.CodeUnauthorized || ae.Code == apierr.CodeBadRequest) {
			return fmt.Errorf("worker: enrol: %w", err)
		}
		w.log.Warn("enrol", logController, addr, logErr, err)
		w.rotate(err)
		if !sleep(ctx, d) {
			return ctx.Err()
		}
		d = min(2*d, w.cfg.RetryMax)
	}
}

// verifyPinned accepts a server whose chain holds the CA with fingerprint
// pin and whose leaf that CA signed.
func verifyPinned(cs tls.ConnectionState, pin string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("worker: server sent no certificate")
	}
	ca := pki.PinnedCA(cs.PeerCertificates, pin)
	if ca == nil {
		return fmt.Errorf("%w: the server's chain does not hold the CA %s… the token names", ErrPin, pin[:12])
	}
	if err := pki.VerifyServer(cs.PeerCertificates, ca, cs.ServerName); err != nil {
		return fmt.Errorf("%w: server certificate: %w", ErrPin, err)
	}
	return nil
}

// use adopts an identity: its credential and the CA it trusts.
func (w *Worker) use(id *identity) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(id.CAPEM)) {
		return errors.New("worker: identity holds no CA certificate")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.id = id
	w.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, ForceAttemptHTTP2: true}}
	return nil
}
