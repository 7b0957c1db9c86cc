package scan

import (
	"context"
	"fmt"
	"path"
	"sort"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/palisade-sec/palisade/registryscan/report"
)

// Filter selects images of a registry: glob patterns (path.Match syntax)
// over repository names and tags. An empty pattern matches everything.
type Filter struct {
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
	// MaxTags bounds the tags scanned per repository (the last ones in
	// the registry's order); zero means all.
	MaxTags int `json:"maxTags,omitempty"`
}

// Validate checks the patterns.
func (f Filter) Validate() error {
	for _, p := range []string{f.Repository, f.Tag} {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("scan: filter pattern %q: %w", p, err)
		}
	}
	if f.MaxTags < 0 {
		return fmt.Errorf("scan: filter MaxTags %d must not be negative", f.MaxTags)
	}
	return nil
}

// ImageResult is the outcome for one image of a registry scan: its reports
// (one per platform scanned) or the error that stopped it.
type ImageResult struct {
	Ref     string           `json:"ref"`
	Reports []*report.Report `json:"reports,omitempty"`
	Error   string           `json:"error,omitempty"`
}

// ScanRegistry lists the registry's catalog and each matching
// repository's tags, and scans every matching image, Workers at a time.
// One image's failure is recorded in its result and does not stop the
// others; the error is for failures to list the registry itself.
func (s *Scanner) ScanRegistry(ctx context.Context, registry string, f Filter) ([]ImageResult, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	refs, err := ListRefs(ctx, registry, s.cfg.Insecure, f, s.remoteOpts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", registry, err)
	}
	results := make([]ImageResult, len(refs))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < s.cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res := ImageResult{Ref: refs[i]}
				reps, err := s.ScanImage(ctx, refs[i])
				if err != nil {
					res.Error = err.Error()
				} else {
					res.Reports = reps
				}
				results[i] = res
			}
		}()
	}
feed:
	for i := range refs {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return results, err
	}
	return results, nil
}

// ListRefs lists the images (repository:tag, normalized) of the registry
// at host that match f, in repository order, with opts for every request;
// insecure speaks plain HTTP. A repository whose name the catalog gives
// but no reference can hold is skipped.
func ListRefs(ctx context.Context, host string, insecure bool, f Filter, opts ...remote.Option) ([]string, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, nopts...)
	if err != nil {
		return nil, err
	}
	repos, err := remote.Catalog(ctx, reg, opts...)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	sort.Strings(repos)
	var refs []string
	for _, repo := range repos {
		if ok, _ := path.Match(f.Repository, repo); f.Repository != "" && !ok {
			continue
		}
		r, err := name.NewRepository(reg.Name()+"/"+repo, nopts...)
		if err != nil {
			continue
		}
		tags, err := remote.List(r, opts...)
		if err != nil {
			return nil, fmt.Errorf("tags of %s: %w", repo, err)
		}
		var picked []string
		for _, tag := range tags {
			if ok, _ := path.Match(f.Tag, tag); f.Tag == "" || ok {
				picked = append(picked, tag)
			}
		}
		if f.MaxTags > 0 && len(picked) > f.MaxTags {
			picked = picked[len(picked)-f.MaxTags:]
		}
		for _, tag := range picked {
			refs = append(refs, r.Tag(tag).Name())
		}
	}
	return refs, nil
}
