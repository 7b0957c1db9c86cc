package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/e2e/harness"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/policyapi"
	"github.com/palisade-sec/palisade/remote/policystore"
)

const e2eShop = `apiVersion: palisade.dev/v1
kind: SecurityRule
metadata: {name: web, namespace: shop}
spec:
  target:
    selector:
      name: web
      criteria: [{key: app, op: "=", value: web}]
    mode: Monitor
  ingress:
  - {name: lb-to-web, selector: {name: external}, ports: tcp/443, action: allow}
  egress:
  - {name: web-to-db, selector: {name: db}, ports: tcp/5432, action: allow}
  - {name: web-no-smtp, selector: {name: external}, ports: tcp/25, action: deny}
---
apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: db}
spec:
  selector:
    name: db
    criteria: [{key: app, op: "=", value: postgres}]`

const e2eNeuVector = `apiVersion: v1
kind: List
items:
- apiVersion: neuvector.com/v1
  kind: NvSecurityRule
  metadata: {name: nv.api.demo, namespace: demo}
  spec:
    target:
      policymode: Protect
      selector:
        name: nv.api.demo
        criteria:
        - {key: service, op: "=", value: api.demo}
        - {key: domain, op: "=", value: demo}
    ingress:
    - {name: nv.api.demo-ingress-0, action: allow, applications: [HTTP], ports: tcp/8080, priority: 0, selector: {name: external, criteria: []}}
    process: []
    waf:
      settings: [{name: sqli, action: deny}]
      status: true`

// TestPolicyThroughTheCLI drives a real single-replica controller with the
// CLI: a dry run shows the plan and changes nothing, apply commits it,
// export round-trips, validation errors name the rule and field, a reader
// cannot apply, mode changes show in the group list, and a NeuVector import
// reports what it leaves out.
func TestPolicyThroughTheCLI(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, dir, "admin.pw", "admin-password-1")
	cs := harness.StartCluster(t, bin, dir, &ports, harness.ClusterSpec{Prefix: "pol", Replicas: 1, PasswordFile: pw})
	c := cs[0]
	env := []string{"PALISADE_SESSION_FILE=" + filepath.Join(dir, "session.json")}
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return harness.CLI(t, bin, env, args...)
	}
	mustCLI := func(args ...string) string {
		t.Helper()
		out, errOut, code := cli(args...)
		if code != 0 {
			t.Fatalf("palisade %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	mustCLI("login", "--api", c.API, "--ca-file", c.CAFile(), "--password-file", pw)
	admin := login(t, c, "admin", "admin-password-1")
	if err := c.Client(t, admin).Do(context.Background(), "POST", "/v1/users",
		api.CreateUserRequest{Name: "rita", Role: "reader", Password: "reader-password-1"}, nil); err != nil {
		t.Fatal(err)
	}
	reader := login(t, c, "rita", "reader-password-1")
	shop := writeFile(t, dir, "shop.yaml", e2eShop)

	// Dry run: the plan, and nothing written.
	out := mustCLI("policy", "apply", "-f", shop, "--dry-run")
	for _, want := range []string{"SecurityRule shop/web", `create    network rule "web-to-db"`, "Dry run: nothing was changed."} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	var groups policyapi.GroupList
	if err := json.Unmarshal([]byte(mustCLI("group", "list", "-o", "json")), &groups); err != nil || groups.Total != 0 {
		t.Fatalf("groups after dry run: %+v, %v", groups, err)
	}

	// Apply, then list.
	if out := mustCLI("policy", "apply", "-f", shop); !strings.Contains(out, "Applied at revision") {
		t.Fatalf("apply output:\n%s", out)
	}
	var rules policyapi.RuleList
	if err := json.Unmarshal([]byte(mustCLI("rule", "list", "-o", "json")), &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules.Items) != 3 || rules.Items[0].Name != "web-no-smtp" || rules.Items[0].Source != "code" {
		t.Fatalf("rules = %+v, want three with the deny first", rules.Items)
	}
	if out := mustCLI("rule", "list", "--group", "db"); !strings.Contains(out, "web-to-db") || strings.Contains(out, "lb-to-web") {
		t.Errorf("rule list --group db:\n%s", out)
	}

	// Export round-trips: applying it changes nothing.
	exported := writeFile(t, dir, "export.yaml", mustCLI("policy", "export"))
	var rt policystore.ApplyResult
	if err := json.Unmarshal([]byte(mustCLI("policy", "apply", "-f", exported, "--dry-run", "-o", "json")), &rt); err != nil {
		t.Fatal(err)
	}
	if rt.Plan.Changed() || len(rt.Documents) != 2 {
		t.Errorf("applying the export would change: %s %+v", rt.Plan, rt.Documents)
	}

	// Validation names the rule and the field; nothing is written.
	bad := writeFile(t, dir, "bad.yaml", strings.Replace(e2eShop, "tcp/5432", "tcp/99999", 1))
	_, errOut, code := cli("policy", "apply", "-f", bad)
	if code != 1 || !strings.Contains(errOut, `network rule "web-to-db": ports: "tcp/99999" is out of range`) {
		t.Errorf("bad policy: exit %d, stderr %q", code, errOut)
	}

	// A reader may read but not apply or set modes.
	_, errOut, code = cli("policy", "apply", "-f", shop, "--token", reader)
	if code != 1 || !strings.Contains(errOut, "forbidden") {
		t.Errorf("reader apply: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = cli("mode", "set", "web", "protect", "--token", reader)
	if code != 1 || !strings.Contains(errOut, "forbidden") {
		t.Errorf("reader mode set: exit %d, stderr %q", code, errOut)
	}
	if _, _, code := cli("group", "list", "--token", reader); code != 0 {
		t.Errorf("reader group list: exit %d", code)
	}

	// Modes.
	if out := mustCLI("mode", "set", "web", "protect"); !strings.Contains(out, "network mode of group web to protect") {
		t.Errorf("mode set output: %s", out)
	}
	mustCLI("mode", "set", "--all", "monitor", "--process")
	if err := json.Unmarshal([]byte(mustCLI("group", "list", "-o", "json")), &groups); err != nil {
		t.Fatal(err)
	}
	modes := map[string][2]string{}
	for _, g := range groups.Items {
		modes[g.Name] = [2]string{string(g.NetworkMode), string(g.ProcessMode)}
	}
	if modes["web"] != [2]string{"protect", "monitor"} || modes["db"] != [2]string{"discover", "monitor"} {
		t.Errorf("modes after mode set = %v", modes)
	}
	if _, errOut, code := cli("mode", "set", "nosuch", "protect"); code != 1 || !strings.Contains(errOut, "not_found") {
		t.Errorf("mode set of an unknown group: exit %d, %s", code, errOut)
	}

	// NeuVector import: dry run reports what is left out, then applies.
	nv := writeFile(t, dir, "nv.yaml", e2eNeuVector)
	out = mustCLI("policy", "import-neuvector", "-f", nv, "--dry-run")
	if !strings.Contains(out, "Not carried over") || !strings.Contains(out, "spec.waf") || !strings.Contains(out, "Dry run") {
		t.Errorf("import dry run output:\n%s", out)
	}
	mustCLI("policy", "import-neuvector", "-f", nv)
	if out := mustCLI("group", "list"); !strings.Contains(out, "nv.api.demo") {
		t.Errorf("imported group missing:\n%s", out)
	}
}
