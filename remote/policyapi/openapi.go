package policyapi

import (
	"net/http"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// OpenAPI implements httpapi.Documented: one Op for every route Routes
// adds.
func (a *API) OpenAPI() []httpapi.Op {
	const tag = "policy"
	dryRun := httpapi.Param{Name: "dryRun", Type: "boolean", Description: "validate and report the changes without storing them"}
	sources := []string{string(policy.SourceFederated), string(policy.SourceCode), string(policy.SourceUser), string(policy.SourceLearned)}
	common := []httpapi.Param{
		{Name: "source", Description: "keep objects of this source", Enum: sources},
		{Name: "group", Description: "keep this group, or rules from or to it"},
		{Name: "name", Description: "keep objects whose name contains this, ignoring case"},
	}
	return []httpapi.Op{
		{Method: http.MethodPost, Path: "/policy/apply", Tag: tag, Summary: "apply policy-as-code YAML documents",
			Params:   []httpapi.Param{dryRun, {Name: "prune", Type: "boolean", Description: "delete code objects the documents no longer name"}},
			BodyType: ContentTypeYAML, Response: policystore.ApplyResult{}},
		{Method: http.MethodPost, Path: "/policy/import-neuvector", Tag: tag, Summary: "import a NeuVector policy export",
			Params: []httpapi.Param{dryRun}, BodyType: ContentTypeYAML, Response: policystore.ApplyResult{}},
		{Method: http.MethodGet, Path: "/policy/export", Tag: tag, Summary: "export the effective policy as YAML documents",
			ResponseType: ContentTypeYAML},
		{Method: http.MethodGet, Path: "/policy", Tag: tag, Summary: "policy revision, object counts, shadowed rules and problems", Response: Status{}},
		{Method: http.MethodGet, Path: "/groups", Tag: tag, Summary: "list groups in source precedence order with their modes", Paged: true,
			Params: append(common,
				httpapi.Param{Name: "mode", Description: "keep groups with this network or process mode",
					Enum: []string{string(policy.ModeDiscover), string(policy.ModeMonitor), string(policy.ModeProtect)}},
				httpapi.Param{Name: "criteria", Description: "keep groups with a criterion (label, namespace, image, address) containing this, ignoring case"}),
			Response: GroupList{}},
		{Method: http.MethodGet, Path: "/rules", Tag: tag, Summary: "list network and process rules in precedence order", Paged: true,
			Params: append(common,
				httpapi.Param{Name: "learned", Type: "boolean", Description: "list learned rules too"},
				httpapi.Param{Name: "action", Description: "keep rules with this action", Enum: []string{string(policy.ActionAllow), string(policy.ActionDeny)}}),
			Response: RuleList{}},
		{Method: http.MethodGet, Path: "/admission/rules", Tag: tag, Summary: "list admission rules in evaluation order", Paged: true,
			Params: []httpapi.Param{
				common[0], common[2],
				{Name: "action", Description: "keep rules with this action", Enum: []string{string(policy.ActionAllow), string(policy.ActionDeny)}},
				{Name: "disabled", Type: "boolean", Description: "keep disabled (true) or enabled (false) rules"},
			}, Response: AdmissionRuleList{}},
		{Method: http.MethodPut, Path: "/modes", Tag: tag, Summary: "set the network or process mode of a group or of all groups",
			Body: policystore.ModeRequest{}, Response: policystore.ModeResult{}},
	}
}
