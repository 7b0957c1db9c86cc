package apiclient

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// PageSize is how many items a client asks for per request when it
// follows every page of a listing (the API's largest page).
const PageSize = 1000

// Window is the part of a listing a caller wants: Limit items from
// Offset, or every item from Offset when Limit is 0.
type Window struct {
	Limit  int
	Offset int
}

// Validate reports a window the API would refuse.
func (w Window) Validate() error {
	switch {
	case w.Limit < 0:
		return fmt.Errorf("apiclient: limit %d: want 0 (all) or more", w.Limit)
	case w.Offset < 0:
		return fmt.Errorf("apiclient: offset %d: want 0 or more", w.Offset)
	}
	return nil
}

// Page is the envelope of every listing of the API.
type Page[T any] struct {
	Items  []T `json:"items"`
	Total  int `json:"total"`
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
}

// Pages fetches a listing at path with the query q (its limit and offset
// are set here) and returns the pages it read: one when w.Limit is set,
// else pages of PageSize until every item from w.Offset is read. count
// returns a decoded page's number of items and the listing's total.
func Pages[P any](ctx context.Context, c *Client, path string, q url.Values, w Window, count func(*P) (n, total int)) ([]*P, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if q == nil {
		q = url.Values{}
	}
	var pages []*P
	offset, want := w.Offset, w.Limit
	for {
		size := PageSize
		if want > 0 {
			size = min(want, PageSize)
		}
		q.Set("limit", strconv.Itoa(size))
		q.Set("offset", strconv.Itoa(offset))
		var p P
		if err := c.Do(ctx, "GET", path+"?"+q.Encode(), nil, &p); err != nil {
			return nil, err
		}
		pages = append(pages, &p)
		n, total := count(&p)
		offset += n
		if want > 0 {
			if want -= n; want <= 0 {
				return pages, nil
			}
		}
		if n == 0 || offset >= total {
			return pages, nil
		}
		if len(pages) > 1_000_000/PageSize {
			return nil, errors.New("apiclient: listing did not end after a million items")
		}
	}
}

// List fetches the items of a listing in the window w (see Pages) and
// the listing's total.
func List[T any](ctx context.Context, c *Client, path string, q url.Values, w Window) ([]T, int, error) {
	pages, err := Pages(ctx, c, path, q, w, func(p *Page[T]) (int, int) { return len(p.Items), p.Total })
	if err != nil {
		return nil, 0, err
	}
	items := []T{}
	total := 0
	for _, p := range pages {
		items = append(items, p.Items...)
		total = p.Total
	}
	return items, total, nil
}
