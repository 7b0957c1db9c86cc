package agents

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// profileOf returns the profile of a workload's identity in tb.
func profileOf(tb *compile.Table, workload string) (compile.Profile, bool) {
	id, ok := tb.IdentityOf(workload)
	if !ok {
		return compile.Profile{}, false
	}
	for _, p := range tb.Profiles {
		if p.ID == id {
			return p, true
		}
	}
	return compile.Profile{}, false
}

func TestSessionLearnsProcesses(t *testing.T) {
	f := newFixture(t, nil)
	addr := f.m.cfg.Addr
	a, msg := enroll(t, addr, f.tok, "n1")
	if msg.Type() != agentproto.TypeEnrolled {
		t.Fatalf("enroll: got %+v", msg)
	}
	msg = a.connect(t, addr, "n1")
	if tm, ok := msg.(*agentproto.Table); !ok || tm.Version != agentproto.Version {
		t.Fatalf("hello: got %+v, want a Table saying version %d", msg, agentproto.Version)
	}
	if err := a.enc.Encode(&agentproto.Workloads{Workloads: []agentproto.Workload{
		{ID: "shop/orders", Name: "orders", Namespace: "shop", Service: "orders"},
	}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := a.enc.Encode(&agentproto.Processes{Processes: []agentproto.Process{
		{Workload: "shop/orders", Path: "/usr/bin/sleep", Name: "sleep", Time: now},
		{Workload: "shop/ghost", Path: "/bin/sh", Name: "sh", Time: now},
	}}); err != nil {
		t.Fatal(err)
	}
	// The learned rule reaches the node in the workload's profile.
	a.until(t, "learned process in the profile", func(tb *compile.Table) bool {
		p, ok := profileOf(tb, "shop/orders")
		return ok && slices.ContainsFunc(p.Processes, func(e compile.ProcessEntry) bool {
			return e.Path == "/usr/bin/sleep" && e.Process == "sleep" && e.Action == policy.ActionAllow
		})
	})
	// Outside Discover nothing more is learned.
	if _, err := f.ps.SetMode(context.Background(), policystore.ModeRequest{All: true, Process: true, Mode: "monitor"}); err != nil {
		t.Fatal(err)
	}
	a.until(t, "monitor in the profile", func(tb *compile.Table) bool {
		p, ok := profileOf(tb, "shop/orders")
		return ok && p.ProcessMode == policy.ModeMonitor
	})
	waitFor(t, 10*time.Second, "controller compiled monitor", func() error {
		if mode, _ := f.m.processMode("shop/orders"); mode != policy.ModeMonitor {
			return fmt.Errorf("mode %q", mode)
		}
		return nil
	})
	if err := a.enc.Encode(&agentproto.Processes{Processes: []agentproto.Process{
		{Workload: "shop/orders", Path: "/bin/sh", Name: "sh", Time: now},
	}}); err != nil {
		t.Fatal(err)
	}
	// A later report in Discover proves the one before was handled.
	if err := a.enc.Encode(&agentproto.Workloads{Workloads: []agentproto.Workload{
		{ID: "shop/orders", Name: "orders", Namespace: "shop", Service: "orders"},
		{ID: "shop/other", Name: "other", Namespace: "shop", Service: "other"},
	}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "second workload list stored", func() error {
		kv, ok, _ := f.m.st.Get(PrefixNodes + "n1")
		var rec NodeRecord
		if !ok || json.Unmarshal(kv.Value, &rec) != nil || len(rec.Workloads) != 2 {
			return fmt.Errorf("node record not updated")
		}
		return nil
	})
	view, err := f.ps.View()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range view.Rules(policystoreLearned()) {
		got = append(got, string(r.Kind)+" "+r.Group+" "+r.Path)
	}
	if want := []string{"processRule learned.orders.shop /usr/bin/sleep"}; !slices.Equal(got, want) {
		t.Errorf("learned rules: got %q, want %q (the unknown workload's process is not learned)", got, want)
	}
}

func TestHelloVersions(t *testing.T) {
	f := newFixture(t, nil)
	addr := f.m.cfg.Addr
	a, msg := enroll(t, addr, f.tok, "n1")
	if msg.Type() != agentproto.TypeEnrolled {
		t.Fatalf("enroll: got %+v", msg)
	}
	tests := []struct {
		version int
		want    agentproto.Type
	}{
		{agentproto.MinVersion, agentproto.TypeTable},
		{agentproto.Version, agentproto.TypeTable},
		{agentproto.Version + 1, agentproto.TypeRefuse},
		{0, agentproto.TypeRefuse},
	}
	for _, tc := range tests {
		if got := a.hello(t, addr, "n1", tc.version); got.Type() != tc.want {
			t.Errorf("hello version %d: got %+v, want %s", tc.version, got, tc.want)
		}
		a.close()
	}
}

const filePolicy = `apiVersion: palisade.dev/v1
kind: SecurityRule
metadata: {name: orders, namespace: shop}
spec:
  target:
    selector:
      name: orders
      criteria: [{key: app, op: "=", value: orders}]
    processMode: Protect
  file:
  - {filter: /etc/orders/secret.conf, behavior: blockAccess, applications: [orders-api]}
  - {filter: /srv/orders, recursive: true, behavior: monitorChange}
`

// File rules reach the node in the workload's profile with the group's
// process mode, and a file event names its rule at the controller.
func TestSessionFileRules(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.ps.ApplyYAML(context.Background(), []byte(filePolicy), policystore.ApplyOptions{User: "test"}); err != nil {
		t.Fatal(err)
	}
	addr := f.m.cfg.Addr
	a, msg := enroll(t, addr, f.tok, "n1")
	if msg.Type() != agentproto.TypeEnrolled {
		t.Fatalf("enroll: got %+v", msg)
	}
	a.connect(t, addr, "n1")
	if err := a.enc.Encode(&agentproto.Workloads{Workloads: []agentproto.Workload{
		{ID: "shop/orders", Name: "orders", Namespace: "shop", Labels: map[string]string{"app": "orders"}},
	}}); err != nil {
		t.Fatal(err)
	}
	var secret compile.FileEntry
	a.until(t, "file rules in the profile", func(tb *compile.Table) bool {
		p, ok := profileOf(tb, "shop/orders")
		if !ok || p.ProcessMode != policy.ModeProtect || len(p.Files) != 2 {
			return false
		}
		secret = p.Files[0]
		return true
	})
	want := compile.FileEntry{Filter: "/etc/orders/secret.conf", Behavior: policy.FileBlockAccess, Applications: []string{"orders-api"}, RuleID: secret.RuleID}
	if secret.RuleID == 0 || !reflect.DeepEqual(secret, want) {
		t.Fatalf("first file entry %+v, want %+v with a rule id", secret, want)
	}
	now := time.Now().UTC()
	if err := a.enc.Encode(&agentproto.Events{Events: []agentproto.Event{{Time: now, Kind: agentproto.EventFileDenied, Action: "deny", Mode: "protect",
		Workload: "shop/orders", Path: "/etc/orders/secret.conf", Rule: secret.RuleID}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "file event stored", func() error {
		for _, e := range f.m.Events() {
			if e.Kind == agentproto.EventFileDenied {
				if e.RuleName != "orders:/etc/orders/secret.conf" || e.Workload != "shop/orders" {
					return fmt.Errorf("event %+v: want rule orders:/etc/orders/secret.conf", e)
				}
				return nil
			}
		}
		return fmt.Errorf("no file event")
	})
}
