package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/primary/hub"
)

// TestConsoleDrillInAndRollouts drives the console of a primary with two
// remotes: a remote opened from the fleet page shows its own pages, read
// through the primary's drill-in route, marked as that remote and with no
// write control; then a rollout held by a stopped canary is paused,
// resumed and rolled back with the page's buttons, and the state is seen
// changing in the page and in the API.
func TestConsoleDrillInAndRollouts(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "fed-admin-password")
	primary := startFedCluster(t, dir, "hq", 1, pw)
	east := startFedCluster(t, dir, "east", 1, pw)
	west := startFedCluster(t, dir, "west", 1, pw)
	primary.cli(0, "fed", "promote")
	tok, _ := primary.cli(0, "fed", "token", "create", "--ttl", "10m")
	east.cli(0, "fed", "join", "--token", strings.TrimSpace(tok), "--label", "env=prod")
	west.cli(0, "fed", "join", "--token", strings.TrimSpace(tok), "--label", "env=dev")
	harness.Eventually(t, 30*time.Second, "both remotes connected", func() error {
		for _, n := range []string{"east", "west"} {
			if !primary.remote(n).Connected {
				return fmt.Errorf("%s is not connected", n)
			}
		}
		return nil
	})
	r1 := primary.applyFed(group("fed-web", "web", ""), "")
	east.waitFederated([]string{"GroupDefinition/fed-web"}, r1.Revision)
	// A group of east's own, which only east's pages can show.
	east.cli(0, "policy", "apply", "-f", writeFile(t, dir, "east-only.yaml", group("east-only", "billing", "")))
	base := primary.reps[0].API
	signIn(t, ctx, base, "admin", "fed-admin-password")

	// Open east from the fleet page.
	run(t, ctx, "open east from the fleet",
		chromedp.WaitVisible(chromedp.CSS(`#main[data-page="fleet"] a.drill[href="#/c/east/dashboard"]`)),
		chromedp.Evaluate[chromedp.Void](`performance.clearResourceTimings()`),
		chromedp.Click(chromedp.CSS(`a.drill[href="#/c/east/dashboard"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#main[data-page="dashboard"][data-cluster="east"] #risk-score`)),
		waitText("#context", "east"),
	)
	banner := get(t, ctx, "drill-in banner", chromedp.Text(chromedp.CSS("#context")))
	if !strings.Contains(banner, "read-only") || !strings.Contains(banner, "hq") {
		t.Errorf("drill-in banner %q, want east seen through hq, read-only", banner)
	}
	nav := get(t, ctx, "navigation", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#nav a")].map(a => a.getAttribute("href"))`))
	for _, href := range nav {
		if !strings.HasPrefix(href, "#/c/east/") || strings.Contains(href, "rollouts") {
			t.Errorf("drilled-in navigation links to %q, want east's own pages and no rollouts", href)
		}
	}

	// Every page of east, reached through the navigation.
	for _, page := range []string{"policy", "network", "events", "registries", "agents", "fleet"} {
		run(t, ctx, "east's "+page+" page",
			chromedp.Click(chromedp.CSS(`#nav a[href="#/c/east/`+page+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#main[data-page="`+page+`"][data-cluster="east"] h1`)),
		)
		if page == "policy" {
			run(t, ctx, "east's groups", waitText("#policy-lists", "east-only"), waitText("#policy-lists", "fed-web"))
			controls := get(t, ctx, "edit controls while drilled in", chromedp.Evaluate[int](`document.querySelectorAll("#main textarea, #main button, #policy-apply, #policy-dryrun, #policy-target").length`))
			if controls != 0 {
				t.Errorf("east's policy page, drilled in as admin, shows %d edit controls, want none", controls)
			}
			screenshot(t, ctx, "console-drill-east-policy")
		}
	}
	run(t, ctx, "east's fleet page", waitText("#main", "remote"), waitText("#main", "connected"))
	// The pages read east through the primary's drill-in route only.
	reqs := get(t, ctx, "requests made while drilled in", chromedp.Evaluate[[]string](`performance.getEntriesByType("resource").map(e => new URL(e.name).pathname).filter(p => p.startsWith("/v1/"))`))
	through := 0
	for _, p := range reqs {
		switch {
		case strings.HasPrefix(p, "/v1/fed/clusters/east/api/v1/"):
			through++
		case p == "/v1/cluster" || p == "/v1/auth/whoami":
			// The primary itself: who is signed in, and that it is a primary.
		default:
			t.Errorf("drilled into east, the console read %s from the primary", p)
		}
	}
	if through < 10 {
		t.Errorf("only %d reads went through the drill-in route: %v", through, reqs)
	}
	// Back to the fleet: the primary's own pages, writable again.
	run(t, ctx, "leave east",
		chromedp.Click(chromedp.CSS("#drill-exit")),
		chromedp.WaitVisible(chromedp.CSS(`#main[data-page="fleet"][data-cluster="hq"] a.drill`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("context").hidden`),
	)

	// A rollout whose canary (west) is down stays in its canary wave.
	west.reps[0].Kill()
	harness.Eventually(t, 30*time.Second, "west disconnected", func() error {
		if primary.remote("west").Connected {
			return fmt.Errorf("west is still connected")
		}
		return nil
	})
	// Opening a remote that is down says so.
	run(t, ctx, "open west while it is down",
		chromedp.Navigate(base+"/ui/#/c/west/policy"),
		chromedp.WaitVisible(chromedp.CSS("#drill-error")),
		waitText("#drill-error", "not connected"),
		waitText("#context", "west"),
	)
	run(t, ctx, "apply with a canary",
		chromedp.Navigate(base+"/ui/#/policy"),
		chromedp.WaitVisible(chromedp.CSS("#policy-yaml")),
		chromedp.SetValue(chromedp.CSS("#policy-yaml"), group("fed-web", "web", "")+group("fed-api", "api", "")),
		chromedp.SetValue(chromedp.CSS("#policy-target"), "federated"),
		chromedp.SetValue(chromedp.CSS("#policy-canary"), "west"),
		chromedp.Click(chromedp.CSS("#policy-apply")),
		waitText("#policy-result", "started"),
	)
	rollout := func() hub.Status {
		t.Helper()
		var st hub.Status
		if err := primary.do("GET", "/v1/fed/status", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.Rollout == nil {
			t.Fatal("the primary reports no rollout")
		}
		return st
	}
	card := func(phase, paused string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rollout-card[data-phase=%q][data-paused=%q]`, phase, paused)))
	}
	run(t, ctx, "rollouts page", chromedp.Navigate(base+"/ui/#/rollouts"), card("canary", "false"), waitText("#rollout-card", "held until the canaries"))
	screenshot(t, ctx, "console-rollout-canary")

	run(t, ctx, "pause", chromedp.Click(chromedp.CSS("#pause")), card("canary", "true"), waitText("#rollout-phase", "paused"))
	if st := rollout(); !st.Rollout.Paused {
		t.Errorf("after Pause the rollout is %+v, want paused", st.Rollout)
	}
	run(t, ctx, "resume", chromedp.Click(chromedp.CSS("#resume")), card("canary", "false"))
	if st := rollout(); st.Rollout.Paused {
		t.Errorf("after Resume the rollout is %+v, want running", st.Rollout)
	}
	run(t, ctx, "roll back",
		chromedp.Click(chromedp.CSS("#rollback")),
		chromedp.WaitVisible(chromedp.CSS("#rollback-confirm")),
		chromedp.Click(chromedp.CSS("#rollback-confirm")),
		card("rolled-back", "false"),
	)
	st := rollout()
	if st.Rollout.Phase != "rolled-back" || st.Rollout.RollbackRevision == 0 {
		t.Errorf("after Roll back the rollout is %+v, want rolled-back", st.Rollout)
	}
	east.waitFederated([]string{"GroupDefinition/fed-web"}, st.Rollout.RollbackRevision)
	screenshot(t, ctx, "console-rollout-rolled-back")
}
