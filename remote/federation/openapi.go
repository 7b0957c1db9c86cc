package federation

import (
	"net/http"

	"github.com/palisade-sec/palisade/shared/httpapi"
)

// OpenAPI implements httpapi.Documented: one Op for every route Routes
// adds.
func (m *Module) OpenAPI() []httpapi.Op {
	const tag = "federation"
	return []httpapi.Op{
		{Method: http.MethodPost, Path: "/fed/join", Tag: tag, Summary: "join a federation as a remote, with a join token from its primary",
			Body: JoinRequest{}, Response: JoinResponse{}},
		{Method: http.MethodPost, Path: "/fed/leave", Tag: tag, Summary: "leave the federation and drop the federated objects", Response: LeaveResponse{}},
		{Method: http.MethodGet, Path: "/fed/link", Tag: tag, Summary: "this cluster's federation role and link to the primary", Response: LinkStatus{}},
		{Method: http.MethodGet, Path: "/fed/objects", Tag: tag, Summary: "list the objects received from the primary", Paged: true,
			Params: []httpapi.Param{
				{Name: "prefix", Description: "keep keys that start with this (objects/, scan/)"},
				{Name: "key", Description: "keep keys that contain this, ignoring case"},
			}, Response: ObjectList{}},
	}
}
