package vulndb

import (
	"math"
	"strings"
)

// Severity ratings, highest first.
const (
	Critical = "CRITICAL"
	High     = "HIGH"
	Medium   = "MEDIUM"
	Low      = "LOW"
	Unknown  = "UNKNOWN"
)

// SeverityRank orders ratings: Critical 4 ... Low 1, anything else 0.
func SeverityRank(s string) int {
	switch strings.ToUpper(s) {
	case Critical:
		return 4
	case High:
		return 3
	case Medium, "MODERATE":
		return 2
	case Low:
		return 1
	}
	return 0
}

// ratingOf maps a CVSS base score to its qualitative rating.
func ratingOf(score float64) string {
	switch {
	case score >= 9:
		return Critical
	case score >= 7:
		return High
	case score >= 4:
		return Medium
	case score > 0:
		return Low
	}
	return Unknown
}

// CVSS3Score computes the base score of a CVSS v3.0/v3.1 vector
// ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"). ok is false for a
// vector that is not v3 or lacks a base metric.
func CVSS3Score(vector string) (score float64, ok bool) {
	parts := strings.Split(vector, "/")
	if len(parts) < 9 || (parts[0] != "CVSS:3.1" && parts[0] != "CVSS:3.0") {
		return 0, false
	}
	m := map[string]string{}
	for _, p := range parts[1:] {
		k, v, found := strings.Cut(p, ":")
		if !found {
			return 0, false
		}
		m[k] = v
	}
	weight := func(metric string, w map[string]float64) (float64, bool) {
		x, ok := w[m[metric]]
		return x, ok
	}
	scope := m["S"]
	if scope != "U" && scope != "C" {
		return 0, false
	}
	av, ok1 := weight("AV", map[string]float64{"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2})
	ac, ok2 := weight("AC", map[string]float64{"L": 0.77, "H": 0.44})
	prW := map[string]float64{"N": 0.85, "L": 0.62, "H": 0.27}
	if scope == "C" {
		prW = map[string]float64{"N": 0.85, "L": 0.68, "H": 0.5}
	}
	pr, ok3 := weight("PR", prW)
	ui, ok4 := weight("UI", map[string]float64{"N": 0.85, "R": 0.62})
	cia := map[string]float64{"H": 0.56, "L": 0.22, "N": 0}
	c, ok5 := weight("C", cia)
	i, ok6 := weight("I", cia)
	a, ok7 := weight("A", cia)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return 0, false
	}
	iss := 1 - (1-c)*(1-i)*(1-a)
	var impact float64
	if scope == "U" {
		impact = 6.42 * iss
	} else {
		impact = 7.52*(iss-0.029) - 3.25*math.Pow(iss-0.02, 15)
	}
	expl := 8.22 * av * ac * pr * ui
	if impact <= 0 {
		return 0, true
	}
	if scope == "U" {
		return roundUp(math.Min(impact+expl, 10)), true
	}
	return roundUp(math.Min(1.08*(impact+expl), 10)), true
}

// roundUp is CVSS v3.1's Roundup: the smallest number with one decimal
// place that is at least x, free of floating-point artefacts.
func roundUp(x float64) float64 {
	n := int64(math.Round(x * 100000))
	if n%10000 == 0 {
		return float64(n) / 100000
	}
	return float64(n/10000+1) / 10
}

// rate returns the advisory's (or affected entry's) CVSS score and vector
// and rating: a computed CVSS v3 score first, then the database's own
// rating label (GHSA), then unknown.
func rate(a *Advisory, af *Affected) (rating string, score float64, vector string) {
	for _, sevs := range [][]Severity{af.Severity, a.Severity} {
		for _, s := range sevs {
			if s.Type == "CVSS_V3" {
				if sc, ok := CVSS3Score(s.Score); ok {
					return ratingOf(sc), sc, s.Score
				}
			}
		}
	}
	vector = ""
	for _, s := range a.Severity {
		if strings.HasPrefix(s.Type, "CVSS") {
			vector = s.Score
			break
		}
	}
	if r := strings.ToUpper(a.severityLabel); SeverityRank(r) > 0 {
		if r == "MODERATE" {
			r = Medium
		}
		return r, 0, vector
	}
	return Unknown, 0, vector
}
