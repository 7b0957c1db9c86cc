package report

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

// SARIF 2.1.0 types, the subset code-scanning tools read.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string         `json:"id"`
	ShortDescription sarifText      `json:"shortDescription"`
	Properties       map[string]any `json:"properties,omitempty"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

func sarifLevel(sev string) string {
	switch vulndb.SeverityRank(sev) {
	case 4, 3:
		return "error"
	case 2:
		return "warning"
	}
	return "note"
}

func writeSARIF(w io.Writer, reports []*Report) error {
	log := sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{}}
	for _, r := range reports {
		run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "palisade", Rules: []sarifRule{}}}, Results: []sarifResult{}}
		seen := map[string]bool{}
		addRule := func(id, text string, props map[string]any) {
			if !seen[id] {
				seen[id] = true
				run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{ID: id, ShortDescription: sarifText{Text: text}, Properties: props})
			}
		}
		for _, v := range r.Vulnerabilities {
			text := v.Summary
			if text == "" {
				text = v.ID + " in " + v.Package
			}
			props := map[string]any{"security-severity": fmt.Sprintf("%.1f", v.CVSSScore), "tags": []string{"vulnerability", "security", v.Severity}}
			addRule(v.ID, text, props)
			msg := fmt.Sprintf("%s %s in image %s (%s) is affected by %s (%s)", v.Package, v.Version, r.Ref, r.Digest, v.ID, v.Severity)
			if v.FixAvailable {
				msg += "; fixed in " + v.FixedVersion
			}
			run.Results = append(run.Results, sarifResult{RuleID: v.ID, Level: sarifLevel(v.Severity), Message: sarifText{Text: msg},
				Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: v.Path}}}}})
		}
		for _, s := range r.Secrets {
			id := "secret/" + s.Rule
			addRule(id, s.Title, map[string]any{"tags": []string{"secret", "security", s.Severity}})
			run.Results = append(run.Results, sarifResult{RuleID: id, Level: sarifLevel(s.Severity),
				Message: sarifText{Text: fmt.Sprintf("%s in image %s (%s)", s.Title, r.Ref, r.Digest)},
				Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: s.Path},
					Region: &sarifRegion{StartLine: max(s.Line, 1)}}}}})
		}
		log.Runs = append(log.Runs, run)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}
