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
	reg, err := name.NewRegistry(registry, s.nameOpts()...)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", registry, err)
	}
	repos, err := remote.Catalog(ctx, reg, s.remoteOpts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: catalog: %w", registry, err)
	}
	sort.Strings(repos)
	var refs []string
	for _, repo := range repos {
		if ok, _ := path.Match(f.Repository, repo); f.Repository != "" && !ok {
			continue
		}
		r, err := name.NewRepository(reg.Name()+"/"+repo, s.nameOpts()...)
		if err != nil {
			return nil, fmt.Errorf("registry %s: repository %q: %w", registry, repo, err)
		}
		tags, err := remote.List(r, s.remoteOpts(ctx)...)
		if err != nil {
			return nil, fmt.Errorf("registry %s: tags of %s: %w", registry, repo, err)
		}
		var picked []string
		for _, t := range tags {
			if ok, _ := path.Match(f.Tag, t); f.Tag == "" || ok {
				picked = append(picked, t)
			}
		}
		if f.MaxTags > 0 && len(picked) > f.MaxTags {
			picked = picked[len(picked)-f.MaxTags:]
		}
		for _, t := range picked {
			refs = append(refs, r.Name()+":"+t)
		}
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
