package admission

import (
	"net/http"

	"github.com/palisade-sec/palisade/remote/admission/verdict"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// OpenAPI implements httpapi.Documented: one Op for every route Routes
// adds.
func (w *Webhook) OpenAPI() []httpapi.Op {
	const tag = "admission"
	return []httpapi.Op{
		{Method: http.MethodGet, Path: "/admission/status", Tag: tag, Summary: "admission settings, rules and verdicts on this replica", Response: Status{}},
		{Method: http.MethodGet, Path: "/admission/events", Tag: tag, Summary: "list admission decisions, newest first", Paged: true,
			Params: []httpapi.Param{
				{Name: "denied", Type: "boolean", Description: "keep denials and monitor-mode would-be denials"},
				{Name: "allowed", Type: "boolean", Description: "keep allowed (true) or refused (false) requests"},
				{Name: "namespace", Description: "keep this namespace"},
				{Name: "rule", Description: "keep the decisions of this rule"},
				{Name: "kind", Description: "keep objects of this kind"},
				{Name: "name", Description: "keep objects whose name contains this, ignoring case"},
				{Name: "image", Description: "keep objects with an image whose reference contains this"},
				{Name: "since", Description: "keep decisions at or after this RFC 3339 time, or within this duration back from now (24h)"},
			}, Response: EventList{}},
		{Method: http.MethodPost, Path: "/admission/test", Tag: tag, Summary: "dry-run Kubernetes objects through admission",
			Body: TestRequest{}, Response: TestResponse{}},
		{Method: http.MethodGet, Path: "/scan/results/:digest", Tag: tag, Summary: "the stored scan verdict of an image digest", Response: verdict.Verdict{}},
		{Method: http.MethodPut, Path: "/scan/results/:digest", Tag: tag, Summary: "store a scan verdict for an image digest (from an external scanner)",
			Body: verdict.Verdict{}, Response: verdict.Verdict{}},
		{Method: http.MethodDelete, Path: "/scan/results/:digest", Tag: tag, Summary: "delete a stored scan verdict", Status: http.StatusNoContent},
	}
}
