package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/registryscan/inventory"
	"github.com/palisade-sec/palisade/registryscan/secret"
	"github.com/palisade-sec/palisade/registryscan/vulndb"
)

func sample() *Report {
	return &Report{
		Digest: "sha256:" + strings.Repeat("a", 64), Ref: "r.example/app:1", Platform: "linux/amd64",
		Layers: []string{"sha256:" + strings.Repeat("b", 64)},
		OS:     &inventory.OSRelease{ID: "debian", VersionID: "12"},
		Packages: []inventory.Package{
			{Name: "libssl3", Version: "3.0.11-1~deb12u1", Type: inventory.Deb, SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u1", Path: "var/lib/dpkg/status"},
			{Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", Type: inventory.Java, Path: "app.jar"},
		},
		Vulnerabilities: []vulndb.Finding{
			{ID: "DSA-1", Aliases: []string{"CVE-2099-1"}, Severity: vulndb.Critical, CVSSScore: 9.8, Package: "libssl3", Version: "3.0.11-1~deb12u1",
				Type: inventory.Deb, Path: "var/lib/dpkg/status", FixedVersion: "3.0.11-1~deb12u2", FixAvailable: true},
			{ID: "GHSA-x", Severity: vulndb.Medium, Package: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", Type: inventory.Java, Path: "app.jar"},
		},
		Secrets:   []secret.Finding{{Rule: "private-key", Title: "private key", Severity: "HIGH", Path: "root/.ssh/id_rsa", Line: 1}},
		ScannedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	var b bytes.Buffer
	if err := Write(&b, JSON, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back, *r)
	}
}

func TestExceeds(t *testing.T) {
	r := sample()
	tests := []struct {
		threshold string
		want      bool
		n         int
	}{{"critical", true, 1}, {"high", true, 2}, {"medium", true, 3}, {"LOW", true, 3}}
	for _, tt := range tests {
		got, n, err := r.Exceeds(tt.threshold)
		if err != nil || got != tt.want || n != tt.n {
			t.Errorf("Exceeds(%s) = %v, %d, %v; want %v, %d", tt.threshold, got, n, err, tt.want, tt.n)
		}
	}
	if _, _, err := r.Exceeds("severe"); err == nil {
		t.Error("unknown threshold: got nil error")
	}
	if got, _, _ := (&Report{}).Exceeds("low"); got {
		t.Error("empty report exceeds low")
	}
}

func TestFormats(t *testing.T) {
	r := sample()
	tests := []struct {
		f    Format
		want []string
	}{
		{Table, []string{"CRITICAL", "DSA-1 (CVE-2099-1)", "3.0.11-1~deb12u2", "private-key", "root/.ssh/id_rsa:1"}},
		{SARIF, []string{`"version": "2.1.0"`, `"ruleId": "DSA-1"`, `"level": "error"`, `"ruleId": "secret/private-key"`, `"security-severity": "9.8"`}},
		{CycloneDX, []string{`"bomFormat": "CycloneDX"`, `"specVersion": "1.5"`, `"purl": "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?distro=debian-12"`,
			`"purl": "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"`, `"recommendation": "Upgrade libssl3 to 3.0.11-1~deb12u2"`}},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := Write(&b, tt.f, r); err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s output lacks %s:\n%s", tt.f, w, b.String())
			}
		}
		if tt.f != Table && !json.Valid(b.Bytes()) {
			t.Errorf("%s output is not JSON", tt.f)
		}
	}
	if err := Write(&bytes.Buffer{}, "xml", r); err == nil {
		t.Error("unknown format: got nil error")
	}
}
