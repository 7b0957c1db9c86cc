package main

import (
	"context"
	"net/url"

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
