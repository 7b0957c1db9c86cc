package verdict

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/registryscan/report"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

func dig(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

func TestFromReport(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &report.Report{
		Digest: dig('a'), IndexDigest: dig('b'), Ref: "reg.example/app:1", ScannedAt: at.Add(-time.Hour), MatchedAt: at,
		Vulnerabilities: []vulndb.Finding{
			{ID: "CVE-2024-1", Severity: "CRITICAL", FixAvailable: true},
			{ID: "DSA-1", Aliases: []string{"CVE-2024-2"}, Severity: "CRITICAL"},
			{ID: "CVE-2024-3", Severity: "HIGH", FixAvailable: true},
			{ID: "CVE-2024-3", Severity: "HIGH", FixAvailable: true}, // same advisory in a second package
			{ID: "GHSA-x", Severity: "MEDIUM"},
			{ID: "CVE-2024-5", Severity: "LOW"},
			{ID: "CVE-2024-6", Severity: "UNKNOWN"},
		},
	}
	got := FromReport(r)
	want := Verdict{
		Digest: dig('a'), IndexDigest: dig('b'), Ref: "reg.example/app:1", ScannedAt: at,
		Critical: 2, CriticalWithFix: 1, High: 2, HighWithFix: 2, Medium: 1, Low: 1,
		CVEs: []string{"CVE-2024-1", "CVE-2024-2", "CVE-2024-3", "CVE-2024-5", "CVE-2024-6", "DSA-1", "GHSA-x"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// The stored form of a full report decodes to the same verdict.
	b, _ := json.Marshal(r)
	back, err := Decode(b)
	if err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("Decode(report) = %+v, %v", back, err)
	}
	av := got.Admit()
	if !av.Scanned || av.CriticalCount != 2 || av.CriticalWithFix != 1 || av.HighCount != 2 || len(av.CVENames) != 7 {
		t.Errorf("Admit() = %+v", av)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // error detail; empty for success
	}{
		{"compact", `{"digest":"` + dig('1') + `","critical":3,"criticalWithFix":1,"cves":["CVE-1"]}`, ""},
		{"not json", `{`, "verdict: bad verdict"},
		{"unknown field", `{"digest":"` + dig('1') + `","critcal":3}`, `unknown field "critcal"`},
		{"bad digest", `{"digest":"sha256:abc"}`, `digest "sha256:abc"`},
		{"upper-case digest", `{"digest":"sha256:` + strings.Repeat("A", 64) + `"}`, "lower-case"},
		{"bad index digest", `{"digest":"` + dig('1') + `","indexDigest":"x"}`, `indexDigest "x"`},
		{"negative", `{"digest":"` + dig('1') + `","high":-1}`, "high is negative"},
		{"more fixed than found", `{"digest":"` + dig('1') + `","critical":1,"criticalWithFix":2}`, "more findings with a fix"},
		{"report without digest", `{"ref":"x","packages":[],"vulnerabilities":[]}`, `digest ""`},
		{"report of wrong shape", `{"digest":"` + dig('1') + `","vulnerabilities":{}}`, "report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.in))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("err = %v", err)
			case tt.want != "" && (!errors.Is(err, ErrBad) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want ErrBad with %q", err, tt.want)
			}
		})
	}
}

func TestIndex(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	x := NewIndex()
	x.Put(PrefixLocal+dig('a'), Verdict{Digest: dig('a'), IndexDigest: dig('i'), Ref: "app:1", Critical: 1, ScannedAt: old})
	x.Put(PrefixFederated+dig('a'), Verdict{Digest: dig('a'), Critical: 2, ScannedAt: old})
	x.Put(PrefixLocal+dig('b'), Verdict{Digest: dig('b'), Ref: "app:1", Critical: 5, ScannedAt: old.Add(time.Hour)})

	tests := []struct {
		name         string
		lookup       func() (Verdict, bool)
		wantCritical int
		wantFound    bool
	}{
		{"tie goes to federated", func() (Verdict, bool) { return x.ByDigest(dig('a')) }, 2, true},
		{"by index digest", func() (Verdict, bool) { return x.ByDigest(dig('i')) }, 1, true},
		{"by ref: latest scan", func() (Verdict, bool) { return x.ByRef("app:1") }, 5, true},
		{"unknown", func() (Verdict, bool) { return x.ByDigest(dig('z')) }, 0, false},
	}
	for _, tt := range tests {
		v, ok := tt.lookup()
		if ok != tt.wantFound || v.Critical != tt.wantCritical {
			t.Errorf("%s: got %d found %v, want %d found %v", tt.name, v.Critical, ok, tt.wantCritical, tt.wantFound)
		}
	}

	// A newer local scan beats the federated one.
	x.Put(PrefixLocal+dig('a'), Verdict{Digest: dig('a'), Critical: 0, ScannedAt: old.Add(time.Minute)})
	if v, _ := x.ByDigest(dig('a')); v.Critical != 0 {
		t.Errorf("after rescan: critical %d, want 0", v.Critical)
	}
	if _, ok := x.ByDigest(dig('i')); ok {
		t.Errorf("index digest still found after the verdict was replaced without it")
	}
	x.Delete(PrefixFederated + dig('a'))
	x.Reset(PrefixLocal)
	if x.Len() != 0 {
		t.Errorf("Len = %d after removing everything", x.Len())
	}
	if _, ok := x.ByRef("app:1"); ok {
		t.Errorf("ref still found")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"digest":"` + dig('1') + `","critical":3,"criticalWithFix":1,"cves":["CVE-1"]}`,
		`{"digest":"` + dig('1') + `","packages":[],"vulnerabilities":[{"id":"CVE-1","severity":"CRITICAL"}]}`,
		`{"digest":"` + dig('1') + `","vulnerabilities":null}`, `null`, `[]`, `{"digest":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("decoded an invalid verdict: %v", err)
		}
		b, _ := json.Marshal(v)
		if _, err := Decode(b); err != nil {
			t.Fatalf("re-encoded verdict does not decode: %v", err)
		}
	})
}
