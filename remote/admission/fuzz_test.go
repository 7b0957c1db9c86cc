package admission

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/remote/admission/review"
)

// FuzzServeReview sends arbitrary bodies to the webhook's handler: every
// answer is a well-formed review reply with a status other than 500, and
// the handler never panics.
func FuzzServeReview(f *testing.F) {
	for _, s := range []string{
		podReview("u1", "shop", containers(vulnImage)),
		podReview("u2", "strict", containers("a@sha256:zz", "UPPER:tag", "")),
		workloadReview("u3", "batch", "CronJob", `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}}}`),
		workloadReview("u4", "apps", "Deployment", `{"spec":{"template":null}}`),
		`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"image":"a","env":[{"name":"PASSWORD","value":"hunter2hunter2"}]}]}}}}`,
		"", "{", "null", "[]", `{"request":{}}`,
	} {
		f.Add([]byte(s))
	}
	e := startTB(f, nil)
	seed(e)
	h := e.w.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathValidate, strings.NewReader(string(body))))
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		var r review.Reply
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Response == nil || r.Kind != review.Kind {
			t.Fatalf("status %d: reply %q is not a review (%v)", rec.Code, rec.Body.Bytes(), err)
		}
		if !r.Response.Allowed && (r.Response.Status == nil || r.Response.Status.Message == "") {
			t.Fatalf("denial without a message: %q", rec.Body.Bytes())
		}
	})
}
