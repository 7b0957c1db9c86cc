package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/api"
)

// hostile is a name that runs script if a page ever parses it as markup.
const hostile = `<img src=x onerror=window.__xss=1>`

// browser starts a headless Chromium for one test and returns a tab's
// context; it skips the test when Chromium is not installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("PALISADE_CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Skip("chromium is not installed (apt-get install chromium, or run scripts/deps.sh)")
		}
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1400, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions with a deadline and fails the test with what
// was being done.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(steps...))
}

// get runs a browser action that returns a value, with a deadline, and
// fails the test with what was being done.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	if err != nil {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		page, _ := chromedp.Run(pctx, chromedp.Text(chromedp.CSS("body")))
		pcancel()
		t.Fatalf("%s: %v\npage text: %.2000s", what, err, page)
	}
	return v
}

// waitText waits until the element matching sel contains text.
func waitText(sel, text string) chromedp.Action[chromedp.Void] {
	s, _ := json.Marshal(sel)
	x, _ := json.Marshal(text)
	return chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.querySelector(%s)?.textContent || "").includes(%s)`, s, x), chromedp.WithPollingInterval(100*time.Millisecond))
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := filepath.Join("artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func signIn(t *testing.T, ctx context.Context, base, user, pw string) {
	t.Helper()
	run(t, ctx, "sign in as "+user,
		chromedp.Navigate(base+"/ui/#/login"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SetValue(chromedp.CSS("#username"), user),
		chromedp.SetValue(chromedp.CSS("#password"), pw),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`#main[data-page="fleet"] table`)),
		waitText("#whoami", user),
	)
}

// TestConsole drives the console in a real headless Chromium against a
// primary and a joined remote running as real processes: sign-in, the
// fleet, a federated rule written in the editor reaching the remote,
// hostile names shown as text, CSRF, and a reader who sees no edit
// controls and whose writes are refused.
func TestConsole(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "fed-admin-password")
	primary := startFedCluster(t, dir, "hq", 1, pw)
	east := startFedCluster(t, dir, "east", 1, pw)
	primary.cli(0, "fed", "promote")
	tok, _ := primary.cli(0, "fed", "token", "create", "--ttl", "10m")
	east.cli(0, "fed", "join", "--token", strings.TrimSpace(tok), "--label", "env=prod", "--label", "team="+hostile)
	harness.Eventually(t, 30*time.Second, "east connected", func() error {
		if !primary.remote("east").Connected {
			return fmt.Errorf("east is not connected")
		}
		return nil
	})
	if err := primary.do("POST", "/v1/users", api.CreateUserRequest{Name: "rita", Role: "reader", Password: "reader-password-1"}, nil); err != nil {
		t.Fatal(err)
	}
	base := primary.reps[0].API

	// An unauthenticated visit lands on the sign-in page.
	run(t, ctx, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#username")))
	signIn(t, ctx, base, "admin", "fed-admin-password")

	// The fleet shows the primary and the remote, connected, with labels.
	run(t, ctx, "fleet page", waitText("#main", "east"))
	fleet := get(t, ctx, "fleet text", chromedp.Text(chromedp.CSS("#main")))
	for _, want := range []string{"hq", "primary", "east", "remote", "env=prod", "team=" + hostile, "healthy"} {
		if !strings.Contains(fleet, want) {
			t.Errorf("fleet page lacks %q:\n%s", want, fleet)
		}
	}
	screenshot(t, ctx, "console-fleet")

	// A federated group written in the editor: dry run, then apply; it
	// reaches the remote.
	run(t, ctx, "federated dry run",
		chromedp.Navigate(base+"/ui/#/policy"),
		chromedp.WaitVisible(chromedp.CSS("#policy-yaml")),
		chromedp.SetValue(chromedp.CSS("#policy-yaml"), group("web", "web", "")),
		chromedp.SetValue(chromedp.CSS("#policy-target"), "federated"),
		chromedp.Click(chromedp.CSS("#policy-dryrun")),
		waitText("#policy-result", "Dry run: 1 change(s)"),
		waitText("#policy-result", "create GroupDefinition web"),
	)
	if names, _, err := east.federated(); err != nil || slices.Contains(names, "GroupDefinition/web") {
		t.Fatalf("after a dry run east holds %v (err %v), want no GroupDefinition/web", names, err)
	}
	run(t, ctx, "federated apply", chromedp.Click(chromedp.CSS("#policy-apply")), waitText("#policy-result", "Applied as revision"))
	harness.Eventually(t, 30*time.Second, "east holds the group written in the console", func() error {
		names, _, err := east.federated()
		if err != nil {
			return err
		}
		if !slices.Contains(names, "GroupDefinition/web") {
			return fmt.Errorf("east holds %v", names)
		}
		return nil
	})

	// The API's validation message is shown.
	run(t, ctx, "invalid policy",
		chromedp.SetValue(chromedp.CSS("#policy-yaml"), "apiVersion: palisade.dev/v1\nkind: NoSuchKind\nmetadata: {name: x}\n"),
		chromedp.Click(chromedp.CSS("#policy-dryrun")),
		waitText("#policy-result", "NoSuchKind"),
	)

	// A group with a hostile name, applied to this cluster, is shown as
	// text: in the group list if accepted, in the validation message if not.
	evil := fmt.Sprintf("apiVersion: palisade.dev/v1\nkind: GroupDefinition\nmetadata:\n  name: evil\nspec:\n  selector:\n    name: evil\n    comment: %q\n    criteria:\n    - {key: app, op: \"=\", value: %q}\n", hostile, hostile)
	run(t, ctx, "hostile group",
		chromedp.SetValue(chromedp.CSS("#policy-yaml"), evil),
		chromedp.SetValue(chromedp.CSS("#policy-target"), "local"),
		chromedp.Click(chromedp.CSS("#policy-apply")),
		waitText("#policy-lists", hostile),
	)
	type markup struct {
		Imgs int  `json:"imgs"`
		XSS  bool `json:"xss"`
	}
	injected := get(t, ctx, "look for injected markup", chromedp.Evaluate[markup](`({imgs: document.querySelectorAll("img").length, xss: window.__xss !== undefined})`))
	if injected.Imgs != 0 || injected.XSS {
		t.Errorf("a hostile name became markup: %d img elements, script ran %v", injected.Imgs, injected.XSS)
	}
	screenshot(t, ctx, "console-policy")

	// Every other page renders from the live API (or says what is not
	// available) without a script error.
	for _, page := range []string{"dashboard", "rollouts", "network", "events", "registries"} {
		run(t, ctx, page+" page", chromedp.Navigate(base+"/ui/#/"+page), chromedp.WaitVisible(chromedp.CSS(`#main[data-page="`+page+`"] h1`)))
	}
	run(t, ctx, "rollout history", chromedp.Navigate(base+"/ui/#/rollouts"), waitText("#main", "in force"))
	run(t, ctx, "risk score", chromedp.Navigate(base+"/ui/#/dashboard"), chromedp.WaitVisible(chromedp.CSS("#risk-score")), waitText("#main", "discover mode"))
	screenshot(t, ctx, "console-dashboard")

	// A cookie-authenticated write without the CSRF header is refused, even
	// for an admin.
	noCSRF := get(t, ctx, "write without CSRF header", chromedp.Evaluate[int](`fetch("/v1/fed/rollout/pause", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if noCSRF != 403 {
		t.Errorf("POST without %s: status %d, want 403", api.CSRFHeader, noCSRF)
	}

	// Sign out, then a reader: no edit controls, and the API refuses a
	// write made with the reader's session and CSRF token.
	run(t, ctx, "sign out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#username")))
	signIn(t, ctx, base, "rita", "reader-password-1")
	run(t, ctx, "reader's policy page",
		chromedp.Navigate(base+"/ui/#/policy"),
		chromedp.WaitVisible(chromedp.CSS(`#main[data-page="policy"] table`)),
	)
	controls := get(t, ctx, "count edit controls", chromedp.Evaluate[int](`document.querySelectorAll("#policy-yaml, #policy-apply, #policy-dryrun, #pause, #resume, textarea").length`))
	if controls != 0 {
		t.Errorf("a reader sees %d edit controls, want none", controls)
	}
	readerWrite := get(t, ctx, "reader write", chromedp.Evaluate[int](`fetch("/v1/policy/apply", {method: "POST", headers: {"Content-Type": "application/yaml",
		"X-Palisade-CSRF": decodeURIComponent((document.cookie.match(/(?:^|; )palisade_csrf=([^;]*)/) || [])[1] || "")},
		body: "apiVersion: palisade.dev/v1\nkind: GroupDefinition\nmetadata: {name: r}\nspec: {selector: {name: r}}\n"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if readerWrite != 403 {
		t.Errorf("reader's write with a valid CSRF token: status %d, want 403", readerWrite)
	}
	screenshot(t, ctx, "console-reader-policy")
}
