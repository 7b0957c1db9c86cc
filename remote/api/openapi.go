package api

import (
	"net/http"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// coreOps describes the routes the API serves itself.
func coreOps() []httpapi.Op {
	const tag = "core"
	return []httpapi.Op{
		{Method: http.MethodGet, Path: "/openapi.json", Tag: tag, Summary: "this OpenAPI document (public: it holds no data)",
			ResponseType: "application/json"},
		{Method: http.MethodGet, Path: "/healthz", Tag: tag, Summary: "replica health: 200 with a leader, 503 without", Response: Health{}},
		{Method: http.MethodPost, Path: "/auth/login", Tag: tag, Summary: "log in: a bearer token, and session and CSRF cookies for browsers",
			Body: LoginRequest{}, Response: LoginResponse{}},
		{Method: http.MethodPost, Path: "/auth/logout", Tag: tag, Summary: "end the caller's session", Status: http.StatusNoContent},
		{Method: http.MethodGet, Path: "/auth/whoami", Tag: tag, Summary: "the caller's user and role", Response: httpapi.Session{}},
		{Method: http.MethodGet, Path: "/cluster", Tag: tag, Summary: "the cluster: name, role, leader, replicas, revision", Response: Cluster{}},
		{Method: http.MethodGet, Path: "/users", Tag: tag, Summary: "list users (password hashes are never returned)", Paged: true,
			Params: []httpapi.Param{
				{Name: "name", Description: "keep users whose name contains this, ignoring case"},
				{Name: "role", Description: "keep users with this role", Enum: roleNames()},
			}, Response: UserList{}},
		{Method: http.MethodPost, Path: "/users", Tag: tag, Summary: "create a user", Body: CreateUserRequest{},
			Status: http.StatusCreated, Response: auth.User{}},
		{Method: http.MethodDelete, Path: "/users/:name", Tag: tag, Summary: "delete a user and end their sessions", Status: http.StatusNoContent},
	}
}
