package agents

import (
	"net/http"

	"github.com/palisade-sec/palisade/shared/httpapi"
)

// OpenAPI implements httpapi.Documented: one Op for every route Routes
// adds.
func (m *Module) OpenAPI() []httpapi.Op {
	const tag = "agents"
	since := httpapi.Param{Name: "since", Description: "keep items seen at or after this RFC 3339 time, or within this duration back from now (24h)"}
	node := httpapi.Param{Name: "node", Description: "keep items from this node"}
	return []httpapi.Op{
		{Method: http.MethodPost, Path: "/agents/tokens", Tag: tag, Summary: "create a one-time agent enrollment token",
			Body: TokenRequest{}, Status: http.StatusCreated, Response: CreatedToken{}},
		{Method: http.MethodGet, Path: "/agents", Tag: tag, Summary: "list enrolled nodes and whether their agent is connected", Paged: true,
			Params: []httpapi.Param{
				{Name: "name", Description: "keep nodes whose name contains this, ignoring case"},
				{Name: "connected", Type: "boolean", Description: "keep nodes whose agent is (true) or is not (false) connected to the replica that answers"},
				{Name: "workload", Description: "keep nodes running a workload whose ID, name or namespace contains this"},
			}, Response: AgentList{}},
		{Method: http.MethodGet, Path: "/flows", Tag: tag, Summary: "list observed flows, most recently seen first, with their groups", Paged: true,
			Params: []httpapi.Param{
				{Name: "group", Description: "keep flows with an end in this group"},
				node,
				{Name: "app", Description: "keep flows whose application contains this"},
				{Name: "mode", Description: "keep flows last seen under this mode"},
				{Name: "port", Type: "integer", Description: "keep flows to this port"},
				{Name: "violations", Type: "boolean", Description: "keep flows with (true) or without (false) violations"},
				since,
			}, Response: FlowList{}},
		{Method: http.MethodGet, Path: "/events", Tag: tag, Summary: "list security events, newest first", Paged: true,
			Params: []httpapi.Param{
				node,
				{Name: "kind", Description: "keep events of this kind (network-violation, process-violation, process-denied, file-violation, file-change, file-denied)"},
				{Name: "action", Description: "keep events with this action (alert, deny)"},
				{Name: "workload", Description: "keep events of workloads whose ID contains this"},
				since,
			}, Response: EventList{}},
	}
}
