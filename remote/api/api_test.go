package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
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
