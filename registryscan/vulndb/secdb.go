package vulndb

import (
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v2"
)

// secdbFile is an Alpine secdb document (alpinelinux/alpine-secdb).
type secdbFile struct {
	DistroVersion string `yaml:"distroversion"`
	RepoName      string `yaml:"reponame"`
	Packages      []struct {
		Pkg struct {
			Name     string              `yaml:"name"`
			Secfixes map[string][]string `yaml:"secfixes"`
		} `yaml:"pkg"`
	} `yaml:"packages"`
}

// ParseSecDB converts an Alpine secdb file into advisories, one per CVE and
// package, in ecosystem "Alpine:vX.Y": every version before the fixing one
// is affected. A fix version of "0" (the CVE never applied to Alpine's
// package) gives no advisory.
func ParseSecDB(data []byte) ([]*Advisory, error) {
	var f secdbFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("secdb: %w", err)
	}
	if f.DistroVersion == "" {
		return nil, fmt.Errorf("secdb: no distroversion")
	}
	eco := "Alpine:" + f.DistroVersion
	var out []*Advisory
	for i, p := range f.Packages {
		if p.Pkg.Name == "" {
			return nil, fmt.Errorf("secdb: packages[%d]: no name", i)
		}
		fixes := make([]string, 0, len(p.Pkg.Secfixes))
		for fixed := range p.Pkg.Secfixes {
			fixes = append(fixes, fixed)
		}
		sort.Strings(fixes)
		for _, fixed := range fixes {
			ids := p.Pkg.Secfixes[fixed]
			if fixed == "0" || strings.HasPrefix(fixed, "0-") {
				continue
			}
			for _, line := range ids {
				for _, id := range strings.Fields(line) {
					if !strings.HasPrefix(id, "CVE-") {
						continue
					}
					out = append(out, &Advisory{
						ID: id,
						Affected: []Affected{{
							Package: AffectedPackage{Ecosystem: eco, Name: p.Pkg.Name},
							Ranges:  []Range{{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: fixed}}}},
						}},
					})
				}
			}
		}
	}
	return out, nil
}

// isSecDB tells an Alpine secdb YAML document from an OSV one.
func isSecDB(data []byte) bool {
	head := data
	if len(head) > 4096 {
		head = head[:4096]
	}
	return strings.Contains(string(head), "distroversion:")
}
