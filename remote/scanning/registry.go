package scanning

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/palisade-sec/palisade/registryscan/scan"
	"github.com/palisade-sec/palisade/remote/admission/verdict"
)

// Store keys and prefixes.
const (
	PrefixRegistries = "scan/registries/"
	PrefixStatus     = "scan/status/"
	PrefixRequests   = "scan/requests/"
	PrefixResults    = verdict.PrefixLocal
	PrefixFederated  = verdict.PrefixFederated
	PrefixRefs       = "scan/refs/"
	PrefixFailures   = "scan/failures/"
	// PrefixFedStream is where a primary writes federated results; the
	// federation stream delivers them to remotes under PrefixFederated.
	PrefixFedStream = "fed/stream/scan/"
	// PrefixFedOwners records which federated registries reference a
	// digest under PrefixFedStream (Owners), so that deleting a registry
	// withdraws the results no other registry references.
	PrefixFedOwners = "scan/fedowners/"
	// PrefixCredentials holds a registry's credentials, sealed (see
	// credentials.go); never returned by the API.
	PrefixCredentials = "scan/credentials/"
	// PrefixWorkerTokens and PrefixWorkers hold scanner-worker enrolment
	// tokens and enrolled workers (hashes of their secrets only).
	PrefixWorkerTokens = "scan/workertokens/"
	PrefixWorkers      = "scan/workers/"
)

// Kinds of registry credentials (Registry.Auth).
const (
	AuthBasic  = "basic"
	AuthBearer = "bearer"
)

// ErrBadRegistry is returned for a registry definition that cannot be used.
var ErrBadRegistry = errors.New("scanning: bad registry")

// Registry is one registry to scan.
type Registry struct {
	// Name identifies the registry in the cluster.
	Name string `json:"name"`
	// URL is the registry's host[:port]; an http:// scheme implies Insecure.
	URL string `json:"url"`
	// Filter selects repositories and tags (glob patterns).
	Filter scan.Filter `json:"filter,omitzero"`
	// Interval is the time between scans.
	Interval Duration `json:"interval"`
	// Federated registries are scanned by the primary for every cluster.
	Federated bool `json:"federated,omitempty"`
	// Insecure allows plain HTTP and self-signed certificates.
	Insecure bool `json:"insecure,omitempty"`
	// Auth is the kind of credentials the registry needs: "" (anonymous),
	// "basic" or "bearer". The credentials themselves are set with PUT
	// /v1/registries/NAME/credentials, kept sealed, and never returned; a
	// registry with Auth set is not scanned until they are.
	Auth string `json:"auth,omitempty"`
	// CreatedAt is when the registry was added.
	CreatedAt time.Time `json:"createdAt,omitzero"`
}

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration such as 30m or 1h", b)
	}
	*d = Duration(v)
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// Host returns the registry host[:port] to contact, and whether the URL
// asked for plain HTTP.
func (r *Registry) Host() (string, bool, error) {
	u := strings.TrimSpace(r.URL)
	plain := false
	if strings.Contains(u, "://") {
		p, err := url.Parse(u)
		if err != nil {
			return "", false, fmt.Errorf("%w: %s: url %q: %v", ErrBadRegistry, r.Name, r.URL, err)
		}
		switch p.Scheme {
		case "http":
			plain = true
		case "https":
		default:
			return "", false, fmt.Errorf("%w: %s: url %q: scheme %q is not http or https", ErrBadRegistry, r.Name, r.URL, p.Scheme)
		}
		if p.Path != "" && p.Path != "/" || p.RawQuery != "" || p.User != nil {
			return "", false, fmt.Errorf("%w: %s: url %q: only scheme://host[:port] is allowed", ErrBadRegistry, r.Name, r.URL)
		}
		u = p.Host
	}
	if u == "" {
		return "", false, fmt.Errorf("%w: %s: url is empty", ErrBadRegistry, r.Name)
	}
	if _, err := name.NewRegistry(u, name.StrictValidation); err != nil {
		return "", false, fmt.Errorf("%w: %s: url %q: %v", ErrBadRegistry, r.Name, r.URL, err)
	}
	return u, plain, nil
}

// Validate checks the definition against the smallest interval allowed.
func (r *Registry) Validate(minInterval time.Duration) error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("%w: name %q: want 1-63 lower-case letters, digits, '.', '_' or '-'", ErrBadRegistry, r.Name)
	}
	if _, _, err := r.Host(); err != nil {
		return err
	}
	if err := r.Filter.Validate(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadRegistry, r.Name, err)
	}
	switch r.Auth {
	case "", AuthBasic, AuthBearer:
	default:
		return fmt.Errorf("%w: %s: auth %q: want basic, bearer or nothing", ErrBadRegistry, r.Name, r.Auth)
	}
	if time.Duration(r.Interval) < minInterval {
		return fmt.Errorf("%w: %s: interval %s is below the minimum %s", ErrBadRegistry, r.Name, time.Duration(r.Interval), minInterval)
	}
	return nil
}

// ParseFilter reads a filter of the form REPOSITORY[:TAG] (glob patterns,
// path.Match syntax): "team/*", "app:v1.*", "*:latest".
func ParseFilter(s string) (scan.Filter, error) {
	var f scan.Filter
	if s == "" {
		return f, nil
	}
	f.Repository = s
	if i := strings.LastIndex(s, ":"); i >= 0 {
		f.Repository, f.Tag = s[:i], s[i+1:]
	}
	for _, p := range []string{f.Repository, f.Tag} {
		if _, err := path.Match(p, ""); err != nil {
			return scan.Filter{}, fmt.Errorf("%w: filter %q: pattern %q: %v", ErrBadRegistry, s, p, err)
		}
	}
	return f, nil
}

// Status is the outcome of a registry's latest scan.
type Status struct {
	// Started and Finished bound the latest pass (Finished is zero while
	// it runs).
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Images is how many images matched the filter; Scanned how many were
	// analysed in this pass, Skipped how many already had a result
	// (locally or from the primary), Failed how many failed every attempt.
	Images  int `json:"images"`
	Scanned int `json:"scanned"`
	Skipped int `json:"skipped"`
	Failed  int `json:"failed"`
	// Error says why the registry itself could not be listed.
	Error string `json:"error,omitempty"`
	// Replica is the leader that ran the pass.
	Replica string `json:"replica,omitempty"`
}

// RegistryInfo is a registry with its status, as GET /v1/registries lists it.
type RegistryInfo struct {
	Registry
	Status *Status `json:"status,omitempty"`
}

// RefEntry is the index entry of one scanned reference.
type RefEntry struct {
	Digest   string `json:"digest"`
	Registry string `json:"registry"`
	// Federated is set when the result is under fed/stream/scan/.
	Federated bool `json:"federated,omitempty"`
}

// Owners is the record under PrefixFedOwners: the federated registries
// whose scans put a digest's result in the federation stream.
type Owners struct {
	Registries []string `json:"registries"`
}

// Failure records why an image could not be scanned.
type Failure struct {
	Registry string    `json:"registry"`
	Ref      string    `json:"ref"`
	Digest   string    `json:"digest,omitempty"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"`
	At       time.Time `json:"at"`
	// RetryAt is when the next attempt is due; zero when the pass gave
	// up on the image (the next pass tries again).
	RetryAt time.Time `json:"retryAt,omitzero"`
}

// NormalizeRef returns the canonical form of an image reference, as the
// ref index stores it ("127.0.0.1:5000/app:1.0", "index.docker.io/library/alpine:latest").
func NormalizeRef(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("scanning: reference %q: %w", ref, err)
	}
	return r.Name(), nil
}
