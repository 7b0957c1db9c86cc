package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strconv"

	"github.com/palisade-sec/palisade/shared/apiclient"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

// listFlags are the paging flags of every list verb.
type listFlags struct {
	limit, offset *int
}

func addListFlags(fs *flag.FlagSet) *listFlags {
	return &listFlags{
		limit:  fs.Int("limit", 0, "most items to list (0: all of them)"),
		offset: fs.Int("offset", 0, "items to skip first"),
	}
}

func (l *listFlags) window() (apiclient.Window, error) {
	w := apiclient.Window{Limit: *l.limit, Offset: *l.offset}
	if err := w.Validate(); err != nil {
		return w, fmt.Errorf("%w: %v", errUsage, err)
	}
	return w, nil
}

// listWindow fetches the window w of the listing at path with the query
// q, following every page when w has no limit, and returns it as one
// page whose Limit is the number of items it holds.
func listWindow[T any](ctx context.Context, c *apiclient.Client, path string, q url.Values, w apiclient.Window) (httpapi.List[T], error) {
	items, total, err := apiclient.List[T](ctx, c, path, q, w)
	if err != nil {
		return httpapi.List[T]{}, err
	}
	return httpapi.List[T]{Items: items, Total: total, Limit: len(items), Offset: w.Offset}, nil
}

// boolFilter checks the value of a true/false filter flag; empty means
// the filter is off.
func boolFilter(flagName, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return "", fmt.Errorf("%w: --%s %q: want true or false", errUsage, flagName, v)
	}
	return strconv.FormatBool(b), nil
}

// setQuery sets the query parameters whose values are not empty.
func setQuery(q url.Values, kv ...string) url.Values {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	return q
}

// fetchList fetches the window lf selects of the list at path, filtered by
// q. With -o json it writes the list to stdout and done is true: the caller
// has nothing left to print.
func fetchList[T any](ctx context.Context, env *cliEnv, o *apiOpts, lf *listFlags, path string, q url.Values) (list httpapi.List[T], done bool, err error) {
	w, err := lf.window()
	if err != nil {
		return list, false, err
	}
	c, err := o.client(env)
	if err != nil {
		return list, false, err
	}
	list, err = listWindow[T](ctx, c, path, q, w)
	if err != nil {
		return list, false, err
	}
	if o.json() {
		return list, true, writeJSON(env.stdout, list)
	}
	return list, false, nil
}

// revisionList is a listing of the policy store with the revision it was
// read at: the shape of policyapi's GroupList, RuleList and
// AdmissionRuleList.
type revisionList[T any] struct {
	httpapi.List[T]
	Revision uint64 `json:"revision"`
}

// fetchRevisionList is fetchList for a listing of the policy store; the
// revision is the one of the last page read.
func fetchRevisionList[T any](ctx context.Context, env *cliEnv, o *apiOpts, lf *listFlags, path string, q url.Values) (list revisionList[T], done bool, err error) {
	w, err := lf.window()
	if err != nil {
		return list, false, err
	}
	c, err := o.client(env)
	if err != nil {
		return list, false, err
	}
	pages, err := apiclient.Pages(ctx, c, path, q, w, func(p *revisionList[T]) (int, int) { return len(p.Items), p.Total })
	if err != nil {
		return list, false, err
	}
	list.Items, list.Offset = []T{}, w.Offset
	for _, p := range pages {
		list.Items = append(list.Items, p.Items...)
		list.Total, list.Revision = p.Total, p.Revision
	}
	list.Limit = len(list.Items)
	if o.json() {
		return list, true, writeJSON(env.stdout, list)
	}
	return list, false, nil
}
