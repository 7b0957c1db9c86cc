package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/apierr"
)

func testContext(query string) *gin.Context {
	gin.SetMode(gin.ReleaseMode)
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest(http.MethodGet, "/?"+query, nil)
	return c
}

func TestParsePage(t *testing.T) {
	tests := []struct {
		query     string
		want      Page
		wantField string
	}{
		{"", Page{Limit: 100}, ""},
		{"limit=5&offset=10", Page{Limit: 5, Offset: 10}, ""},
		{"limit=1000", Page{Limit: 1000}, ""},
		{"limit=1001", Page{}, "limit"},
		{"limit=0", Page{}, "limit"},
		{"limit=-3", Page{}, "limit"},
		{"limit=ten", Page{}, "limit"},
		{"offset=-1", Page{}, "offset"},
		{"offset=1e3", Page{}, "offset"},
		{"limit=2&offset=x", Page{}, "offset"},
	}
	for _, tt := range tests {
		got, err := ParsePage(testContext(tt.query), DefaultLimit, MaxLimit)
		var ae *apierr.Error
		switch {
		case tt.wantField == "" && err != nil:
			t.Errorf("ParsePage(%q) error %v", tt.query, err)
		case tt.wantField == "" && got != tt.want:
			t.Errorf("ParsePage(%q) = %+v, want %+v", tt.query, got, tt.want)
		case tt.wantField != "" && (!errors.As(err, &ae) || ae.Field != tt.wantField || ae.Code != apierr.CodeBadRequest):
			t.Errorf("ParsePage(%q) error %v, want a bad request naming %q", tt.query, err, tt.wantField)
		}
	}
}

func TestNewList(t *testing.T) {
	all := []int{1, 2, 3, 4, 5}
	tests := []struct {
		p         Page
		wantItems []int
	}{
		{Page{Limit: 2}, []int{1, 2}},
		{Page{Limit: 2, Offset: 4}, []int{5}},
		{Page{Limit: 10, Offset: 5}, []int{}},
		{Page{Limit: 10, Offset: 50}, []int{}},
	}
	for _, tt := range tests {
		got := NewList(all, tt.p)
		if got.Total != 5 || got.Limit != tt.p.Limit || got.Offset != tt.p.Offset || got.Items == nil || len(got.Items) != len(tt.wantItems) {
			t.Errorf("NewList(%+v) = %+v, want items %v of 5", tt.p, got, tt.wantItems)
			continue
		}
		for i := range got.Items {
			if got.Items[i] != tt.wantItems[i] {
				t.Errorf("NewList(%+v) items = %v, want %v", tt.p, got.Items, tt.wantItems)
			}
		}
	}
	if got := NewList[int](nil, Page{Limit: 1}); got.Items == nil || got.Total != 0 {
		t.Errorf("NewList(nil) = %+v, want an empty, non-nil page", got)
	}
}

func TestQueryFilters(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		query     string
		since     time.Time
		enum      string
		sinceErr  bool
		enumErr   bool
		boolValue bool
		boolSet   bool
		boolErr   bool
	}{
		{query: ""},
		{query: "since=2026-01-01T00:00:00Z&mode=Protect&b=true", since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), enum: "protect", boolValue: true, boolSet: true},
		{query: "since=90m&b=0", since: now.Add(-90 * time.Minute), boolSet: true},
		{query: "since=yesterday", sinceErr: true},
		{query: "since=-5m", sinceErr: true},
		{query: "mode=block", enumErr: true},
		{query: "b=maybe", boolErr: true},
	}
	for _, tt := range tests {
		c := testContext(tt.query)
		since, err := QuerySince(c, "since", now)
		if (err != nil) != tt.sinceErr || (!tt.sinceErr && !since.Equal(tt.since)) {
			t.Errorf("QuerySince(%q) = %v, %v; want %v (error %v)", tt.query, since, err, tt.since, tt.sinceErr)
		}
		mode, err := QueryEnum(c, "mode", "discover", "monitor", "protect")
		if (err != nil) != tt.enumErr || mode != tt.enum {
			t.Errorf("QueryEnum(%q) = %q, %v; want %q (error %v)", tt.query, mode, err, tt.enum, tt.enumErr)
		}
		v, set, err := QueryBool(c, "b")
		if (err != nil) != tt.boolErr || v != tt.boolValue || set != tt.boolSet {
			t.Errorf("QueryBool(%q) = %v, %v, %v; want %v, %v (error %v)", tt.query, v, set, err, tt.boolValue, tt.boolSet, tt.boolErr)
		}
	}
	if !Contains("Payments-API", "api") || Contains("web", "db") || !Contains("x", "") {
		t.Error("Contains does not match substrings ignoring case")
	}
}

func FuzzParsePage(f *testing.F) {
	for _, s := range []string{"", "limit=5", "limit=0&offset=3", "offset=-1", "limit=99999999999999999999", "limit=%zz", "since=24h&mode=A&b=1", "since=2026-01-01T00:00:00Z", "since=0s&mode=c&b=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		gin.SetMode(gin.ReleaseMode)
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Request = &http.Request{Method: http.MethodGet, URL: httptest.NewRequest(http.MethodGet, "/", nil).URL}
		c.Request.URL.RawQuery = query
		p, err := ParsePage(c, DefaultLimit, MaxLimit)
		if err == nil && (p.Limit < 1 || p.Limit > MaxLimit || p.Offset < 0) {
			t.Fatalf("ParsePage(%q) = %+v without an error", query, p)
		}
		var ae *apierr.Error
		if err != nil && (!errors.As(err, &ae) || (ae.Field != "limit" && ae.Field != "offset")) {
			t.Fatalf("ParsePage(%q) error %v does not name limit or offset", query, err)
		}
		if _, err := QuerySince(c, "since", time.Now()); err != nil && (!errors.As(err, &ae) || ae.Field != "since") {
			t.Fatalf("QuerySince(%q) error %v does not name since", query, err)
		}
		if v, err := QueryEnum(c, "mode", "a", "b"); (err == nil && v != "" && v != "a" && v != "b") || (err != nil && (!errors.As(err, &ae) || ae.Field != "mode")) {
			t.Fatalf("QueryEnum(%q) = %q, %v", query, v, err)
		}
		if _, _, err := QueryBool(c, "b"); err != nil && (!errors.As(err, &ae) || ae.Field != "b") {
			t.Fatalf("QueryBool(%q) error %v does not name b", query, err)
		}
	})
}
