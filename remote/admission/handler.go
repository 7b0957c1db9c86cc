package admission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-sec/palisade/policy/admit"
	"github.com/palisade-sec/palisade/remote/admission/audit"
	"github.com/palisade-sec/palisade/remote/admission/digest"
	"github.com/palisade-sec/palisade/remote/admission/review"
	"github.com/palisade-sec/palisade/remote/admission/webhookconfig"
)

// PathValidate is where the API server sends reviews.
const PathValidate = "/validate"

// Handler returns the webhook's HTTP handler (the HTTPS server's, exposed
// for tests and benchmarks).
func (w *Webhook) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathValidate, w.serveReview)
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) {
		if w.rules.Load() == nil {
			http.Error(rw, "rules not loaded", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(rw, "ok\n")
	})
	return mux
}

// reply writes a review reply with an HTTP status.
func reply(rw http.ResponseWriter, code int, r *review.Reply) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	rw.Write(r.Marshal())
}

func (w *Webhook) serveReview(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ev := audit.Event{Time: start}
	finish := func(code int, rv *review.Review, allowed bool, msg string, warnings []string) {
		out := review.NewReply(rv, allowed, msg)
		out.Response.Warnings = warnings
		if code != http.StatusOK && out.Response.Status != nil {
			out.Response.Status.Code, out.Response.Status.Reason = code, strings.ReplaceAll(http.StatusText(code), " ", "")
		}
		reply(rw, code, out)
		ev.Allowed = allowed
		if ev.Message == "" {
			ev.Message = msg
		}
		lat := time.Since(start)
		ev.LatencyMicros = lat.Microseconds()
		w.audit.Record(ev)
		w.metrics.latency.WithLabelValues(string(ev.Outcome)).Observe(lat.Seconds())
		w.metrics.decisions.WithLabelValues(string(ev.Outcome), strconv.FormatBool(allowed)).Inc()
	}
	if r.Method != http.MethodPost {
		ev.Outcome = audit.Invalid
		rw.Header().Set("Allow", http.MethodPost)
		finish(http.StatusMethodNotAllowed, nil, false, "admission: method "+r.Method+" not allowed; POST an AdmissionReview", nil)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, review.MaxBytes))
	if err != nil {
		ev.Outcome = audit.Invalid
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			finish(http.StatusRequestEntityTooLarge, nil, false, fmt.Sprintf("admission: %v: over %d bytes", review.ErrTooLarge, review.MaxBytes), nil)
			return
		}
		finish(http.StatusBadRequest, nil, false, "admission: read request: "+err.Error(), nil)
		return
	}
	rv, err := review.Decode(body)
	if rv != nil && rv.Request != nil {
		ev.UID = rv.Request.UID
	}
	if err != nil {
		ev.Outcome = audit.Invalid
		finish(http.StatusBadRequest, rv, false, "admission: "+err.Error(), nil)
		return
	}
	req := rv.Request
	ev.User, ev.Operation, ev.Kind = req.UserInfo.Username, req.Operation, req.Kind.Kind
	ev.Namespace, ev.Name = req.Namespace, req.Name
	ev.DryRun = req.DryRun != nil && *req.DryRun

	ctx, cancel := context.WithTimeout(r.Context(), w.budget(r))
	defer cancel()
	d := w.decideReview(ctx, rv, &ev)
	var warnings []string
	if ev.WouldDeny {
		warnings = []string{d.Message}
	}
	finish(http.StatusOK, rv, d.Allowed, d.Message, warnings)
}

// budget is the time a decision may take: the configured budget, or less
// when the API server asks for a shorter timeout (?timeout=2s).
func (w *Webhook) budget(r *http.Request) time.Duration {
	b := w.cfg.Budget()
	if t, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && t > 0 && t*3/4 < b {
		b = t * 3 / 4
	}
	return b
}

// failurePolicy answers when no decision could be made.
func (w *Webhook) failurePolicy(ev *audit.Event, outcome audit.Outcome, why string) admit.Decision {
	ev.Outcome = outcome
	if w.cfg.FailurePolicy == webhookconfig.Fail {
		return admit.Decision{Allowed: false, Message: "admission: " + why + "; denied by failure policy Fail"}
	}
	return admit.Decision{Allowed: true, Message: "admission: " + why + "; allowed by failure policy Ignore"}
}

// decideReview decides one decoded review and fills in the audit event.
func (w *Webhook) decideReview(ctx context.Context, rv *review.Review, ev *audit.Event) admit.Decision {
	req, subj, reason, err := rv.AdmitRequest()
	if err != nil {
		return w.failurePolicy(ev, audit.Invalid, err.Error())
	}
	if subj == review.Skipped {
		ev.Outcome = audit.Skipped
		return admit.Decision{Allowed: true, Message: "admission: " + reason}
	}
	ev.Name, ev.Namespace = req.Name, req.Namespace
	ev.Images = images(req)
	rules := w.rules.Load()
	if rules == nil {
		return w.failurePolicy(ev, audit.NotReady, "admission rules are not loaded yet")
	}
	select {
	case w.sem <- struct{}{}:
		defer func() { <-w.sem }()
	case <-ctx.Done():
		return w.failurePolicy(ev, audit.Deadline, "no decision within the deadline (overloaded)")
	}
	verdicts, notes := Verdicts(ctx, w, req)
	if ctx.Err() != nil {
		return w.failurePolicy(ev, audit.Deadline, "no decision within the deadline ("+strings.Join(notes, "; ")+")")
	}
	d := rules.Engine.Evaluate(req, verdicts)
	ev.Outcome, ev.Rule, ev.Mode = audit.Decided, d.Rule, string(d.Mode)
	ev.WouldDeny = rules.wouldDeny(&d)
	if len(notes) > 0 {
		ev.Message = d.Message + " [" + strings.Join(notes, "; ") + "]"
	}
	return d
}

// images lists the distinct images of a request.
func images(req *admit.Request) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range [][]admit.Container{req.Containers, req.InitContainers, req.EphemeralContainers} {
		for _, c := range l {
			if !seen[c.Image] {
				seen[c.Image] = true
				out = append(out, c.Image)
			}
		}
	}
	return out
}

// VerdictSource finds the scan verdict of one image.
type VerdictSource interface {
	// Verdict returns the image's verdict; found is false for an image
	// with no scan result. A non-empty note says why no verdict could be
	// looked up (bad reference, unresolved tag).
	Verdict(ctx context.Context, image string) (v admit.ImageVerdict, found bool, note string)
}

// Verdicts looks up the verdict of every image of req. An image with no
// verdict is left out: the engine counts it as not scanned.
func Verdicts(ctx context.Context, src VerdictSource, req *admit.Request) (admit.Verdicts, []string) {
	out := admit.Verdicts{}
	var notes []string
	for _, img := range images(req) {
		v, found, note := src.Verdict(ctx, img)
		if note != "" {
			notes = append(notes, note)
		}
		if found {
			out[img] = v
		}
	}
	return out, notes
}

// Verdict implements VerdictSource from the store's verdicts: by the
// pinned or resolved digest, else by the reference the image was scanned as.
func (w *Webhook) Verdict(ctx context.Context, image string) (admit.ImageVerdict, bool, string) {
	d, err := w.resolver.Resolve(ctx, image)
	if err == nil {
		if v, ok := w.verdicts.ByDigest(d); ok {
			return v.Admit(), true, ""
		}
		return admit.ImageVerdict{}, false, ""
	}
	note := err.Error()
	if errors.Is(err, digest.ErrBadReference) {
		return admit.ImageVerdict{}, false, note
	}
	if v, ok := w.verdicts.ByRef(image); ok {
		return v.Admit(), true, note + "; used the verdict of the last scan of this reference"
	}
	return admit.ImageVerdict{}, false, note
}
