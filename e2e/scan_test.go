package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/scanning"
	"github.com/palisade-sec/palisade/remote/scanning/scanningtest"
)

// startScanCluster is startFedCluster with extra controller flags.
func startScanCluster(t *testing.T, dir, name, pw string, extra ...string) *fedCluster {
	t.Helper()
	reps := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: name, Replicas: 1, PasswordFile: pw, Extra: extra})
	fc := &fedCluster{t: t, name: name, reps: reps, env: []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, name+".session")}}
	fc.cli(0, "login", "--api", reps[0].API, "--ca-file", reps[0].CAFile(), "--password-file", pw)
	fc.token = login(t, reps[0], "admin", "scan-admin-password")
	return fc
}

// scanResult runs `palisade scan result REF -o json` and decodes it; an
// error while the result has not arrived yet.
func (fc *fedCluster) scanResult(ref string) (scanning.Result, error) {
	args := []string{"scan", "result", ref, "-o", "json", "--api", fc.live().API, "--ca-file", fc.live().CAFile()}
	out, errOut, code := harness.CLI(fc.t, bin, fc.env, args...)
	if code != 0 {
		return scanning.Result{}, fmt.Errorf("exit %d: %s", code, strings.TrimSpace(errOut))
	}
	var r scanning.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return scanning.Result{}, fmt.Errorf("decode %q: %v", out, err)
	}
	return r, nil
}

func (fc *fedCluster) registryStatus(name string) (*scanning.Status, error) {
	var l scanning.RegistryList
	if err := fc.do("GET", "/v1/registries", nil, &l); err != nil {
		return nil, err
	}
	for _, r := range l.Items {
		if r.Name == name {
			if r.Status == nil || r.Status.Finished.IsZero() {
				return nil, fmt.Errorf("registry %s: no finished scan yet (%+v)", name, r.Status)
			}
			return r.Status, nil
		}
	}
	return nil, fmt.Errorf("no registry %s", name)
}

// TestFederatedRegistryScan runs a primary and two remotes as real
// processes and a real registry in this process: a federated registry is
// scanned once by the primary, both remotes get the result by digest with
// the federated stream, every layer is pulled exactly once, and a remote
// that configures the same registry itself pulls nothing.
func TestFederatedRegistryScan(t *testing.T) {
	vulnDir, err := filepath.Abs(filepath.Join("..", "..", "shared", "vulndata", "alpine-secdb"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vulnDir); err != nil {
		t.Fatalf("shared vulndata missing: %v", err)
	}
	reg := scanningtest.NewRegistry(t)
	img := scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "e2e")
	digest := reg.Push(t, "apps/web:1.0", img)
	reg.Push(t, "infra/skipped:1", scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.3-r0", "filtered out"))
	layers := scanningtest.LayerDigests(t, img)
	ref := reg.Host + "/apps/web:1.0"

	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "scan-admin-password")
	hq := startScanCluster(t, dir, "hq", pw, "--vulndb", vulnDir)
	east := startScanCluster(t, dir, "east", pw, "--vulndb", vulnDir)
	west := startScanCluster(t, dir, "west", pw, "--vulndb", vulnDir)

	// A federated registry on a standalone cluster is refused.
	_, errOut := hq.cli(1, "registry", "add", "hub", "http://"+reg.Host, "--fed")
	if !strings.Contains(errOut, "not a primary") {
		t.Fatalf("federated registry on a standalone cluster: %q", errOut)
	}

	hq.cli(0, "fed", "promote")
	tok, _ := hq.cli(0, "fed", "token", "create", "--ttl", "10m")
	tok = strings.TrimSpace(tok)
	east.cli(0, "fed", "join", "--token", tok)
	west.cli(0, "fed", "join", "--token", tok)
	harness.Eventually(t, 30*time.Second, "both remotes connected", func() error {
		st := hq.status()
		if len(st.Remotes) != 2 || !st.Remotes[0].Connected || !st.Remotes[1].Connected {
			return fmt.Errorf("remotes %+v", st.Remotes)
		}
		return nil
	})

	hq.cli(0, "registry", "add", "hub", "http://"+reg.Host, "--filter", "apps/*", "--fed", "--interval", "1h")
	for _, fc := range []*fedCluster{east, west} {
		var got scanning.Result
		harness.Eventually(t, 60*time.Second, fc.name+" has the federated result", func() error {
			r, err := fc.scanResult(ref)
			got = r
			return err
		})
		if got.Digest != digest || got.Source != scanning.SourceFederated {
			t.Fatalf("%s: result %+v, want digest %s from the primary", fc.name, got, digest)
		}
		for _, cve := range []string{"CVE-2019-14904", "CVE-2019-14905"} {
			if !slices.Contains(got.CVEs, cve) {
				t.Errorf("%s: advisories %v, want %s", fc.name, got.CVEs, cve)
			}
		}
		// By digest too.
		if r, err := fc.scanResult(digest); err != nil || r.Digest != digest {
			t.Errorf("%s: scan result by digest: %+v, %v", fc.name, r, err)
		}
	}
	st, err := hq.registryStatus("hub")
	if err != nil {
		t.Fatal(err)
	}
	if st.Images != 1 || st.Scanned != 1 {
		t.Fatalf("primary's scan status %+v, want one image scanned", st)
	}
	out, _ := hq.cli(0, "scan", "result", ref)
	if !strings.Contains(out, digest) || !strings.Contains(out, "CVE-2019-14904") {
		t.Fatalf("primary's scan result:\n%s", out)
	}
	for _, l := range layers {
		if n := reg.BlobGets(l); n != 1 {
			t.Errorf("layer %s pulled %d times, want 1", l, n)
		}
	}
	pulled := reg.TotalBlobGets()

	// A remote that configures the same registry itself skips the digest
	// the primary sent, and a scan now on the primary pulls nothing.
	east.cli(0, "registry", "add", "mirror", reg.Host, "--insecure", "--filter", "apps/*:1.*")
	harness.Eventually(t, 60*time.Second, "east scanned its registry", func() error {
		st, err := east.registryStatus("mirror")
		if err != nil {
			return err
		}
		if st.Images != 1 || st.Skipped != 1 {
			return fmt.Errorf("status %+v, want the one image skipped", st)
		}
		return nil
	})
	hq.cli(0, "registry", "scan", "hub")
	harness.Eventually(t, 60*time.Second, "hq scanned again", func() error {
		st2, err := hq.registryStatus("hub")
		if err != nil {
			return err
		}
		if !st2.Started.After(st.Started) || st2.Skipped != 1 {
			return fmt.Errorf("status %+v", st2)
		}
		return nil
	})
	if got := reg.TotalBlobGets(); got != pulled {
		t.Fatalf("blobs downloaded after the first scan: %d, want 0", got-pulled)
	}
	out, _ = east.cli(0, "registry", "list")
	if !strings.Contains(out, "mirror") || !strings.Contains(out, "local") {
		t.Fatalf("registry list on east:\n%s", out)
	}
	east.cli(0, "registry", "delete", "mirror")
	_, errOut = east.cli(1, "registry", "scan", "mirror")
	if !strings.Contains(errOut, "no registry") {
		t.Fatalf("scan of a deleted registry: %q", errOut)
	}
}
