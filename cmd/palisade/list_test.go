package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/primary/hub"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/policyapi"
	"github.com/palisade-sec/palisade/remote/policystore"
)

// cli runs a verb against w as admin and returns its exit code and output.
func (w *wiredController) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	vars := map[string]string{"PALISADE_API": w.url, "PALISADE_CA_FILE": w.caFile, "PALISADE_TOKEN": w.token,
		"PALISADE_SESSION_FILE": t.TempDir() + "/session.json"}
	env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func TestListVerbsPageAndFilter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a controller")
	}
	w := startWiredController(t)
	w.seed(t)

	decode := func(args []string, v any) {
		t.Helper()
		code, out, errOut := w.cli(t, args...)
		if code != 0 {
			t.Fatalf("palisade %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("palisade %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var all, window, filtered policyapi.GroupList
	decode([]string{"group", "list", "-o", "json"}, &all)
	if len(all.Items) < 3 || len(all.Items) != all.Total {
		t.Fatalf("group list: %d items of %d, want every group (at least 3)", len(all.Items), all.Total)
	}
	decode([]string{"group", "list", "--limit", "2", "--offset", "1", "-o", "json"}, &window)
	if len(window.Items) != 2 || window.Items[0].Name != all.Items[1].Name || window.Items[1].Name != all.Items[2].Name {
		t.Errorf("group list --limit 2 --offset 1 = %v, want groups 2 and 3 of %v", names(window.Items), names(all.Items))
	}
	decode([]string{"group", "list", "--name", "WEB", "-o", "json"}, &filtered)
	if len(filtered.Items) == 0 || len(filtered.Items) == len(all.Items) {
		t.Errorf("group list --name WEB = %v of %v", names(filtered.Items), names(all.Items))
	}
	for _, g := range filtered.Items {
		if !strings.Contains(strings.ToLower(g.Name), "web") {
			t.Errorf("group list --name WEB listed %q", g.Name)
		}
	}

	var users api.UserList
	decode([]string{"user", "list", "--role", "reader", "-o", "json"}, &users)
	if len(users.Items) != 1 || users.Items[0].Name != "rita" {
		t.Errorf("user list --role reader = %+v, want rita only", users.Items)
	}
	var hist hub.HistoryList
	decode([]string{"fed", "history", "--user", "admin", "-o", "json"}, &hist)
	if len(hist.Items) == 0 || hist.Items[0].User != "admin" {
		t.Errorf("fed history --user admin = %+v", hist.Items)
	}
	decode([]string{"fed", "history", "--user", "nobody", "-o", "json"}, &hist)
	if len(hist.Items) != 0 {
		t.Errorf("fed history --user nobody = %+v, want none", hist.Items)
	}
	var adm policyapi.AdmissionRuleList
	decode([]string{"admission", "rules", "--source", "code", "-o", "json"}, &adm)
	if len(adm.Items) == 0 || adm.Items[0].Order != 1 || adm.Items[0].Source != "code" {
		t.Errorf("admission rules --source code = %+v", adm.Items)
	}
	if code, out, _ := w.cli(t, "fed", "clusters"); code != 0 || !strings.Contains(out, "(no remotes)") {
		t.Errorf("fed clusters: exit %d\n%s", code, out)
	}

	for _, bad := range [][]string{
		{"group", "list", "--limit", "-1"},
		{"rule", "list", "--offset", "-3"},
		{"group", "list", "--mode", "block"},
		{"user", "list", "--role", "root"},
	} {
		code, _, errOut := w.cli(t, bad...)
		if code == 0 || errOut == "" {
			t.Errorf("palisade %s: exit %d, stderr %q; want a failure that says why", strings.Join(bad, " "), code, errOut)
		}
	}
}

func names(gs []policystore.GroupInfo) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}
