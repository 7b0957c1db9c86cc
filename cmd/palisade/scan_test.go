package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// scanFixture writes an image tarball holding an npm package and a feed
// directory with one advisory (CVSS 7.5, HIGH) that affects it.
func scanFixture(t *testing.T) (tarPath, feedDir string) {
	t.Helper()
	dir := t.TempDir()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := `{"name":"lodash","version":"4.17.15"}`
	tw.WriteHeader(&tar.Header{Name: "app/node_modules/lodash/package.json", Typeflag: tar.TypeReg, Size: int64(len(body)), Mode: 0o644})
	io.WriteString(tw, body)
	tw.Close()
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, _ := mutate.AppendLayers(empty.Image, l)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, _ = mutate.ConfigFile(img, cf)
	tag, _ := name.NewTag("example.com/app:1")
	tarPath = filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	feedDir = filepath.Join(dir, "feed", "npm")
	os.MkdirAll(feedDir, 0o755)
	os.WriteFile(filepath.Join(feedDir, "GHSA-test.json"), []byte(`{"id":"GHSA-test-0001","aliases":["CVE-2020-8203"],
	 "summary":"prototype pollution","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:H"}],
	 "affected":[{"package":{"ecosystem":"npm","name":"lodash"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"4.17.19"}]}]}]}`), 0o644)
	return tarPath, filepath.Dir(feedDir)
}

func TestScanImageCLI(t *testing.T) {
	tarPath, feedDir := scanFixture(t)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"json pass", []string{"scan", "image", "--tar", tarPath, "--vulndb", feedDir, "--format", "json"}, 0, `"GHSA-test-0001"`},
		{"threshold exceeded", []string{"scan", "image", "--tar", tarPath, "--vulndb", feedDir, "--fail-on", "high"}, 1, "GHSA-test-0001"},
		{"threshold not reached", []string{"scan", "image", "--tar", tarPath, "--vulndb", feedDir, "--fail-on", "critical", "--format", "sarif"}, 0, `"version": "2.1.0"`},
		{"cyclonedx", []string{"scan", "image", "--tar", tarPath, "--vulndb", feedDir, "--format", "cyclonedx"}, 0, `"specVersion": "1.5"`},
		{"missing tarball", []string{"scan", "image", "--tar", filepath.Join(t.TempDir(), "nope.tar")}, 2, ""},
		{"bad format", []string{"scan", "image", "--tar", tarPath, "--format", "xml"}, 2, ""},
		{"bad threshold", []string{"scan", "image", "--tar", tarPath, "--fail-on", "severe"}, 2, ""},
		{"no image", []string{"scan", "image"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}, tt.args)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, stdout.String())
			}
		})
	}
}

func TestScanImageJSONReport(t *testing.T) {
	tarPath, feedDir := scanFixture(t)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), &cliEnv{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }},
		[]string{"scan", "image", "--tar", tarPath, "--vulndb", feedDir, "--format", "json"}); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep struct {
		Digest   string `json:"digest"`
		Layers   []string
		Packages []struct {
			Name, Version, Type, Path, Layer string
		}
		Vulnerabilities []struct {
			ID, Severity, FixedVersion string
			FixAvailable               bool
		}
		Secrets []any
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Digest, "sha256:") || len(rep.Layers) != 1 || rep.Secrets == nil {
		t.Errorf("report header: %+v", rep)
	}
	if len(rep.Packages) != 1 || rep.Packages[0].Path != "app/node_modules/lodash/package.json" || rep.Packages[0].Layer != rep.Layers[0] {
		t.Errorf("packages: %+v", rep.Packages)
	}
	if len(rep.Vulnerabilities) != 1 || rep.Vulnerabilities[0].Severity != "HIGH" || rep.Vulnerabilities[0].FixedVersion != "4.17.19" || !rep.Vulnerabilities[0].FixAvailable {
		t.Errorf("vulnerabilities: %+v", rep.Vulnerabilities)
	}
}
