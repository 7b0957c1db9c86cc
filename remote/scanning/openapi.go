package scanning

import (
	"net/http"

	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// ScanRequested is the body of POST /v1/registries/:name/scan.
type ScanRequested struct {
	Registry string `json:"registry"`
	Status   string `json:"status"`
}

// OpenAPI implements httpapi.Documented: one Op for every route Routes
// adds.
func (m *Module) OpenAPI() []httpapi.Op {
	const tag = "scanning"
	var ops []httpapi.Op
	if m.cfg.ServeResultByDigest {
		ops = append(ops, httpapi.Op{Method: http.MethodGet, Path: "/scan/results/:digest", Tag: tag,
			Summary: "one image's scan result by manifest or index digest", Response: Result{}})
	}
	return append(ops,
		httpapi.Op{Method: http.MethodGet, Path: "/registries", Tag: tag, Summary: "list registries with their last scan", Paged: true,
			Params: []httpapi.Param{
				{Name: "name", Description: "keep registries whose name contains this, ignoring case"},
				{Name: "federated", Type: "boolean", Description: "keep federated (true) or local (false) registries"},
			}, Response: RegistryList{}},
		httpapi.Op{Method: http.MethodPost, Path: "/registries", Tag: tag, Summary: "add a registry to scan on a schedule",
			Body: Registry{}, Status: http.StatusCreated, Response: RegistryInfo{}},
		httpapi.Op{Method: http.MethodGet, Path: "/registries/:name", Tag: tag, Summary: "one registry with its last scan", Response: RegistryInfo{}},
		httpapi.Op{Method: http.MethodDelete, Path: "/registries/:name", Tag: tag, Summary: "stop scanning a registry", Status: http.StatusNoContent},
		httpapi.Op{Method: http.MethodPost, Path: "/registries/:name/scan", Tag: tag, Summary: "scan a registry now",
			Status: http.StatusAccepted, Response: ScanRequested{}},
		httpapi.Op{Method: http.MethodGet, Path: "/scan/results", Tag: tag, Summary: "list scan results, latest scan first", Paged: true,
			Params: []httpapi.Param{
				{Name: "digest", Description: "keep the result of this manifest or index digest"},
				{Name: "ref", Description: "keep the result of the digest this reference was last scanned at"},
				{Name: "image", Description: "keep results whose reference contains this"},
				{Name: "source", Description: "keep results of this origin", Enum: []string{SourceLocal, SourceFederated}},
				{Name: "severity", Description: "keep results with a finding of this severity or worse", Enum: []string{"critical", "high", "medium", "low"}},
			}, Response: ResultList{}},
		httpapi.Op{Method: http.MethodGet, Path: "/scan/failures", Tag: tag, Summary: "list images whose scan failed", Paged: true,
			Params: []httpapi.Param{
				{Name: "registry", Description: "keep failures of this registry"},
				{Name: "image", Description: "keep failures whose reference contains this"},
			}, Response: FailureList{}},
		httpapi.Op{Method: http.MethodGet, Path: "/scan/reports/:digest", Tag: tag,
			Summary: "the full report (packages, findings, secrets) of an image this cluster scanned", Response: report.Report{}},
	)
}
