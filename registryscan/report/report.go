// Package report holds the result of scanning one image, keyed by the
// image's manifest digest, and writes it as a table, JSON, SARIF 2.1.0 or a
// CycloneDX 1.5 JSON bill of materials.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/secret"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

// Report is the scan result of one image. It is plain data: JSON encoding
// and decoding round-trip it exactly, so it can be cached, stored and sent
// between clusters by digest.
type Report struct {
	// Digest is the image manifest's digest, the report's key.
	Digest string `json:"digest"`
	// Ref is the reference the image was scanned as (tag or digest), or a
	// tarball's path.
	Ref string `json:"ref"`
	// IndexDigest is the digest of the multi-platform index the image was
	// reached through, if any.
	IndexDigest string `json:"indexDigest,omitempty"`
	// Platform is os/arch[/variant] from the image config.
	Platform string `json:"platform,omitempty"`
	// Layers are the layer digests, lowest first.
	Layers          []string             `json:"layers"`
	OS              *inventory.OSRelease `json:"os,omitempty"`
	Packages        []inventory.Package  `json:"packages"`
	Vulnerabilities []vulndb.Finding     `json:"vulnerabilities"`
	Secrets         []secret.Finding     `json:"secrets"`
	Notes           []string             `json:"notes,omitempty"`
	// FeedDigest identifies the feed the vulnerabilities were matched with.
	FeedDigest string    `json:"feedDigest,omitempty"`
	ScannedAt  time.Time `json:"scannedAt"`
	MatchedAt  time.Time `json:"matchedAt"`
}

// Counts are vulnerability counts by severity.
type Counts struct {
	Critical, High, Medium, Low, Unknown int
	// WithFix counts those with a fixed version available.
	WithFix int
}

// Count tallies the report's vulnerabilities.
func (r *Report) Count() Counts {
	var c Counts
	for _, v := range r.Vulnerabilities {
		switch vulndb.SeverityRank(v.Severity) {
		case 4:
			c.Critical++
		case 3:
			c.High++
		case 2:
			c.Medium++
		case 1:
			c.Low++
		default:
			c.Unknown++
		}
		if v.FixAvailable {
			c.WithFix++
		}
	}
	return c
}

// Exceeds reports whether any vulnerability or secret is at least as severe
// as threshold ("critical", "high", "medium" or "low"), and how many are.
func (r *Report) Exceeds(threshold string) (bool, int, error) {
	min := vulndb.SeverityRank(threshold)
	if min == 0 {
		return false, 0, fmt.Errorf("report: unknown severity threshold %q (want critical, high, medium or low)", threshold)
	}
	n := 0
	for _, v := range r.Vulnerabilities {
		if vulndb.SeverityRank(v.Severity) >= min {
			n++
		}
	}
	for _, s := range r.Secrets {
		if vulndb.SeverityRank(s.Severity) >= min {
			n++
		}
	}
	return n > 0, n, nil
}

// Format is an output format.
type Format string

// Formats.
const (
	Table     Format = "table"
	JSON      Format = "json"
	SARIF     Format = "sarif"
	CycloneDX Format = "cyclonedx"
)

// Write writes reports in format f. JSON writes one report as an object
// and several as an array; SARIF writes one run per report; CycloneDX one
// document per report (several as an array).
func Write(w io.Writer, f Format, reports ...*Report) error {
	switch f {
	case Table:
		for _, r := range reports {
			if err := writeTable(w, r); err != nil {
				return err
			}
		}
		return nil
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if len(reports) == 1 {
			return enc.Encode(reports[0])
		}
		return enc.Encode(reports)
	case SARIF:
		return writeSARIF(w, reports)
	case CycloneDX:
		return writeCycloneDX(w, reports)
	}
	return fmt.Errorf("report: unknown format %q (want table, json, sarif or cyclonedx)", f)
}

func writeTable(w io.Writer, r *Report) error {
	osName := "unknown OS"
	if r.OS != nil {
		osName = r.OS.ID + " " + r.OS.VersionID
	}
	c := r.Count()
	fmt.Fprintf(w, "%s (%s)\nDigest: %s\nOS: %s, %d packages\nVulnerabilities: %d (critical %d, high %d, medium %d, low %d, unknown %d; %d with a fix)\n",
		r.Ref, r.Platform, r.Digest, osName, len(r.Packages), len(r.Vulnerabilities), c.Critical, c.High, c.Medium, c.Low, c.Unknown, c.WithFix)
	if len(r.Vulnerabilities) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nSEVERITY\tID\tPACKAGE\tINSTALLED\tFIXED\tPATH")
		for _, v := range r.Vulnerabilities {
			id := v.ID
			if cves := cveAliases(v.Aliases); cves != "" {
				id += " (" + cves + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Severity, id, v.Package, v.Version, v.FixedVersion, v.Path)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Secrets) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nSECRET\tRULE\tFILE")
		for _, s := range r.Secrets {
			fmt.Fprintf(tw, "%s\t%s\t%s:%d\n", s.Severity, s.Rule, s.Path, s.Line)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	_, err := fmt.Fprintln(w)
	return err
}

func cveAliases(aliases []string) string {
	var out []string
	for _, a := range aliases {
		if strings.HasPrefix(a, "CVE-") {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
