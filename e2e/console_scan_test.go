package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/scanning/scanningtest"
)

// TestConsoleRegistries scans a real registry (in this process) with a
// controller and reads the result in the console: the registry with its
// last pass, the image with its vulnerability counts by severity, and the
// image's report: the vulnerable package with its fixed version, the
// package list, and a secret left in a file, by file and rule.
func TestConsoleRegistries(t *testing.T) {
	ctx := browser(t)
	vulnDir := alpineSecDB(t)
	reg := scanningtest.NewRegistry(t)
	// The marker file carries an AWS access key ID: a secret to find.
	img := scanningtest.AlpineImage(t, "3.11.6", "ansible", "2.9.2-r0", "AWS_ACCESS_KEY_ID=AKIAZQ3XK7TNB2R4HWEM\n")
	digest := reg.Push(t, "apps/web:1.0", img)
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "scan-admin-password")
	c := startScanCluster(t, dir, "shop", pw, "--vulndb", vulnDir)
	c.cli(0, "registry", "add", "local", "http://"+reg.Host, "--filter", "apps/*", "--interval", "1h")
	harness.Eventually(t, 60*time.Second, "the registry scanned", func() error {
		_, err := c.registryStatus("local")
		return err
	})
	base := c.reps[0].API
	run(t, ctx, "sign in", chromedp.Navigate(base+"/ui/#/login"), chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SetValue(chromedp.CSS("#username"), "admin"), chromedp.SetValue(chromedp.CSS("#password"), "scan-admin-password"),
		chromedp.Click(chromedp.CSS("#login")), chromedp.WaitVisible(chromedp.CSS(`#main[data-page="fleet"]`)))

	row := `#main tr[data-digest="` + digest + `"]`
	run(t, ctx, "registries page",
		chromedp.Navigate(base+"/ui/#/registries"),
		chromedp.WaitVisible(chromedp.CSS(row)),
		waitText("#main", "local"),
		waitText("#main", "finished"),
	)
	// The image's counts by severity, as the API gives them.
	res, err := c.scanResult(reg.Host + "/apps/web:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.CVEs) == 0 {
		t.Fatalf("the scan found no advisory for ansible 2.9.2-r0: %+v", res)
	}
	chips := get(t, ctx, "severity counts", chromedp.Evaluate[[]string](`[...document.querySelectorAll('`+row+` .sevs .sev')].map(e => e.textContent)`))
	want := []string{strconv.Itoa(res.Critical), strconv.Itoa(res.High), strconv.Itoa(res.Medium), strconv.Itoa(res.Low)}
	if strings.Join(chips, " ") != strings.Join(want, " ") {
		t.Errorf("image row counts (critical high medium low) %v, want %v", chips, want)
	}

	advisories := get(t, ctx, "advisory count", chromedp.Text(chromedp.CSS(row+" .advisories")))
	if advisories != strconv.Itoa(len(res.CVEs)) {
		t.Errorf("image row shows %q advisories, want %d", advisories, len(res.CVEs))
	}

	// The image's report.
	run(t, ctx, "open the image",
		chromedp.Click(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS(`#image-detail[data-digest="`+digest+`"] #tab-vulns`)),
		waitText("#image-tab", "CVE-2019-14904"),
		waitText("#image-tab", "ansible"),
		waitText("#image-tab", "2.9.3-r0"),
	)
	screenshot(t, ctx, "console-registries-image")
	run(t, ctx, "packages", chromedp.Click(chromedp.CSS("#tab-pkgs")), waitText("#image-tab", "2.9.2-r0"), waitText("#image-tab", "lib/apk/db/installed"))
	run(t, ctx, "secrets", chromedp.Click(chromedp.CSS("#tab-secrets")), waitText("#secrets", "etc/marker"), waitText("#secrets", "aws-access-key-id"))
	screenshot(t, ctx, "console-registries-secrets")

	// The address of the opened image opens it again.
	run(t, ctx, "image by address",
		chromedp.Navigate("about:blank"),
		chromedp.Navigate(base+"/ui/#/registries/"+digest),
		chromedp.WaitVisible(chromedp.CSS(`#image-detail[data-digest="`+digest+`"] #tab-vulns`)),
	)
}
