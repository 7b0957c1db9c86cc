// Package vulndb is the vulnerability feed: OSV records (JSON, and the YAML
// form the PyPA advisory database uses) loaded from a directory or from the
// public OSV export's per-ecosystem zip files, and Alpine secdb files; and
// the matching of an image inventory against it, ecosystem by ecosystem,
// with each ecosystem's exact version ordering.
package vulndb

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v2"
)

// Advisory is the part of an OSV record that matching and reports use.
type Advisory struct {
	ID               string          `json:"id" yaml:"id"`
	Modified         string          `json:"modified,omitempty" yaml:"modified"`
	Aliases          []string        `json:"aliases,omitempty" yaml:"aliases"`
	Summary          string          `json:"summary,omitempty" yaml:"summary"`
	Details          string          `json:"details,omitempty" yaml:"details"`
	Severity         []Severity      `json:"severity,omitempty" yaml:"severity"`
	Affected         []Affected      `json:"affected" yaml:"affected"`
	DatabaseSpecific json.RawMessage `json:"database_specific,omitempty" yaml:"-"`
	Withdrawn        string          `json:"withdrawn,omitempty" yaml:"withdrawn"`
	// severityLabel is database_specific.severity (GHSA's rating), when set.
	severityLabel string
}

// Severity is one OSV severity entry: a type (CVSS_V3, CVSS_V4, ...) and a
// score, a CVSS vector for the CVSS types.
type Severity struct {
	Type  string `json:"type" yaml:"type"`
	Score string `json:"score" yaml:"score"`
}

// Affected is one affected package of an advisory.
type Affected struct {
	Package  AffectedPackage `json:"package" yaml:"package"`
	Ranges   []Range         `json:"ranges,omitempty" yaml:"ranges"`
	Versions []string        `json:"versions,omitempty" yaml:"versions"`
	Severity []Severity      `json:"severity,omitempty" yaml:"severity"`
}

// AffectedPackage names a package in an ecosystem.
type AffectedPackage struct {
	Ecosystem string `json:"ecosystem" yaml:"ecosystem"`
	Name      string `json:"name" yaml:"name"`
	Purl      string `json:"purl,omitempty" yaml:"purl"`
}

// Range is a version range: events in ecosystem order.
type Range struct {
	Type   string  `json:"type" yaml:"type"`
	Events []Event `json:"events" yaml:"events"`
}

// Event is one range event; exactly one field is set.
type Event struct {
	Introduced   string `json:"introduced,omitempty" yaml:"introduced"`
	Fixed        string `json:"fixed,omitempty" yaml:"fixed"`
	LastAffected string `json:"last_affected,omitempty" yaml:"last_affected"`
	Limit        string `json:"limit,omitempty" yaml:"limit"`
}

// ErrInvalidAdvisory marks a record that is not a usable OSV advisory.
var ErrInvalidAdvisory = errors.New("vulndb: invalid advisory")

// ParseOSVJSON decodes one OSV record in JSON.
func ParseOSVJSON(data []byte) (*Advisory, error) {
	var a Advisory
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidAdvisory, err)
	}
	if len(a.DatabaseSpecific) > 0 {
		var ds struct {
			Severity string `json:"severity"`
		}
		if json.Unmarshal(a.DatabaseSpecific, &ds) == nil {
			a.severityLabel = ds.Severity
		}
	}
	return &a, a.validate()
}

// ParseOSVYAML decodes one OSV record in YAML. Versions keep their exact
// text ("1.10" stays "1.10", not the number 1.1).
func ParseOSVYAML(data []byte) (*Advisory, error) {
	var a Advisory
	if err := yaml.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidAdvisory, err)
	}
	var ds struct {
		DatabaseSpecific struct {
			Severity string `yaml:"severity"`
		} `yaml:"database_specific"`
	}
	if yaml.Unmarshal(data, &ds) == nil {
		a.severityLabel = ds.DatabaseSpecific.Severity
	}
	return &a, a.validate()
}

func (a *Advisory) validate() error {
	if a.ID == "" {
		return fmt.Errorf("%w: no id", ErrInvalidAdvisory)
	}
	for i, af := range a.Affected {
		if af.Package.Ecosystem == "" || af.Package.Name == "" {
			return fmt.Errorf("%w %s: affected[%d]: package ecosystem %q name %q: both are required",
				ErrInvalidAdvisory, a.ID, i, af.Package.Ecosystem, af.Package.Name)
		}
		for j, r := range af.Ranges {
			for k, e := range r.Events {
				n := 0
				for _, s := range []string{e.Introduced, e.Fixed, e.LastAffected, e.Limit} {
					if s != "" {
						n++
					}
				}
				if n != 1 {
					return fmt.Errorf("%w %s: affected[%d].ranges[%d].events[%d]: %d fields set, want exactly one",
						ErrInvalidAdvisory, a.ID, i, j, k, n)
				}
			}
		}
	}
	return nil
}

// cves returns the advisory's ID and aliases that are CVE identifiers.
func (a *Advisory) cves() []string {
	var out []string
	for _, s := range append([]string{a.ID}, a.Aliases...) {
		if strings.HasPrefix(s, "CVE-") {
			out = append(out, s)
		}
	}
	return out
}
