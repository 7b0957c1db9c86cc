package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/primary/hub"
	"github.com/palisade-sec/palisade/remote/agents"
	"github.com/palisade-sec/palisade/remote/api"
	"github.com/palisade-sec/palisade/remote/policyapi"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/remote/scanning"
	"github.com/palisade-sec/palisade/shared/agentproto"
	"github.com/palisade-sec/palisade/shared/apiclient"
	"github.com/palisade-sec/palisade/shared/httpapi"
	"github.com/palisade-sec/palisade/shared/store"
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
	if all.Revision == 0 {
		t.Errorf("group list: revision 0, want the policy revision it was read at")
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

	t.Run("agents", func(t *testing.T) { checkAgentLists(t, w, w.seedAgentRecords(t)) })
	t.Run("scanning", func(t *testing.T) { checkScanLists(t, w) })
	t.Run("rule table", func(t *testing.T) { checkRuleTable(t, w) })

	for _, bad := range [][]string{
		{"group", "list", "--limit", "-1"},
		{"rule", "list", "--offset", "-3"},
		{"group", "list", "--mode", "block"},
		{"user", "list", "--role", "root"},
		{"agent", "list", "--connected", "maybe"},
		{"agent", "list", "--limit", "-2"},
		{"flow", "list", "--port", "70000"},
		{"flow", "list", "--violations", "some"},
		{"flow", "list", "--since", "yesterday"},
		{"event", "list", "--offset", "-1"},
		{"event", "list", "--since", "soon"},
		{"registry", "list", "--federated", "perhaps"},
		{"registry", "list", "extra"},
		{"scan", "result", "--severity", "extreme"},
		{"scan", "result", "--source", "elsewhere"},
		{"scan", "result", "127.0.0.1:1/app:1.0", "--limit", "1"},
		{"scan", "failures", "--limit", "-1"},
		{"scanner", "list", "--offset", "-1"},
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

// seeded is what seedAgentRecords stored, in the order the API lists it.
type seeded struct {
	nodes  []agents.NodeRecord
	flows  []agents.FlowRecord  // most recently seen first
	events []agents.EventRecord // newest first
}

// seedAgentRecords stores node, flow and event records as the agents'
// ingest does: three nodes, and more flows and events than one page of
// the API holds, spread over nodes, ports, applications, modes and the
// last 100 minutes.
func (w *wiredController) seedAgentRecords(t *testing.T) seeded {
	t.Helper()
	const nFlows, nEvents = apiclient.PageSize + 103, apiclient.PageSize + 205
	now := time.Now().UTC().Truncate(time.Second)
	var s seeded
	var nodeOps, flowOps, eventOps []store.Op
	put := func(ops *[]store.Op, key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		*ops = append(*ops, store.Op{Type: store.OpPut, Key: key, Value: b})
	}
	for i, wl := range [][]agentproto.Workload{
		{{ID: "wl-web-1", Name: "web-1", Namespace: "shop"}},
		{{ID: "wl-db-1", Name: "db-1", Namespace: "shop"}, {ID: "wl-cache-1", Name: "cache-1", Namespace: "infra"}},
		nil,
	} {
		n := agents.NodeRecord{Name: fmt.Sprintf("node-%d", i+1), Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})},
			Workloads: wl, Updated: now}
		if n.Workloads == nil {
			n.Workloads = []agentproto.Workload{}
		}
		s.nodes = append(s.nodes, n)
		put(&nodeOps, agents.PrefixNodes+n.Name, n)
	}
	ports := []uint16{80, 443, 5432}
	apps := []string{"HTTP", "TLS", "PostgreSQL"}
	modes := []string{"discover", "monitor", "protect"}
	for i := range nFlows {
		f := agents.FlowRecord{Key: fmt.Sprintf("%s%016x", agents.PrefixFlows, i),
			Client: fmt.Sprintf("10.1.%d.%d", i/250, i%250), Server: "wl-db-1", ServerWorkload: true,
			ClientAddr: netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(i % 250)}), ServerAddr: netip.MustParseAddr("10.0.0.2"),
			Proto: 6, Port: ports[i%3], App: apps[i%3], Mode: modes[i%4%3], Flows: uint64(i + 1),
			Node: s.nodes[i%3].Name, LastSeen: now.Add(-time.Duration(i) * 5 * time.Second)}
		f.FirstSeen = f.LastSeen.Add(-time.Minute)
		if i%7 == 0 {
			f.Violations = 1
		}
		s.flows = append(s.flows, f)
		put(&flowOps, f.Key, f)
	}
	kinds := []string{"network", "process", "file"}
	for i := range nEvents {
		e := agents.EventRecord{Node: s.nodes[i%3].Name, Event: agentproto.Event{
			Time: now.Add(-time.Duration(i) * 5 * time.Second), Kind: kinds[i%3], Action: []string{"alert", "deny"}[i%2], Mode: "protect"}}
		switch e.Kind {
		case "network":
			e.Event.Client, e.Event.Server, e.Event.Proto, e.Event.Port = netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.0.0.2"), 6, 5432
			e.Client, e.Server = "10.1.0.1", "wl-db-1"
		default:
			e.Workload, e.Path = []string{"wl-web-1", "wl-db-1"}[i%2], "/bin/sh"
		}
		e.ID = fmt.Sprintf("%020d-%s-%d", e.Time.UnixNano(), e.Node, i)
		s.events = append(s.events, e)
		put(&eventOps, agents.PrefixEvents+e.ID, e)
	}
	for _, ops := range [][]store.Op{nodeOps, flowOps, eventOps} {
		if _, err := w.store.Txn(context.Background(), store.Txn{Ops: ops}); err != nil {
			t.Fatalf("store the agent records: %v", err)
		}
	}
	return s
}

// listJSON runs a list verb with -o json and decodes its page.
func listJSON[T any](t *testing.T, w *wiredController, args ...string) httpapi.List[T] {
	t.Helper()
	args = append(args, "-o", "json")
	code, out, errOut := w.cli(t, args...)
	if code != 0 {
		t.Fatalf("palisade %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	var l httpapi.List[T]
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("palisade %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if l.Limit != len(l.Items) {
		t.Errorf("palisade %s: limit %d, want the %d items listed", strings.Join(args, " "), l.Limit, len(l.Items))
	}
	return l
}

// keep returns the keys of the items of all that match, in order.
func keep[T any](all []T, key func(T) string, match func(T) bool) []string {
	out := []string{}
	for _, v := range all {
		if match(v) {
			out = append(out, key(v))
		}
	}
	return out
}

func keys[T any](items []T, key func(T) string) []string {
	return keep(items, key, func(T) bool { return true })
}

func checkAgentLists(t *testing.T, w *wiredController, s seeded) {
	nodeName := func(a agents.AgentInfo) string { return a.Name }
	seededNode := func(n agents.NodeRecord) string { return n.Name }
	for _, tt := range []struct {
		args  []string
		match func(agents.NodeRecord) bool
	}{
		{nil, func(agents.NodeRecord) bool { return true }},
		{[]string{"--name", "NODE-2"}, func(n agents.NodeRecord) bool { return n.Name == "node-2" }},
		{[]string{"--workload", "infra"}, func(n agents.NodeRecord) bool { return n.Name == "node-2" }},
		{[]string{"--workload", "web-1"}, func(n agents.NodeRecord) bool { return n.Name == "node-1" }},
		{[]string{"--connected", "false"}, func(agents.NodeRecord) bool { return true }},
		{[]string{"--connected", "true"}, func(agents.NodeRecord) bool { return false }},
	} {
		l := listJSON[agents.AgentInfo](t, w, append([]string{"agent", "list"}, tt.args...)...)
		want := keep(s.nodes, seededNode, tt.match)
		if got := keys(l.Items, nodeName); !slices.Equal(got, want) || l.Total != len(want) {
			t.Errorf("agent list %v = %v (total %d), want %v", tt.args, got, l.Total, want)
		}
	}
	l := listJSON[agents.AgentInfo](t, w, "agent", "list", "--limit", "1", "--offset", "1")
	if got := keys(l.Items, nodeName); !slices.Equal(got, []string{"node-2"}) || l.Total != 3 || l.Offset != 1 {
		t.Errorf("agent list --limit 1 --offset 1 = %v (total %d, offset %d), want [node-2] of 3", got, l.Total, l.Offset)
	}
	if code, out, _ := w.cli(t, "agent", "list"); code != 0 || !strings.Contains(out, "NODE") || !strings.Contains(out, "10.0.0.2") {
		t.Errorf("agent list: exit %d\n%s", code, out)
	}

	flowKey := func(f agents.FlowRecord) string { return f.Key }
	for _, tt := range []struct {
		args  []string
		match func(agents.FlowRecord) bool
	}{
		{nil, func(agents.FlowRecord) bool { return true }},
		{[]string{"--port", "5432"}, func(f agents.FlowRecord) bool { return f.Port == 5432 }},
		{[]string{"--app", "postgres"}, func(f agents.FlowRecord) bool { return f.App == "PostgreSQL" }},
		{[]string{"--node", "node-3"}, func(f agents.FlowRecord) bool { return f.Node == "node-3" }},
		{[]string{"--mode", "monitor"}, func(f agents.FlowRecord) bool { return f.Mode == "monitor" }},
		{[]string{"--violations", "true"}, func(f agents.FlowRecord) bool { return f.Violations > 0 }},
		{[]string{"--violations", "false", "--port", "80"}, func(f agents.FlowRecord) bool { return f.Violations == 0 && f.Port == 80 }},
	} {
		l := listJSON[agents.FlowRecord](t, w, append([]string{"flow", "list"}, tt.args...)...)
		want := keep(s.flows, flowKey, tt.match)
		got := keys(l.Items, flowKey)
		if !slices.Equal(got, want) || l.Total != len(want) {
			t.Errorf("flow list %v: %d flows (total %d), want %d; first %v, want %v", tt.args, len(got), l.Total, len(want), first(got), first(want))
		}
	}
	// The cut-off of --since is the controller's clock at the request:
	// the flows listed are the most recent ones, at least those seen
	// within the hour before the request, at most those within the hour
	// before the answer.
	before := time.Now()
	fl := listJSON[agents.FlowRecord](t, w, "flow", "list", "--since", "1h")
	after := time.Now()
	got, atLeast, atMost := keys(fl.Items, flowKey), sinceCount(s.flows, after.Add(-time.Hour), func(f agents.FlowRecord) time.Time { return f.LastSeen }),
		sinceCount(s.flows, before.Add(-time.Hour), func(f agents.FlowRecord) time.Time { return f.LastSeen })
	if len(got) < atLeast || len(got) > atMost || !slices.Equal(got, keys(s.flows[:len(got)], flowKey)) || atMost == len(s.flows) {
		t.Errorf("flow list --since 1h: %d flows, want the %d to %d most recent of %d", len(got), atLeast, atMost, len(s.flows))
	}
	fl = listJSON[agents.FlowRecord](t, w, "flow", "list", "--offset", "998", "--limit", "4")
	if got, want := keys(fl.Items, flowKey), keys(s.flows[998:1002], flowKey); !slices.Equal(got, want) || fl.Total != len(s.flows) {
		t.Errorf("flow list --offset 998 --limit 4 = %v (total %d), want %v of %d", got, fl.Total, want, len(s.flows))
	}
	fl = listJSON[agents.FlowRecord](t, w, "flow", "list", "--offset", "990")
	if got, want := keys(fl.Items, flowKey), keys(s.flows[990:], flowKey); !slices.Equal(got, want) {
		t.Errorf("flow list --offset 990: %d flows, want the last %d", len(got), len(want))
	}
	if code, out, _ := w.cli(t, "flow", "list", "--port", "5432", "--limit", "1"); code != 0 || !strings.Contains(out, "tcp/5432") || !strings.Contains(out, "PostgreSQL") {
		t.Errorf("flow list --port 5432 --limit 1: exit %d\n%s", code, out)
	}

	eventID := func(e agents.EventRecord) string { return e.ID }
	for _, tt := range []struct {
		args  []string
		match func(agents.EventRecord) bool
	}{
		{nil, func(agents.EventRecord) bool { return true }},
		{[]string{"--node", "node-1"}, func(e agents.EventRecord) bool { return e.Node == "node-1" }},
		{[]string{"--kind", "PROCESS"}, func(e agents.EventRecord) bool { return e.Kind == "process" }},
		{[]string{"--action", "deny", "--kind", "network"}, func(e agents.EventRecord) bool { return e.Action == "deny" && e.Kind == "network" }},
		{[]string{"--workload", "db"}, func(e agents.EventRecord) bool { return e.Workload == "wl-db-1" }},
	} {
		l := listJSON[agents.EventRecord](t, w, append([]string{"event", "list"}, tt.args...)...)
		want := keep(s.events, eventID, tt.match)
		if got := keys(l.Items, eventID); !slices.Equal(got, want) || l.Total != len(want) {
			t.Errorf("event list %v: %d events (total %d), want %d; first %v, want %v", tt.args, len(got), l.Total, len(want), first(got), first(want))
		}
	}
	before = time.Now()
	el := listJSON[agents.EventRecord](t, w, "event", "list", "--since", "30m")
	after = time.Now()
	evTime := func(e agents.EventRecord) time.Time { return e.Time }
	got, atLeast, atMost = keys(el.Items, eventID), sinceCount(s.events, after.Add(-30*time.Minute), evTime), sinceCount(s.events, before.Add(-30*time.Minute), evTime)
	if len(got) < atLeast || len(got) > atMost || !slices.Equal(got, keys(s.events[:len(got)], eventID)) || atMost == len(s.events) {
		t.Errorf("event list --since 30m: %d events, want the %d to %d most recent of %d", len(got), atLeast, atMost, len(s.events))
	}
	el = listJSON[agents.EventRecord](t, w, "event", "list", "--limit", "1002", "--offset", "3")
	if got, want := keys(el.Items, eventID), keys(s.events[3:1005], eventID); !slices.Equal(got, want) || el.Total != len(s.events) {
		t.Errorf("event list --limit 1002 --offset 3: %d events (total %d), want %d of %d", len(got), el.Total, len(want), len(s.events))
	}
	if code, out, _ := w.cli(t, "event", "list", "--kind", "process", "--limit", "1"); code != 0 || !strings.Contains(out, "/bin/sh") || strings.Count(out, "\n") != 2 {
		t.Errorf("event list --kind process --limit 1: exit %d\n%s", code, out)
	}
}

func first(s []string) []string { return s[:min(len(s), 3)] }

// sinceCount counts the items, newest first, seen at or after cut.
func sinceCount[T any](items []T, cut time.Time, seen func(T) time.Time) int {
	n := 0
	for _, v := range items {
		if !seen(v).Before(cut) {
			n++
		}
	}
	return n
}

func checkScanLists(t *testing.T, w *wiredController) {
	for _, name := range []string{"mirror", "hub-cache"} {
		w.send(t, "POST", "/v1/registries", "application/json", `{"name":"`+name+`","url":"127.0.0.1:1","interval":"24h","insecure":true}`)
	}
	regName := func(r scanning.RegistryInfo) string { return r.Name }
	all := listJSON[scanning.RegistryInfo](t, w, "registry", "list")
	if len(all.Items) != 3 || all.Total != 3 {
		t.Fatalf("registry list = %v, want 3 registries", keys(all.Items, regName))
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--name", "MIR"}, []string{"mirror"}},
		{[]string{"--federated", "true"}, []string{}},
		{[]string{"--federated", "false"}, keys(all.Items, regName)},
		{[]string{"--limit", "2", "--offset", "1"}, keys(all.Items[1:], regName)},
		{[]string{"--offset", "2"}, keys(all.Items[2:], regName)},
	} {
		l := listJSON[scanning.RegistryInfo](t, w, append([]string{"registry", "list"}, tt.args...)...)
		if got := keys(l.Items, regName); !slices.Equal(got, tt.want) {
			t.Errorf("registry list %v = %v, want %v", tt.args, got, tt.want)
		}
	}
	if code, out, _ := w.cli(t, "registry", "list", "--name", "hub"); code != 0 || !strings.Contains(out, "hub-cache") || strings.Contains(out, "mirror") {
		t.Errorf("registry list --name hub: exit %d\n%s", code, out)
	}

	verdicts := map[string]string{
		"cd": `{"ref":"127.0.0.1:1/db:2.0","low":1}`,
		"ef": `{"ref":"127.0.0.1:1/app:1.1","medium":1,"low":2}`,
	}
	for hex, v := range verdicts {
		w.send(t, "PUT", "/v1/scan/results/sha256:"+strings.Repeat(hex, 32), "application/json", v)
	}
	ref := func(r scanning.Result) string { return r.Ref }
	var results httpapi.List[scanning.Result]
	for deadline := time.Now().Add(10 * time.Second); results.Total < 3 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		results = listJSON[scanning.Result](t, w, "scan", "result")
	}
	if results.Total != 3 || len(results.Items) != 3 {
		t.Fatalf("scan result = %v (total %d), want 3 results", keys(results.Items, ref), results.Total)
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--severity", "high"}, []string{"127.0.0.1:1/app:1.0"}},
		{[]string{"--severity", "medium"}, keep(results.Items, ref, func(r scanning.Result) bool { return r.Ref != "127.0.0.1:1/db:2.0" })},
		{[]string{"--image", "db"}, []string{"127.0.0.1:1/db:2.0"}},
		{[]string{"--source", "federated"}, []string{}},
		{[]string{"--source", "local", "--limit", "1", "--offset", "2"}, keys(results.Items[2:], ref)},
	} {
		l := listJSON[scanning.Result](t, w, append([]string{"scan", "result"}, tt.args...)...)
		if got := keys(l.Items, ref); !slices.Equal(got, tt.want) {
			t.Errorf("scan result %v = %v, want %v", tt.args, got, tt.want)
		}
	}
	if code, out, _ := w.cli(t, "scan", "result", "--image", "app:1.1"); code != 0 || !strings.Contains(out, "sha256:efefefefefef") || strings.Contains(out, "db:2.0") {
		t.Errorf("scan result --image app:1.1: exit %d\n%s", code, out)
	}
	if code, out, _ := w.cli(t, "scan", "result", "sha256:"+strings.Repeat("cd", 32)); code != 0 || !strings.Contains(out, "Low 1") || !strings.Contains(out, "db:2.0") {
		t.Errorf("scan result DIGEST: exit %d\n%s", code, out)
	}

	// Failures as a registry scan pass records them.
	var ops []store.Op
	var seededFailures []scanning.Failure
	for i, f := range []scanning.Failure{
		{Registry: "mirror", Ref: "127.0.0.1:1/app:1.0", Attempts: 3, Error: "connection refused"},
		{Registry: "mirror", Ref: "127.0.0.1:1/db:2.0", Attempts: 1, Error: "manifest unknown"},
		{Registry: "hub-cache", Ref: "127.0.0.1:1/app:2.0", Attempts: 2, Error: "connection refused"},
	} {
		f.At = time.Now().UTC().Add(-time.Duration(i) * time.Minute)
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		seededFailures = append(seededFailures, f)
		ops = append(ops, store.Op{Type: store.OpPut, Key: scanning.PrefixFailures + f.Registry + "/" + f.Ref, Value: b})
	}
	if _, err := w.store.Txn(context.Background(), store.Txn{Ops: ops}); err != nil {
		t.Fatal(err)
	}
	failRef := func(f scanning.Failure) string { return f.Registry + " " + f.Ref }
	allFailures := listJSON[scanning.Failure](t, w, "scan", "failures")
	if got := keys(allFailures.Items, failRef); len(got) != 3 || allFailures.Total != 3 {
		t.Fatalf("scan failures = %v (total %d), want the 3 stored", got, allFailures.Total)
	}
	for _, tt := range []struct {
		args  []string
		match func(scanning.Failure) bool
	}{
		{[]string{"--registry", "mirror"}, func(f scanning.Failure) bool { return f.Registry == "mirror" }},
		{[]string{"--image", "app"}, func(f scanning.Failure) bool { return strings.Contains(f.Ref, "app") }},
		{[]string{"--registry", "mirror", "--image", "db"}, func(f scanning.Failure) bool { return f.Registry == "mirror" && strings.Contains(f.Ref, "db") }},
		{[]string{"--registry", "no-such-registry"}, func(scanning.Failure) bool { return false }},
	} {
		l := listJSON[scanning.Failure](t, w, append([]string{"scan", "failures"}, tt.args...)...)
		want := keep(allFailures.Items, failRef, tt.match)
		if got := keys(l.Items, failRef); !slices.Equal(got, want) || len(want) == len(seededFailures) {
			t.Errorf("scan failures %v = %v, want %v", tt.args, got, want)
		}
	}
	l := listJSON[scanning.Failure](t, w, "scan", "failures", "--limit", "1", "--offset", "1")
	if got, want := keys(l.Items, failRef), keys(allFailures.Items[1:2], failRef); !slices.Equal(got, want) || l.Total != 3 {
		t.Errorf("scan failures --limit 1 --offset 1 = %v (total %d), want %v", got, l.Total, want)
	}
	if code, out, _ := w.cli(t, "scan", "failures", "--image", "db"); code != 0 || !strings.Contains(out, "manifest unknown") || strings.Contains(out, "connection refused") {
		t.Errorf("scan failures --image db: exit %d\n%s", code, out)
	}

	workerName := func(wi scanning.WorkerInfo) string { return wi.Name }
	workers := listJSON[scanning.WorkerInfo](t, w, "scanner", "list")
	if len(workers.Items) == 0 || workers.Total != len(workers.Items) {
		t.Fatalf("scanner list = %v (total %d), want the in-process workers", keys(workers.Items, workerName), workers.Total)
	}
	wl := listJSON[scanning.WorkerInfo](t, w, "scanner", "list", "--limit", "1", "--offset", strconv.Itoa(len(workers.Items)-1))
	if got, want := keys(wl.Items, workerName), keys(workers.Items[len(workers.Items)-1:], workerName); !slices.Equal(got, want) || wl.Total != workers.Total {
		t.Errorf("scanner list --limit 1 --offset %d = %v (total %d), want %v", len(workers.Items)-1, got, wl.Total, want)
	}
	if l := listJSON[scanning.WorkerInfo](t, w, "scanner", "list", "--offset", strconv.Itoa(len(workers.Items))); len(l.Items) != 0 {
		t.Errorf("scanner list past the end = %v, want none", keys(l.Items, workerName))
	}
}

// checkRuleTable checks that rule list shows process rules by their
// group, process and path.
func checkRuleTable(t *testing.T, w *wiredController) {
	code, out, errOut := w.cli(t, "rule", "list")
	if code != 0 {
		t.Fatalf("rule list: exit %d: %s", code, errOut)
	}
	var nginx, webToDB string
	for line := range strings.Lines(out) {
		switch {
		case strings.Contains(line, "/usr/sbin/nginx"):
			nginx = line
		case strings.Contains(line, "web-to-db"):
			webToDB = line
		}
	}
	if f := strings.Fields(nginx); len(f) < 9 || f[1] != "process" || !slices.Contains(f, "web") || !strings.Contains(nginx, "nginx (/usr/sbin/nginx)") {
		t.Errorf("rule list: the nginx process rule reads %q; want KIND process, FROM its group web, TO nginx (/usr/sbin/nginx)\n%s", nginx, out)
	}
	if f := strings.Fields(webToDB); len(f) < 9 || f[1] != "network" || !slices.Contains(f, "tcp/5432") {
		t.Errorf("rule list: the web-to-db rule reads %q\n%s", webToDB, out)
	}
	if !strings.HasPrefix(out, "#") || !strings.Contains(strings.SplitN(out, "\n", 2)[0], "KIND") {
		t.Errorf("rule list header: %q", strings.SplitN(out, "\n", 2)[0])
	}
}
