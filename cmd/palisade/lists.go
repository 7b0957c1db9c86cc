package main

import (
	"context"
	"net/url"

	"github.com/palisade-sec/palisade/shared/apiclient"
	"github.com/palisade-sec/palisade/shared/httpapi"
)

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
