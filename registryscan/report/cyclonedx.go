package report

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/palisade-sec/palisade/registryscan/inventory"
)

// CycloneDX 1.5 JSON, the subset a bill of materials with vulnerabilities
// needs.
type cdxBOM struct {
	BOMFormat       string      `json:"bomFormat"`
	SpecVersion     string      `json:"specVersion"`
	Version         int         `json:"version"`
	Metadata        cdxMetadata `json:"metadata"`
	Components      []cdxComp   `json:"components"`
	Vulnerabilities []cdxVuln   `json:"vulnerabilities"`
}

type cdxMetadata struct {
	Timestamp string   `json:"timestamp"`
	Component cdxComp  `json:"component"`
	Tools     cdxTools `json:"tools"`
}

type cdxTools struct {
	Components []cdxComp `json:"components"`
}

type cdxComp struct {
	BOMRef     string        `json:"bom-ref,omitempty"`
	Type       string        `json:"type"`
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	PURL       string        `json:"purl,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type cdxVuln struct {
	BOMRef         string       `json:"bom-ref,omitempty"`
	ID             string       `json:"id"`
	Source         *cdxSource   `json:"source,omitempty"`
	Ratings        []cdxRating  `json:"ratings,omitempty"`
	Description    string       `json:"description,omitempty"`
	Recommendation string       `json:"recommendation,omitempty"`
	Affects        []cdxAffects `json:"affects"`
}

type cdxSource struct {
	Name string `json:"name"`
}

type cdxRating struct {
	Score    float64 `json:"score,omitempty"`
	Severity string  `json:"severity"`
	Method   string  `json:"method,omitempty"`
	Vector   string  `json:"vector,omitempty"`
}

type cdxAffects struct {
	Ref string `json:"ref"`
}

// PURL returns the package URL of p in an image whose os-release is osr.
func PURL(osr *inventory.OSRelease, p inventory.Package) string {
	esc := url.PathEscape
	distro := ""
	if osr != nil {
		distro = "?distro=" + url.QueryEscape(osr.ID+"-"+osr.VersionID)
	}
	switch p.Type {
	case inventory.Deb:
		ns := "debian"
		if osr != nil && osr.ID != "" {
			ns = osr.ID
		}
		return "pkg:deb/" + ns + "/" + esc(p.Name) + "@" + esc(p.Version) + distro
	case inventory.APK:
		return "pkg:apk/alpine/" + esc(p.Name) + "@" + esc(p.Version) + distro
	case inventory.RPM:
		ns := "redhat"
		if osr != nil && osr.ID != "" {
			ns = osr.ID
		}
		return "pkg:rpm/" + ns + "/" + esc(p.Name) + "@" + esc(p.Version) + distro
	case inventory.GoModule:
		return "pkg:golang/" + p.Name + "@" + esc(p.Version)
	case inventory.NPM:
		return "pkg:npm/" + strings.Replace(p.Name, "@", "%40", 1) + "@" + esc(p.Version)
	case inventory.Python:
		return "pkg:pypi/" + esc(strings.ToLower(p.Name)) + "@" + esc(p.Version)
	case inventory.Java:
		g, a, ok := strings.Cut(p.Name, ":")
		if !ok {
			return "pkg:maven/" + esc(p.Name) + "@" + esc(p.Version)
		}
		return "pkg:maven/" + esc(g) + "/" + esc(a) + "@" + esc(p.Version)
	case inventory.Cargo:
		return "pkg:cargo/" + esc(p.Name) + "@" + esc(p.Version)
	}
	return ""
}

func cdxDocument(r *Report) cdxBOM {
	bom := cdxBOM{BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		Metadata: cdxMetadata{
			Timestamp: r.ScannedAt.UTC().Format("2006-01-02T15:04:05Z"),
			Component: cdxComp{BOMRef: r.Digest, Type: "container", Name: r.Ref, Version: r.Digest},
			Tools:     cdxTools{Components: []cdxComp{{Type: "application", Name: "palisade"}}},
		},
		Components: []cdxComp{}, Vulnerabilities: []cdxVuln{}}
	refs := map[string]string{}
	for i, p := range r.Packages {
		ref := PURL(r.OS, p)
		key := string(p.Type) + "\x00" + p.Name + "\x00" + p.Version + "\x00" + p.Path
		if _, dup := refs[key]; dup {
			continue
		}
		bomRef := ref + "#" + p.Path
		if ref == "" {
			bomRef = fmt.Sprintf("pkg-%d", i)
		}
		refs[key] = bomRef
		props := []cdxProperty{{Name: "palisade:package:type", Value: string(p.Type)}, {Name: "palisade:path", Value: p.Path}}
		if p.Layer != "" {
			props = append(props, cdxProperty{Name: "palisade:layer", Value: p.Layer})
		}
		if p.SourceName != "" {
			props = append(props, cdxProperty{Name: "palisade:source", Value: p.SourceName + " " + p.SourceVersion})
		}
		bom.Components = append(bom.Components, cdxComp{BOMRef: bomRef, Type: "library", Name: p.Name, Version: p.Version, PURL: ref, Properties: props})
	}
	byID := map[string]int{}
	for _, v := range r.Vulnerabilities {
		ref := refs[string(v.Type)+"\x00"+v.Package+"\x00"+v.Version+"\x00"+v.Path]
		if i, ok := byID[v.ID]; ok {
			bom.Vulnerabilities[i].Affects = append(bom.Vulnerabilities[i].Affects, cdxAffects{Ref: ref})
			continue
		}
		cv := cdxVuln{BOMRef: v.ID, ID: v.ID, Source: &cdxSource{Name: "OSV"}, Description: v.Summary, Affects: []cdxAffects{{Ref: ref}}}
		rating := cdxRating{Severity: strings.ToLower(v.Severity)}
		if v.CVSSScore > 0 {
			rating.Score, rating.Method, rating.Vector = v.CVSSScore, "CVSSv31", v.CVSSVector
		}
		cv.Ratings = []cdxRating{rating}
		if v.FixAvailable {
			cv.Recommendation = "Upgrade " + v.Package + " to " + v.FixedVersion
		}
		byID[v.ID] = len(bom.Vulnerabilities)
		bom.Vulnerabilities = append(bom.Vulnerabilities, cv)
	}
	return bom
}

func writeCycloneDX(w io.Writer, reports []*Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(reports) == 1 {
		return enc.Encode(cdxDocument(reports[0]))
	}
	docs := make([]cdxBOM, 0, len(reports))
	for _, r := range reports {
		docs = append(docs, cdxDocument(r))
	}
	return enc.Encode(docs)
}
