package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// alpineImage builds an Alpine 3.11 image whose apk database lists the
// given "name version" packages.
func alpineImage(t *testing.T, pkgs ...string) v1.Image {
	t.Helper()
	var db strings.Builder
	for _, p := range pkgs {
		n, v, _ := strings.Cut(p, " ")
		db.WriteString("P:" + n + "\nV:" + v + "\no:" + n + "\n\n")
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range [][2]string{{"etc/os-release", "ID=alpine\nVERSION_ID=3.11.6\n"}, {"lib/apk/db/installed", db.String()}} {
		tw.WriteHeader(&tar.Header{Name: f[0], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f[1]))})
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	data := b.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestAdmissionTest(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for ref, img := range map[string]v1.Image{
		host + "/shop/web:vulnerable": alpineImage(t, "ansible 2.9.2-r0"),
		host + "/shop/web:fixed":      alpineImage(t, "ansible 2.9.3-r0"),
	} {
		r, _ := name.ParseReference(ref, name.Insecure)
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rules := write("rules.yaml", `apiVersion: palisade.dev/v1
kind: AdmissionRule
metadata: {name: ci}
spec:
  rules:
  - name: deny-known-cve
    action: deny
    criteria: [{name: cveNames, op: containsAny, value: "CVE-2019-14904"}]
  - name: deny-privileged
    action: deny
    criteria: [{name: runAsPrivileged, op: "=", value: "true"}]
  - name: deny-unscanned-prod
    action: deny
    criteria: [{name: imageScanned, op: "=", value: "false"}, {name: namespace, op: "=", value: prod}]
`)
	deploy := func(image string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "` + image + `"}]
`
	}
	vulnerable := write("vulnerable.yaml", "# a service first\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n"+deploy(host+"/shop/web:vulnerable"))
	fixed := write("fixed.yaml", deploy(host+"/shop/web:fixed"))
	privileged := write("privileged.yaml", `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: debug}
  spec:
    containers: [{name: c, image: busybox, securityContext: {privileged: true}}]
`)
	unscanned := write("unscanned.yaml", `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"nightly","namespace":"prod"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"busybox"}]}}}}}}`)
	broken := write("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n")
	feed := filepath.Join("..", "..", "..", "shared", "vulndata", "alpine-secdb")

	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    []string
		wantStderr string
	}{
		{"known CVE denied", []string{"-f", vulnerable, "--rules", rules, "--vulndb", feed, "--insecure"}, 1,
			[]string{"skipped", "denied", "shop/web", "deny-known-cve", `denied by admission rule "deny-known-cve"`}, ""},
		{"fixed version admitted", []string{"-f", fixed, "--rules", rules, "--vulndb", feed, "--insecure"}, 0, []string{"admitted", "no admission rule matched"}, ""},
		{"monitor mode admits", []string{"-f", vulnerable, "--rules", rules, "--vulndb", feed, "--insecure", "--mode", "monitor"}, 0,
			[]string{"admitted (monitor)", "would be denied"}, ""},
		{"privileged in a List", []string{"-f", privileged, "--rules", rules}, 1, []string{"default/debug", "deny-privileged"}, ""},
		{"unscanned without a feed", []string{"-f", unscanned, "--rules", rules}, 1, []string{"CronJob", "prod/nightly", "deny-unscanned-prod"}, ""},
		{"unreadable object", []string{"-f", broken, "--rules", rules}, 2, []string{"error"}, "spec.containers is empty"},
		{"missing manifest", []string{"-f", filepath.Join(dir, "nope.yaml"), "--rules", rules}, 2, nil, "no such file"},
		{"no rules", []string{"-f", fixed}, 2, nil, "give --rules"},
		{"rules with api", []string{"-f", fixed, "--rules", rules, "--api", "https://127.0.0.1:1"}, 2, nil, "offline tests"},
		{"bad rules", []string{"-f", fixed, "--rules", fixed}, 2, nil, "rules"},
		{"bad mode", []string{"-f", fixed, "--rules", rules, "--mode", "discover"}, 2, nil, "--mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
			code := run(context.Background(), env, append([]string{"admission", "test"}, tt.args...))
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errOut.String())
			}
			for _, s := range tt.wantOut {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			if !strings.Contains(errOut.String(), tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, errOut.String())
			}
		})
	}
}
