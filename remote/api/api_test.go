package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/remote/auth"
	"github.com/palisade-sec/palisade/shared/apierr"
	"github.com/palisade-sec/palisade/shared/store"
)

func TestToAPIErrorMapsEachKindOnce(t *testing.T) {
	tests := []struct {
		err    error
		code   apierr.Code
		status int
		field  string
	}{
		{apierr.BadRequest("x", "bad"), apierr.CodeBadRequest, 400, "x"},
		{fmt.Errorf("wrapped: %w", auth.ErrBadCredentials), apierr.CodeUnauthorized, 401, ""},
		{auth.ErrSessionExpired, apierr.CodeUnauthorized, 401, ""},
		{&auth.InvalidError{Field: "role", Problem: "nope"}, apierr.CodeBadRequest, 400, "role"},
		{&auth.RateLimitedError{RetryAfter: 30 * time.Second}, apierr.CodeTooMany, 429, ""},
		{auth.ErrUserNotFound, apierr.CodeNotFound, 404, ""},
		{auth.ErrLastAdmin, apierr.CodeConflict, 409, ""},
		{&store.ConflictError{Key: "k", Reason: "r"}, apierr.CodeConflict, 409, ""},
		{fmt.Errorf("x: %w", store.ErrNoLeader), apierr.CodeUnavailable, 503, ""},
		{errors.New("boom"), apierr.CodeInternal, 500, ""},
	}
	for _, tt := range tests {
		got := ToAPIError(tt.err)
		if got.Code != tt.code || got.Status() != tt.status || got.Field != tt.field {
			t.Errorf("ToAPIError(%v) = %+v (status %d), want %s/%d field %q", tt.err, got, got.Status(), tt.code, tt.status, tt.field)
		}
	}
	if got := ToAPIError(&auth.RateLimitedError{RetryAfter: 30 * time.Second}); got.RetryAfterSeconds != 30 {
		t.Errorf("retry after = %d, want 30", got.RetryAfterSeconds)
	}
}

func TestDecodeJSONNamesTheField(t *testing.T) {
	type body struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	tests := []struct {
		in, field, text string
	}{
		{``, "body", "empty"},
		{`{"name":`, "body", ""},
		{`{"name": 3}`, "name", "want string"},
		{`{"count": "x"}`, "count", "want int"},
		{`{"nmae": "x"}`, "nmae", "unknown field"},
		{`{"name": "a"} {"name": "b"}`, "body", "after the JSON object"},
		{`[1,2]`, "body", ""},
	}
	gin.SetMode(gin.ReleaseMode)
	for _, tt := range tests {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.in))
		var b body
		err := DecodeJSON(c, &b)
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Field != tt.field || !strings.Contains(ae.Message, tt.text) {
			t.Errorf("DecodeJSON(%q) = %v, want field %q with %q", tt.in, err, tt.field, tt.text)
		}
	}
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"name":"ok","count":2}`))
	var b body
	if err := DecodeJSON(c, &b); err != nil || b.Name != "ok" || b.Count != 2 {
		t.Fatalf("valid body: %+v, %v", b, err)
	}
}

func TestRequestToken(t *testing.T) {
	tests := []struct {
		header, cookie, want string
	}{
		{"Bearer abc", "", "abc"},
		{"Basic abc", "cookie", ""}, // a non-bearer header is not a session
		{"", "fromcookie", "fromcookie"},
		{"", "", ""},
	}
	for _, tt := range tests {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.header != "" {
			c.Request.Header.Set("Authorization", tt.header)
		}
		if tt.cookie != "" {
			c.Request.AddCookie(&http.Cookie{Name: SessionCookie, Value: tt.cookie})
		}
		if got := requestToken(c); got != tt.want {
			t.Errorf("requestToken(header %q, cookie %q) = %q, want %q", tt.header, tt.cookie, got, tt.want)
		}
	}
}
