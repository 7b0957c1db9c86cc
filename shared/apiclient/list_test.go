package apiclient

import (
	"context"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/shared/httpapi"
)

// listingServer serves GET /v1/numbers, the numbers 0..n-1 paged by the
// API's own pager, and counts the requests.
func listingServer(t *testing.T, n int) (*Client, *atomic.Int64) {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	var reqs atomic.Int64
	e := gin.New()
	e.GET("/v1/numbers", func(c *gin.Context) {
		reqs.Add(1)
		p, err := httpapi.ParsePage(c, httpapi.DefaultLimit, httpapi.MaxLimit)
		if err != nil {
			c.JSON(400, err)
			return
		}
		c.JSON(200, httpapi.NewList(all, p))
	})
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	c, err := New(Config{URL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c, &reqs
}

func TestListFollowsPages(t *testing.T) {
	tests := []struct {
		n         int
		w         Window
		wantFirst int
		wantLen   int
		wantReqs  int64
	}{
		{0, Window{}, -1, 0, 1},
		{2500, Window{}, 0, 2500, 3},
		{2000, Window{}, 0, 2000, 2},
		{2500, Window{Offset: 2400}, 2400, 100, 1},
		{2500, Window{Limit: 10, Offset: 5}, 5, 10, 1},
		{2500, Window{Limit: 1500}, 0, 1500, 2},
		{30, Window{Limit: 100}, 0, 30, 1},
		{30, Window{Offset: 40}, -1, 0, 1},
	}
	for _, tt := range tests {
		c, reqs := listingServer(t, tt.n)
		items, total, err := List[int](context.Background(), c, "/v1/numbers", url.Values{}, tt.w)
		if err != nil {
			t.Fatalf("n=%d %+v: %v", tt.n, tt.w, err)
		}
		first := -1
		if len(items) > 0 {
			first = items[0]
		}
		if len(items) != tt.wantLen || first != tt.wantFirst || total != tt.n || reqs.Load() != tt.wantReqs {
			t.Errorf("n=%d %+v: %d items from %d of %d in %d requests, want %d from %d in %d",
				tt.n, tt.w, len(items), first, total, reqs.Load(), tt.wantLen, tt.wantFirst, tt.wantReqs)
		}
		for i := 1; i < len(items); i++ {
			if items[i] != items[i-1]+1 {
				t.Fatalf("n=%d %+v: item %d is %d after %d", tt.n, tt.w, i, items[i], items[i-1])
			}
		}
	}
	c, _ := listingServer(t, 1)
	for _, w := range []Window{{Limit: -1}, {Offset: -2}} {
		if _, _, err := List[int](context.Background(), c, "/v1/numbers", nil, w); err == nil {
			t.Errorf("window %+v accepted", w)
		}
	}
}
