// Package verdict is what admission knows about an image's scan, keyed by
// image digest: the compact verdict stored at scan/results/<digest> (and
// federated ones at federated/scan/<digest>), its conversion from a
// registry scan report, and an in-memory index the webhook reads on the
// request path.
//
// A stored value is JSON of either a [Verdict] or a full registryscan
// report.Report (told apart by the report's "vulnerabilities" or "packages"
// field); both decode to a Verdict.
package verdict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/policy/admit"
	"github.com/palisade-sec/palisade/registryscan/report"
)

// Store prefixes of scan results.
const (
	// PrefixLocal holds this cluster's results: scan/results/<digest>.
	PrefixLocal = "scan/results/"
	// PrefixFederated holds results the primary pushed: federated/scan/<digest>.
	PrefixFederated = "federated/scan/"
)

// ErrBad is returned for a stored value or request that is not a verdict.
var ErrBad = errors.New("verdict: bad verdict")

// Verdict is the compact scan result of one image.
type Verdict struct {
	// Digest is the image manifest digest ("sha256:<64 hex>").
	Digest string `json:"digest"`
	// IndexDigest is the multi-platform index the image was scanned
	// through, if any; a spec naming the index by digest finds the verdict.
	IndexDigest string `json:"indexDigest,omitempty"`
	// Ref is the reference the image was scanned as, for people and for
	// finding a verdict when a tag cannot be resolved.
	Ref string `json:"ref,omitempty"`
	// Signed says the image's signature was verified.
	Signed bool `json:"signed,omitempty"`
	// User is the image's configured user; empty is unknown.
	User string `json:"user,omitempty"`
	// Counts by severity, and of those with a fixed version available.
	Critical        int `json:"critical"`
	CriticalWithFix int `json:"criticalWithFix,omitempty"`
	High            int `json:"high"`
	HighWithFix     int `json:"highWithFix,omitempty"`
	Medium          int `json:"medium"`
	MediumWithFix   int `json:"mediumWithFix,omitempty"`
	Low             int `json:"low,omitempty"`
	// CVEs are the advisory identifiers and their aliases.
	CVEs []string `json:"cves,omitempty"`
	// ScannedAt is when the image was scanned (or its findings re-matched).
	ScannedAt time.Time `json:"scannedAt,omitzero"`
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest reports whether d is a sha256 digest in canonical form.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// MaxCVEs bounds the identifiers one verdict carries.
const MaxCVEs = 100000

// Validate checks the fields a stored verdict must have right.
func (v *Verdict) Validate() error {
	switch {
	case !ValidDigest(v.Digest):
		return fmt.Errorf("%w: digest %q is not sha256:<64 lower-case hex>", ErrBad, v.Digest)
	case v.IndexDigest != "" && !ValidDigest(v.IndexDigest):
		return fmt.Errorf("%w: indexDigest %q is not sha256:<64 lower-case hex>", ErrBad, v.IndexDigest)
	case len(v.CVEs) > MaxCVEs:
		return fmt.Errorf("%w: %d cves (limit %d)", ErrBad, len(v.CVEs), MaxCVEs)
	}
	for name, n := range map[string]int{"critical": v.Critical, "criticalWithFix": v.CriticalWithFix, "high": v.High,
		"highWithFix": v.HighWithFix, "medium": v.Medium, "mediumWithFix": v.MediumWithFix, "low": v.Low} {
		if n < 0 {
			return fmt.Errorf("%w: %s is negative (%d)", ErrBad, name, n)
		}
	}
	if v.CriticalWithFix > v.Critical || v.HighWithFix > v.High || v.MediumWithFix > v.Medium {
		return fmt.Errorf("%w: more findings with a fix than findings", ErrBad)
	}
	return nil
}

// Admit turns the verdict into what the admission engine reads.
func (v *Verdict) Admit() admit.ImageVerdict {
	return admit.ImageVerdict{
		Scanned: true, Signed: v.Signed, User: v.User,
		CriticalCount: v.Critical, CriticalWithFix: v.CriticalWithFix,
		HighCount: v.High, HighWithFix: v.HighWithFix,
		MediumCount: v.Medium, MediumWithFix: v.MediumWithFix,
		CVENames: v.CVEs,
	}
}

// FromReport makes the verdict of a registry scan report.
func FromReport(r *report.Report) Verdict {
	v := Verdict{Digest: r.Digest, IndexDigest: r.IndexDigest, Ref: r.Ref, ScannedAt: r.MatchedAt}
	if v.ScannedAt.IsZero() {
		v.ScannedAt = r.ScannedAt
	}
	seen := map[string]bool{}
	for _, f := range r.Vulnerabilities {
		switch strings.ToUpper(f.Severity) {
		case "CRITICAL":
			v.Critical++
			if f.FixAvailable {
				v.CriticalWithFix++
			}
		case "HIGH":
			v.High++
			if f.FixAvailable {
				v.HighWithFix++
			}
		case "MEDIUM":
			v.Medium++
			if f.FixAvailable {
				v.MediumWithFix++
			}
		case "LOW":
			v.Low++
		}
		for _, id := range append([]string{f.ID}, f.Aliases...) {
			if id != "" && !seen[id] {
				seen[id] = true
				v.CVEs = append(v.CVEs, id)
			}
		}
	}
	slices.Sort(v.CVEs)
	return v
}

// Decode reads a stored value: a compact verdict or a full report.
func Decode(data []byte) (Verdict, error) {
	var probe struct {
		Vulnerabilities json.RawMessage `json:"vulnerabilities"`
		Packages        json.RawMessage `json:"packages"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return Verdict{}, fmt.Errorf("%w: %v", ErrBad, err)
	}
	var v Verdict
	if probe.Vulnerabilities != nil || probe.Packages != nil {
		var r report.Report
		if err := json.Unmarshal(data, &r); err != nil {
			return Verdict{}, fmt.Errorf("%w: report: %v", ErrBad, err)
		}
		v = FromReport(&r)
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return Verdict{}, fmt.Errorf("%w: %v", ErrBad, err)
		}
	}
	if err := v.Validate(); err != nil {
		return Verdict{}, err
	}
	return v, nil
}

// Index holds the verdicts of both prefixes in memory, by digest and by
// index digest, plus the reference each image was scanned as. It is safe
// for concurrent use; lookups take a read lock only.
type Index struct {
	mu    sync.RWMutex
	byKey map[string]Verdict  // store key -> verdict
	byDig map[string][]string // digest or index digest -> store keys
	byRef map[string][]string // scanned-as reference -> store keys
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byKey: map[string]Verdict{}, byDig: map[string][]string{}, byRef: map[string][]string{}}
}

// Put records the verdict stored at key, replacing the previous one.
func (x *Index) Put(key string, v Verdict) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remove(key)
	x.byKey[key] = v
	x.byDig[v.Digest] = append(x.byDig[v.Digest], key)
	if v.IndexDigest != "" && v.IndexDigest != v.Digest {
		x.byDig[v.IndexDigest] = append(x.byDig[v.IndexDigest], key)
	}
	if v.Ref != "" {
		x.byRef[v.Ref] = append(x.byRef[v.Ref], key)
	}
}

// Delete forgets the verdict stored at key.
func (x *Index) Delete(key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remove(key)
}

// Reset forgets every verdict under prefix.
func (x *Index) Reset(prefix string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range x.byKey {
		if strings.HasPrefix(k, prefix) {
			x.remove(k)
		}
	}
}

func (x *Index) remove(key string) {
	old, ok := x.byKey[key]
	if !ok {
		return
	}
	delete(x.byKey, key)
	drop := func(m map[string][]string, k string) {
		if k == "" {
			return
		}
		l := slices.DeleteFunc(m[k], func(s string) bool { return s == key })
		if len(l) == 0 {
			delete(m, k)
		} else {
			m[k] = l
		}
	}
	drop(x.byDig, old.Digest)
	drop(x.byDig, old.IndexDigest)
	drop(x.byRef, old.Ref)
}

// Get returns the verdict stored at key.
func (x *Index) Get(key string) (Verdict, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	v, ok := x.byKey[key]
	return v, ok
}

// Len is the number of verdicts held.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byKey)
}

// ByDigest returns the verdict of the image with manifest or index digest
// d. When this cluster and the primary both have one, the later scan wins;
// on a tie the federated one.
func (x *Index) ByDigest(d string) (Verdict, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.best(x.byDig[d])
}

// ByRef returns the verdict of the image last scanned as ref.
func (x *Index) ByRef(ref string) (Verdict, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.best(x.byRef[ref])
}

func (x *Index) best(keys []string) (Verdict, bool) {
	var (
		out   Verdict
		found bool
		fed   bool
	)
	for _, k := range keys {
		v := x.byKey[k]
		isFed := strings.HasPrefix(k, PrefixFederated)
		if !found || v.ScannedAt.After(out.ScannedAt) || (v.ScannedAt.Equal(out.ScannedAt) && isFed && !fed) {
			out, found, fed = v, true, isFed
		}
	}
	return out, found
}
