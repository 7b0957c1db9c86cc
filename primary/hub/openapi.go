package hub

import (
	"net/http"

	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// OpenAPI implements httpapi.Documented: one Op for every route Routes
// adds.
func (h *Hub) OpenAPI() []httpapi.Op {
	const tag = "federation-primary"
	return []httpapi.Op{
		{Method: http.MethodPost, Path: "/fed/promote", Tag: tag, Summary: "make this standalone cluster a federation primary",
			Body: PromoteRequest{}, Response: PromoteResponse{}},
		{Method: http.MethodPost, Path: "/fed/demote", Tag: tag, Summary: "stop being a primary: dismiss every remote", Response: DemoteResponse{}},
		{Method: http.MethodPost, Path: "/fed/tokens", Tag: tag, Summary: "issue a join token for remotes", Body: TokenRequest{}, Response: TokenResponse{}},
		{Method: http.MethodGet, Path: "/fed/status", Tag: tag, Summary: "the primary's revision, addresses, remotes and rollout", Response: Status{}},
		{Method: http.MethodGet, Path: "/fed/clusters", Tag: tag, Summary: "list the remotes with their link status and lag", Paged: true,
			Params: []httpapi.Param{
				{Name: "name", Description: "keep remotes whose name contains this, ignoring case"},
				{Name: "selector", Description: "keep remotes whose labels match this selector (env=prod,tier!=web)"},
				{Name: "connected", Type: "boolean", Description: "keep remotes that hold (true) or do not hold (false) a link"},
				{Name: "healthy", Type: "boolean", Description: "keep healthy (true) or unhealthy (false) remotes"},
			}, Response: ClusterList{}},
		{Method: http.MethodPost, Path: "/fed/members/:name/kick", Tag: tag, Summary: "remove a remote from the federation", Response: KickResponse{}},
		{Method: http.MethodPost, Path: "/fed/policy/apply", Tag: tag, Summary: "apply federated policy (YAML documents) to the remotes",
			Params: []httpapi.Param{
				{Name: "dryRun", Type: "boolean", Description: "report the changes without storing them"},
				{Name: "prune", Type: "boolean", Description: "delete federated objects the documents no longer name"},
				{Name: "canary", Description: "comma-separated remotes to roll out to first, in waves"},
			}, BodyType: "application/yaml", Response: ApplyResponse{}},
		{Method: http.MethodGet, Path: "/fed/policy", Tag: tag, Summary: "list the federated policy objects", Paged: true,
			Params: []httpapi.Param{
				{Name: "kind", Description: "keep objects of this kind (GroupDefinition, NetworkRule, ...)"},
				{Name: "name", Description: "keep objects whose name contains this, ignoring case"},
			}, Response: PolicyList{}},
		{Method: http.MethodGet, Path: "/fed/history", Tag: tag, Summary: "list recorded states of the federated policy, newest first", Paged: true,
			Params: []httpapi.Param{
				{Name: "user", Description: "keep states this user recorded"},
				{Name: "since", Description: "keep states recorded at or after this RFC 3339 time, or within this duration back from now (24h)"},
			}, Response: HistoryList{}},
		{Method: http.MethodPost, Path: "/fed/rollback", Tag: tag, Summary: "restore the federated policy of a recorded revision",
			Body: RollbackRequest{}, Response: ApplyResponse{}},
		{Method: http.MethodGet, Path: "/fed/rollout", Tag: tag, Summary: "the current or last rollout", Response: rollout.State{}},
		{Method: http.MethodPost, Path: "/fed/rollout/pause", Tag: tag, Summary: "pause the rollout", Response: rollout.State{}},
		{Method: http.MethodPost, Path: "/fed/rollout/resume", Tag: tag, Summary: "resume a paused rollout", Response: rollout.State{}},
		{Method: http.MethodGet, Path: "/fed/clusters/:name/api/*path", Tag: tag,
			Summary:      "read a remote's API over its federation link (GET only, as fedReader); path is the remote's /v1/... path",
			ResponseType: "application/json"},
	}
}
