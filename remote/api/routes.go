package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/store"
)

// LoginRequest is the body of POST /v1/auth/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is returned by a successful login.
type LoginResponse struct {
	Token     string    `json:"token"`
	User      string    `json:"user"`
	Role      auth.Role `json:"role"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// Health is the body of GET /v1/healthz.
type Health struct {
	Status   string `json:"status"`
	Replica  string `json:"replica"`
	Leader   string `json:"leader"`
	Revision uint64 `json:"revision"`
}

// Cluster is the body of GET /v1/cluster.
type Cluster struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`
	Leader   string          `json:"leader"`
	Replicas []store.Replica `json:"replicas"`
	Revision uint64          `json:"revision"`
}

// CreateUserRequest is the body of POST /v1/users.
type CreateUserRequest struct {
	Name     string    `json:"name"`
	Role     auth.Role `json:"role"`
	Password string    `json:"password"`
}

// UserList is the body of GET /v1/users.
type UserList = httpapi.List[auth.User]

func (s *Server) routes(r *Router) {
	r.Raw(http.MethodGet, "/openapi.json", httpapi.Public, s.openAPI)
	r.Handle(http.MethodGet, "/healthz", httpapi.Public, s.health)
	r.Handle(http.MethodPost, "/auth/login", httpapi.Public, s.login)
	r.Handle(http.MethodPost, "/auth/logout", httpapi.Read, s.logout)
	r.Handle(http.MethodGet, "/auth/whoami", httpapi.Read, func(c *gin.Context) (any, error) { return httpapi.SessionOf(c), nil })
	r.Handle(http.MethodGet, "/cluster", httpapi.Read, s.cluster)
	r.Handle(http.MethodGet, "/users", httpapi.Read, s.listUsers)
	r.Handle(http.MethodPost, "/users", httpapi.Write, s.createUser)
	r.Handle(http.MethodDelete, "/users/:name", httpapi.Write, s.deleteUser)
}

func (s *Server) health(*gin.Context) (any, error) {
	leader, _ := s.cfg.Store.Leader()
	h := Health{Status: "ok", Replica: s.cfg.Store.Name(), Leader: leader, Revision: s.cfg.Store.Revision()}
	if leader == "" {
		h.Status = "no leader"
		return httpapi.Status{Code: http.StatusServiceUnavailable, Body: h}, nil
	}
	return h, nil
}

func (s *Server) login(c *gin.Context) (any, error) {
	var req LoginRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	if req.Username == "" {
		return nil, apierr.BadRequest("username", "is required")
	}
	if req.Password == "" {
		return nil, apierr.BadRequest("password", "is required")
	}
	token, sess, err := s.cfg.Auth.Login(c.Request.Context(), req.Username, req.Password, ClientAddr(c))
	if err != nil {
		return nil, err
	}
	c.SetSameSite(http.SameSiteStrictMode)
	maxAge := int(time.Until(sess.ExpiresAt).Seconds())
	c.SetCookie(SessionCookie, token, maxAge, "/", "", true, true)
	c.SetCookie(CSRFCookie, CSRFToken(token), maxAge, "/", "", true, false)
	return LoginResponse{Token: token, User: sess.User, Role: sess.Role, ExpiresAt: sess.ExpiresAt}, nil
}

func (s *Server) logout(c *gin.Context) (any, error) {
	if err := s.cfg.Auth.Logout(c.Request.Context(), requestToken(c)); err != nil {
		return nil, err
	}
	c.SetSameSite(http.SameSiteStrictMode)
	c.SetCookie(SessionCookie, "", -1, "/", "", true, true)
	c.SetCookie(CSRFCookie, "", -1, "/", "", true, false)
	return httpapi.Status{Code: http.StatusNoContent}, nil
}

func (s *Server) cluster(*gin.Context) (any, error) {
	info := s.cfg.Cluster()
	leader, _ := s.cfg.Store.Leader()
	return Cluster{Name: info.Name, Role: info.Role, Leader: leader, Replicas: s.cfg.Store.Replicas(), Revision: s.cfg.Store.Revision()}, nil
}

func (s *Server) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", s.docJSON)
}

func (s *Server) listUsers(c *gin.Context) (any, error) {
	p, err := httpapi.ParsePage(c, httpapi.DefaultLimit, httpapi.MaxLimit)
	if err != nil {
		return nil, err
	}
	role, err := httpapi.QueryEnum(c, "role", roleNames()...)
	if err != nil {
		return nil, err
	}
	users, err := s.cfg.Auth.ListUsers()
	if err != nil {
		return nil, err
	}
	name := c.Query("name")
	users = httpapi.Filter(users, func(u auth.User) bool {
		return httpapi.Contains(u.Name, name) && (role == "" || string(u.Role) == role)
	})
	return httpapi.NewList(users, p), nil
}

func roleNames() []string {
	var out []string
	for _, r := range auth.Roles() {
		out = append(out, string(r))
	}
	return out
}

func (s *Server) createUser(c *gin.Context) (any, error) {
	var req CreateUserRequest
	if err := httpapi.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	if req.Role == auth.RoleFedAdmin && !auth.Role(httpapi.SessionOf(c).Role).CanWriteFederated() {
		return nil, apierr.Forbidden("only admin or fedAdmin may create fedAdmin users")
	}
	if err := s.cfg.Auth.CreateUser(c.Request.Context(), req.Name, req.Role, req.Password); err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusCreated, Body: auth.User{Name: req.Name, Role: req.Role}}, nil
}

func (s *Server) deleteUser(c *gin.Context) (any, error) {
	if err := s.cfg.Auth.DeleteUser(c.Request.Context(), c.Param("name")); err != nil {
		return nil, err
	}
	return httpapi.Status{Code: http.StatusNoContent}, nil
}
