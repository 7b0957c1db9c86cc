package scanning

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/registryscan/scan"
)

// Kinds of Job.
const (
	// JobList lists a registry's images that match its filter.
	JobList = "list"
	// JobImage scans one image.
	JobImage = "image"
)

// Job is one task the leader's scheduler hands a remote scanner worker
// (POST /v1/scanners/poll). The worker does all registry traffic itself
// and answers with a JobResult; the controller never sees layer bytes.
type Job struct {
	// ID names the job in the worker's answers; it is valid only with the
	// leader that handed it out.
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Registry is the registry's name; Host its host[:port].
	Registry string `json:"registry"`
	Host     string `json:"host"`
	// Insecure allows plain HTTP and self-signed certificates.
	Insecure bool `json:"insecure,omitempty"`
	// Filter selects the images of a JobList.
	Filter scan.Filter `json:"filter,omitzero"`
	// Ref is the image of a JobImage (repository:tag).
	Ref string `json:"ref,omitempty"`
	// Attempt counts tries of this task, 1 for the first.
	Attempt int `json:"attempt"`
	// Credentials authenticate to the registry, when it has any; they are
	// handed out only with the jobs that need them.
	Credentials *Credentials `json:"credentials,omitempty"`
}

// PollRequest is the body of POST /v1/scanners/poll: the worker's
// capacity and the jobs it is running.
type PollRequest struct {
	// Slots is how many jobs the worker runs at once; Free how many it
	// can take now.
	Slots int `json:"slots"`
	Free  int `json:"free"`
	// Running lists the IDs of the jobs the worker holds; a job the leader
	// handed it that is not listed is counted as lost and retried.
	Running []string `json:"running"`
}

// PollResponse is the answer to a poll: up to Free jobs, possibly none.
type PollResponse struct {
	Jobs []Job `json:"jobs"`
}

// ResolveRequest is the body of POST /v1/scanners/jobs/ID/resolve: the
// digest a JobImage's reference points at, before any layer is pulled.
type ResolveRequest struct {
	Digest string `json:"digest"`
}

// ResolveResponse says whether the digest already has a result, in which
// case the job is done and the worker pulls nothing.
type ResolveResponse struct {
	Skip bool `json:"skip"`
}

// JobResult is the body of POST /v1/scanners/jobs/ID/result.
type JobResult struct {
	// Refs are the images a JobList found.
	Refs []string `json:"refs,omitempty"`
	// Digest is the image digest a JobImage resolved, when known.
	Digest string `json:"digest,omitempty"`
	// Reports are a JobImage's inventories (one per platform scanned);
	// the controller matches them against its feed.
	Reports []*report.Report `json:"reports,omitempty"`
	// Error says why the job failed.
	Error string `json:"error,omitempty"`
}

// RemoteOptions are the go-containerregistry options of one registry
// access: creds when given, else the scan configuration's keychain.
func RemoteOptions(ctx context.Context, sc scan.Config, creds *Credentials) []remote.Option {
	return scan.RemoteOptions(ctx, sc, creds.Authenticator())
}

func nameOpts(insecure bool) []name.Option {
	if insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// ListRefs lists the images (repository:tag, normalized) of the registry
// at host that match f.
func ListRefs(ctx context.Context, registryName, host string, insecure bool, f scan.Filter, opts []remote.Option) ([]string, error) {
	refs, err := scan.ListRefs(ctx, host, insecure, f, opts...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", registryName, err)
	}
	return refs, nil
}

// HeadDigest returns the digest ref points at, or "" when the registry
// does not say.
func HeadDigest(ref string, insecure bool, opts []remote.Option) string {
	r, err := name.ParseReference(ref, nameOpts(insecure)...)
	if err != nil {
		return ""
	}
	desc, err := remote.Head(r, opts...)
	if err != nil {
		return ""
	}
	return desc.Digest.String()
}

// ExplainAuth makes a registry's refusal (HTTP 401) say what to do about
// it; other errors are returned as they are.
func ExplainAuth(err error, registry string, hasCreds bool) error {
	var te *transport.Error
	if err == nil || !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		return err
	}
	if hasCreds {
		return fmt.Errorf("HTTP 401 Unauthorized: registry %s refused its stored credentials: %w", registry, err)
	}
	return fmt.Errorf("HTTP 401 Unauthorized: registry %s needs credentials (palisade registry credentials %s --username U --password-stdin): %w", registry, registry, err)
}
