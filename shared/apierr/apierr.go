// Package apierr is the error type that crosses Palisade's REST API: an
// HTTP status, a stable machine-readable code, a message for people and,
// for validation failures, the field at fault. Servers produce it, clients
// decode it back, and the status a code maps to is decided here only.
package apierr

import (
	"fmt"
	"net/http"
	"time"
)

// Code is a stable, machine-readable error code.
type Code string

// Codes and the one HTTP status each maps to.
const (
	CodeBadRequest   Code = "bad_request"
	CodeUnauthorized Code = "unauthorized"
	CodeForbidden    Code = "forbidden"
	CodeNotFound     Code = "not_found"
	CodeConflict     Code = "conflict"
	CodeTooMany      Code = "too_many_requests"
	CodeUnavailable  Code = "unavailable"
	CodeInternal     Code = "internal"
)

// Status returns the HTTP status for a code.
func (c Code) Status() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeTooMany:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Error is the JSON body of every API error response.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault, for bad requests.
	Field string `json:"field,omitempty"`
	// RetryAfterSeconds is set with too_many_requests and unavailable.
	RetryAfterSeconds int `json:"retryAfterSeconds,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Status is the HTTP status of the error.
func (e *Error) Status() int { return e.Code.Status() }

// BadRequest reports a problem with one field of a request.
func BadRequest(field, format string, args ...any) *Error {
	return &Error{Code: CodeBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Unauthorized reports missing or invalid credentials.
func Unauthorized(format string, args ...any) *Error {
	return &Error{Code: CodeUnauthorized, Message: fmt.Sprintf(format, args...)}
}

// Forbidden reports an authenticated caller without the right to act.
func Forbidden(format string, args ...any) *Error {
	return &Error{Code: CodeForbidden, Message: fmt.Sprintf(format, args...)}
}

// NotFound reports a missing object.
func NotFound(format string, args ...any) *Error {
	return &Error{Code: CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

// Conflict reports a write that lost to another or clashes with state.
func Conflict(format string, args ...any) *Error {
	return &Error{Code: CodeConflict, Message: fmt.Sprintf(format, args...)}
}

// TooMany reports a rate limit, with when to try again.
func TooMany(retryAfter time.Duration, format string, args ...any) *Error {
	secs := int(retryAfter.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &Error{Code: CodeTooMany, Message: fmt.Sprintf(format, args...), RetryAfterSeconds: secs}
}

// Unavailable reports a temporary inability to serve (no leader, starting).
func Unavailable(format string, args ...any) *Error {
	return &Error{Code: CodeUnavailable, Message: fmt.Sprintf(format, args...), RetryAfterSeconds: 1}
}

// Internal reports an unexpected failure.
func Internal(format string, args ...any) *Error {
	return &Error{Code: CodeInternal, Message: fmt.Sprintf(format, args...)}
}
