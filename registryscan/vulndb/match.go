package vulndb

import (
	"sort"
	"strings"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/version"
)

// Finding is one advisory that affects one installed package.
type Finding struct {
	// ID is the advisory's identifier (GO-..., GHSA-..., CVE-...).
	ID      string   `json:"id"`
	Aliases []string `json:"aliases,omitempty"`
	Summary string   `json:"summary,omitempty"`
	// Severity is CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN: from the CVSS v3
	// base score when the record has one, else the database's rating.
	Severity   string  `json:"severity"`
	CVSSScore  float64 `json:"cvssScore,omitempty"`
	CVSSVector string  `json:"cvssVector,omitempty"`
	// The affected package as installed.
	Package    string         `json:"package"`
	Version    string         `json:"version"`
	Type       inventory.Type `json:"type"`
	SourceName string         `json:"sourceName,omitempty"`
	Path       string         `json:"path"`
	Layer      string         `json:"layer,omitempty"`
	// Ecosystem is the OSV ecosystem matched ("Debian:12", "Go").
	Ecosystem string `json:"ecosystem"`
	// FixedVersion is the lowest version that fixes it, if there is one.
	FixedVersion string `json:"fixedVersion,omitempty"`
	FixAvailable bool   `json:"fixAvailable"`
}

// target is how one installed package is looked up in the feed.
type target struct {
	eco     version.Ecosystem
	release string
	name    string
	version string
}

// targetOf maps a package to its OSV ecosystem, name and version. Debian
// advisories name source packages, so a deb is looked up by its source
// package and source version; an apk by its origin.
func targetOf(osr *inventory.OSRelease, p inventory.Package) (target, bool) {
	id, rel := "", ""
	if osr != nil {
		id, rel = osr.ID, osr.VersionID
	}
	switch p.Type {
	case inventory.Deb:
		t := target{eco: version.Debian, name: p.SourceName, version: p.SourceVersion}
		if t.name == "" {
			t.name = p.Name
		}
		if t.version == "" {
			t.version = p.Version
		}
		switch id {
		case "ubuntu":
			t.eco, t.release = version.Ubuntu, rel
		case "debian":
			t.release, _, _ = strings.Cut(rel, ".")
		}
		return t, true
	case inventory.APK:
		t := target{eco: version.Alpine, name: p.SourceName, version: p.Version}
		if t.name == "" {
			t.name = p.Name
		}
		if parts := strings.Split(rel, "."); id == "alpine" && len(parts) >= 2 {
			t.release = "v" + parts[0] + "." + parts[1]
		}
		return t, true
	case inventory.RPM:
		eco := map[string]version.Ecosystem{"rhel": version.RedHat, "rocky": "Rocky Linux", "almalinux": "AlmaLinux",
			"opensuse-leap": "openSUSE", "opensuse-tumbleweed": "openSUSE", "sles": "SUSE", "mageia": "Mageia", "openEuler": "openEuler"}[id]
		if eco == "" {
			eco = version.RedHat
		}
		name := p.SourceName
		if name == "" {
			name = p.Name
		}
		major, _, _ := strings.Cut(rel, ".")
		return target{eco: eco, release: major, name: name, version: p.Version}, true
	case inventory.GoModule:
		if p.Version == "" || p.Version == "(devel)" {
			return target{}, false
		}
		return target{eco: version.Go, name: p.Name, version: p.Version}, true
	case inventory.NPM:
		return target{eco: version.NPM, name: p.Name, version: p.Version}, true
	case inventory.Python:
		return target{eco: version.PyPI, name: p.Name, version: p.Version}, true
	case inventory.Java:
		return target{eco: version.Maven, name: p.Name, version: p.Version}, true
	case inventory.Cargo:
		return target{eco: version.CratesIO, name: p.Name, version: p.Version}, true
	}
	return target{}, false
}

// releaseMatches says whether an advisory for ecosystem release er applies
// to an image of release ir. An advisory without a release applies to
// all; otherwise they must agree ("22.04" matches "22.04:LTS").
func releaseMatches(er, ir string) bool {
	if er == "" {
		return true
	}
	if ir == "" {
		return false
	}
	return er == ir || strings.HasPrefix(er, ir+":")
}

// Match returns the advisories that affect the image's packages, most
// severe first.
func (db *DB) Match(img *inventory.Image) []Finding {
	return db.MatchPackages(img.OS, img.Packages)
}

// MatchPackages matches packages of an image whose os-release is osr (nil
// when unknown).
func (db *DB) MatchPackages(osr *inventory.OSRelease, pkgs []inventory.Package) []Finding {
	out := []Finding{}
	seen := map[[3]string]bool{}
	for _, p := range pkgs {
		t, ok := targetOf(osr, p)
		if !ok {
			continue
		}
		entries := db.index[t.eco][normaliseName(t.eco, t.name)]
		if len(entries) == 0 {
			continue
		}
		cmp, err := version.Comparer(t.eco)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !releaseMatches(e.release, t.release) {
				continue
			}
			hit, fixed := affects(cmp, t.version, e.versions, e.ranges)
			if !hit {
				continue
			}
			key := [3]string{e.adv.ID, p.Path, p.Name}
			if seen[key] {
				continue
			}
			seen[key] = true
			rating, score, vector := e.rating, e.score, e.vector
			out = append(out, Finding{
				ID: e.adv.ID, Aliases: e.adv.Aliases, Summary: e.adv.Summary,
				Severity: rating, CVSSScore: score, CVSSVector: vector,
				Package: p.Name, Version: p.Version, Type: p.Type, SourceName: p.SourceName, Path: p.Path, Layer: p.Layer,
				Ecosystem: e.aff.Package.Ecosystem, FixedVersion: fixed, FixAvailable: fixed != "",
			})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := SeverityRank(out[i].Severity), SeverityRank(out[j].Severity); ri != rj {
			return ri > rj
		}
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// sortedRanges returns the ECOSYSTEM and SEMVER ranges of af with their
// events in version order ("0" first).
func sortedRanges(cmp func(a, b string) int, af *Affected) [][]Event {
	var out [][]Event
	for _, r := range af.Ranges {
		if r.Type != "ECOSYSTEM" && r.Type != "SEMVER" {
			continue
		}
		evs := append([]Event(nil), r.Events...)
		key := func(e Event) string {
			switch {
			case e.Introduced != "":
				return e.Introduced
			case e.Fixed != "":
				return e.Fixed
			case e.LastAffected != "":
				return e.LastAffected
			}
			return e.Limit
		}
		sort.SliceStable(evs, func(i, j int) bool {
			ki, kj := key(evs[i]), key(evs[j])
			if ki == "0" || kj == "0" {
				return ki == "0" && kj != "0"
			}
			return cmp(ki, kj) < 0
		})
		out = append(out, evs)
	}
	return out
}

// affects evaluates an affected entry for version v: the explicit version
// list (published version strings, matched exactly), then the sorted
// ranges as the OSV schema specifies (introduced switches on; fixed, and a
// version past last_affected, switch off). fixed is the lowest fix above v.
func affects(cmp func(a, b string) int, v string, versions map[string]bool, ranges [][]Event) (hit bool, fixed string) {
	hit = versions[v]
	for _, evs := range ranges {
		in := false
		for _, e := range evs {
			switch {
			case e.Introduced != "":
				if e.Introduced == "0" || cmp(v, e.Introduced) >= 0 {
					in = true
				} else {
					// Every later event is above v too.
					goto done
				}
			case e.Fixed != "":
				if cmp(v, e.Fixed) >= 0 {
					in = false
				} else {
					if in && fixed == "" {
						fixed = e.Fixed
					}
					goto done
				}
			case e.LastAffected != "":
				if cmp(v, e.LastAffected) > 0 {
					in = false
				} else {
					goto done
				}
			}
		}
	done:
		if in {
			hit = true
		}
	}
	if !hit {
		fixed = ""
	}
	return hit, fixed
}
