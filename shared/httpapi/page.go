package httpapi

import (
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/apierr"
)

// Paging defaults of every listing: a listing without ?limit= returns
// DefaultLimit items, and no listing returns more than MaxLimit at once.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Page is the window of a listing a caller asked for with ?limit= and
// ?offset=.
type Page struct {
	Limit  int
	Offset int
}

// ParsePage reads ?limit= (1 to maxLimit, default defaultLimit) and
// ?offset= (from 0, default 0). A bad value is a 400 naming the parameter.
func ParsePage(c *gin.Context, defaultLimit, maxLimit int) (Page, error) {
	p := Page{Limit: defaultLimit}
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return Page{}, apierr.BadRequest("limit", "%q is not a number from 1 to %d", s, maxLimit)
		}
		p.Limit = n
	}
	if s := c.Query("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return Page{}, apierr.BadRequest("offset", "%q is not a number from 0", s)
		}
		p.Offset = n
	}
	return p, nil
}

// Window returns the items of all inside the page, never nil (an empty
// page encodes as [], not null).
func Window[T any](all []T, p Page) []T {
	if p.Offset >= len(all) {
		return []T{}
	}
	return all[p.Offset:min(len(all), p.Offset+p.Limit)]
}

// List is the body of every listing: one page of items and the number of
// items that matched the filters before paging.
type List[T any] struct {
	Items  []T `json:"items" openapi:"nonnull"`
	Total  int `json:"total"`
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
}

// NewList pages all, the filtered items of a listing.
func NewList[T any](all []T, p Page) List[T] {
	return List[T]{Items: Window(all, p), Total: len(all), Limit: p.Limit, Offset: p.Offset}
}

// Filter keeps the items of all that keep accepts.
func Filter[T any](all []T, keep func(T) bool) []T {
	out := make([]T, 0, len(all))
	for _, v := range all {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// Contains reports whether s contains sub, ignoring case; an empty sub is
// in every s. List filters on names and labels use it.
func Contains(s, sub string) bool {
	return sub == "" || strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// QueryBool reads an optional true/false query parameter; set is false
// when it is absent.
func QueryBool(c *gin.Context, name string) (v, set bool, err error) {
	s := c.Query(name)
	if s == "" {
		return false, false, nil
	}
	b, perr := strconv.ParseBool(s)
	if perr != nil {
		return false, false, apierr.BadRequest(name, "%q is not true or false", s)
	}
	return b, true, nil
}

// QueryEnum reads an optional query parameter that must be one of
// allowed ("" when absent).
func QueryEnum(c *gin.Context, name string, allowed ...string) (string, error) {
	s := c.Query(name)
	if s == "" {
		return "", nil
	}
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return a, nil
		}
	}
	return "", apierr.BadRequest(name, "%q is not one of %s", s, strings.Join(allowed, ", "))
}

// QuerySince reads an optional ?NAME= lower time bound, either an RFC 3339
// time or a duration back from now ("15m", "24h"); zero when absent.
func QuerySince(c *gin.Context, name string, now time.Time) (time.Time, error) {
	s := c.Query(name)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, apierr.BadRequest(name, "%q is neither an RFC 3339 time nor a positive duration such as 24h", s)
}
