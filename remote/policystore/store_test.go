package policystore

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/policy/learn"
	"github.com/palisade-sec/palisade/shared/store"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

// openKV opens a real single-replica store on loopback and waits until it
// leads.
func openKV(t *testing.T) *store.Store { return openKVB(t) }

func openKVB(t testing.TB) *store.Store {
	t.Helper()
	st := storetest.Open(t, "p1")
	return st
}

// reset removes everything this package and federation write.
func reset(t *testing.T, kv KV) {
	t.Helper()
	_, err := kv.Txn(context.Background(), store.Txn{Ops: []store.Op{
		{Type: store.OpDeletePrefix, Key: prefixPolicy}, {Type: store.OpDeletePrefix, Key: PrefixFederated}}})
	if err != nil {
		t.Fatal(err)
	}
}

func newStore(t *testing.T, kv KV) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.KV = kv
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustView(t *testing.T, s *Store) *View {
	t.Helper()
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// putFederated writes a federated document the way federation does.
func putFederated(t *testing.T, kv KV, yamlDoc string) {
	t.Helper()
	objs, err := code.Decode([]byte(yamlDoc))
	if err != nil || len(objs) != 1 {
		t.Fatalf("decode federated doc: %v (%d docs)", err, len(objs))
	}
	key, err := DocKey(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(objs[0])
	if _, err := kv.Txn(context.Background(), store.Txn{Ops: []store.Op{{Type: store.OpPut, Key: PrefixFederated + key, Value: b}}}); err != nil {
		t.Fatal(err)
	}
}

func ops(docs []DocChange) map[string]code.Op {
	out := map[string]code.Op{}
	for _, d := range docs {
		out[d.Kind+"/"+d.Name] = d.Op
	}
	return out
}

func planOp(r *code.Report, kind policy.Kind, name string) code.Op {
	for _, c := range r.Changes {
		if c.Kind == kind && c.Name == name {
			return c.Op
		}
	}
	return ""
}

const fedWeb = `apiVersion: palisade.dev/v1
kind: ClusterSecurityRule
metadata:
  name: fed-web
  annotations: {palisade.dev/revision: "42"}
spec:
  target:
    selector:
      name: web
      criteria:
      - {key: app, op: "=", value: web}
    mode: Protect
  ingress:
  - name: fed-deny-telnet
    selector: {name: external}
    ports: tcp/23
    action: deny
`

func TestPolicyStore(t *testing.T) {
	kv := openKV(t)
	ctx := context.Background()
	shop := readTestdata(t, "shop.yaml")

	t.Run("DryRunThenApply", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		res, err := s.ApplyYAML(ctx, shop, ApplyOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Applied || len(res.Documents) != 4 {
			t.Fatalf("dry run: applied %v, %d documents", res.Applied, len(res.Documents))
		}
		for k, op := range ops(res.Documents) {
			if op != code.OpCreate {
				t.Errorf("dry run: %s: op %s, want create", k, op)
			}
		}
		if got := planOp(res.Plan, policy.KindNetworkRule, "web-to-db"); got != code.OpCreate {
			t.Errorf("plan for web-to-db = %q, want create", got)
		}
		if v := mustView(t, s); len(v.Set.Groups) != 0 {
			t.Fatalf("dry run wrote %d groups", len(v.Set.Groups))
		}

		res, err = s.ApplyYAML(ctx, shop, ApplyOptions{User: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Applied || res.Revision == 0 {
			t.Fatalf("apply: %+v", res)
		}
		v := mustView(t, s)
		if len(v.Problems) != 0 {
			t.Fatalf("problems after apply: %v", v.Problems)
		}
		web := v.Set.Group("web")
		if web == nil || web.Source != policy.SourceCode || web.NetworkMode != policy.ModeMonitor {
			t.Fatalf("group web = %+v", web)
		}
		if _, ok, _ := kv.Get(PrefixObjects + "SecurityRule/shop.web"); !ok {
			t.Fatal("SecurityRule shop/web is not at policy/objects/SecurityRule/shop.web")
		}

		// The same input again changes nothing and writes nothing.
		rev := kv.Revision()
		res, err = s.ApplyYAML(ctx, shop, ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Applied || res.Plan.Changed() || kv.Revision() != rev {
			t.Fatalf("re-apply: applied %v, plan %s", res.Applied, res.Plan)
		}
		for k, op := range ops(res.Documents) {
			if op != code.OpUnchanged {
				t.Errorf("re-apply: %s: op %s, want unchanged", k, op)
			}
		}
	})

	t.Run("Prune", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		if _, err := s.ApplyYAML(ctx, shop, ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		only := `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: db}
spec:
  selector:
    name: db
    criteria: [{key: app, op: "=", value: postgres}]
`
		res, err := s.ApplyYAML(ctx, []byte(only), ApplyOptions{Prune: true})
		if err != nil {
			t.Fatal(err)
		}
		got := ops(res.Documents)
		want := map[string]code.Op{"GroupDefinition/db": code.OpUnchanged, "SecurityRule/web": code.OpDelete,
			"ClusterSecurityRule/batch": code.OpDelete, "AdmissionRule/admission": code.OpDelete}
		for k, op := range want {
			if got[k] != op {
				t.Errorf("prune: %s: op %q, want %q", k, got[k], op)
			}
		}
		if op := planOp(res.Plan, policy.KindNetworkRule, "web-to-db"); op != code.OpDelete {
			t.Errorf("plan for web-to-db = %q, want delete", op)
		}
		v := mustView(t, s)
		if len(v.Set.Groups) != 1 || len(v.Set.NetworkRules) != 0 {
			t.Fatalf("after prune: %d groups, %d rules", len(v.Set.Groups), len(v.Set.NetworkRules))
		}
	})

	t.Run("InvalidInputNamesTheProblem", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		tests := []struct {
			name, yaml, field, text string
		}{
			{"bad ports", `apiVersion: palisade.dev/v1
kind: ClusterSecurityRule
metadata: {name: a}
spec:
  target: {selector: {name: a, criteria: [{key: app, op: "=", value: a}]}}
  egress:
  - {name: a-out, selector: {name: external}, ports: tcp/99999, action: allow}
`, "ports", `network rule "a-out"`},
			{"unknown group", `apiVersion: palisade.dev/v1
kind: ClusterSecurityRule
metadata: {name: a}
spec:
  target: {selector: {name: a, criteria: [{key: app, op: "=", value: a}]}}
  egress:
  - {name: a-out, selector: {name: nowhere}, action: allow}
`, "to", `unknown group "nowhere"`},
			{"unknown field", `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: g}
spec: {selector: {name: g, criteria: [{key: app, op: "=", value: g}]}, colour: red}
`, "body", "colour"},
			{"bad namespace", `apiVersion: palisade.dev/v1
kind: SecurityRule
metadata: {name: a, namespace: "Not.A.Label"}
spec:
  target: {selector: {name: a, criteria: [{key: app, op: "=", value: a}]}}
`, "metadata.namespace", "not a DNS label"},
			{"twice", `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: g}
spec: {selector: {name: g, criteria: [{key: app, op: "=", value: g}]}}
---
apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: g}
spec: {selector: {name: g, criteria: [{key: app, op: "=", value: h}]}}
`, "metadata.name", "appears twice"},
		}
		for _, tt := range tests {
			_, err := s.ApplyYAML(ctx, []byte(tt.yaml), ApplyOptions{})
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.Field != tt.field || !strings.Contains(inv.Problem, tt.text) {
				t.Errorf("%s: err = %v (field %q), want field %q mentioning %q", tt.name, err, fieldOf(err), tt.field, tt.text)
			}
		}
		if v := mustView(t, s); len(v.localDocs) != 0 {
			t.Fatalf("invalid input wrote %d documents", len(v.localDocs))
		}
	})

	t.Run("FederatedIsReadOnlyAndFirst", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		// A local definition of web first; then federation defines web too.
		if _, err := s.ApplyYAML(ctx, shop, ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		putFederated(t, kv, fedWeb)
		putFederated(t, kv, `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: dns}
spec: {selector: {name: dns, criteria: [{key: address, op: "=", value: "10.0.0.10"}]}}
`)
		v := mustView(t, s)
		web := v.Set.Group("web")
		if web == nil || web.Source != policy.SourceFederated || web.Revision != 42 || web.NetworkMode != policy.ModeProtect {
			t.Fatalf("group web = %+v, want the federated one at revision 42", web)
		}
		if !slices.ContainsFunc(v.Shadowed, func(s string) bool { return strings.Contains(s, `code group "web"`) }) {
			t.Errorf("shadowed = %v, want the local group web", v.Shadowed)
		}
		rules := v.Rules(Filter{})
		if len(rules) == 0 || rules[0].Name != "fed-deny-telnet" || rules[0].Source != policy.SourceFederated {
			t.Fatalf("first rule = %+v, want the federated deny", rules[0])
		}
		// Rules of the local document that refer to web by name still hold.
		if v.Set.Group("db") == nil || !slices.ContainsFunc(rules, func(r RuleInfo) bool { return r.Name == "web-to-db" }) {
			t.Fatalf("local rules lost: %+v", rules)
		}

		tests := []struct {
			name, yaml, object string
		}{
			{"same document", strings.Replace(fedWeb, "tcp/23", "tcp/24", 1), "ClusterSecurityRule fed-web"},
			{"same group", `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: other}
spec: {selector: {name: dns, criteria: [{key: address, op: "=", value: "10.0.0.53"}]}}
`, `group "dns"`},
			{"change a shadowed local group", strings.Replace(string(shop), "value: web}", "value: www}", 1), `group "web"`},
			{"same rule", `apiVersion: palisade.dev/v1
kind: ClusterSecurityRule
metadata: {name: mine}
spec:
  target: {selector: {name: mine, criteria: [{key: app, op: "=", value: mine}]}}
  ingress:
  - {name: fed-deny-telnet, selector: {name: external}, ports: tcp/23, action: allow}
`, `network rule "fed-deny-telnet"`},
		}
		for _, tt := range tests {
			_, err := s.ApplyYAML(ctx, []byte(tt.yaml), ApplyOptions{})
			var ro *ReadOnlyError
			if !errors.As(err, &ro) || !strings.Contains(ro.Error(), tt.object) {
				t.Errorf("%s: err = %v, want read-only naming %s", tt.name, err, tt.object)
			}
		}
		if _, err := s.SetMode(ctx, ModeRequest{Group: "web", Mode: "discover"}); !errors.Is(err, ErrReadOnly) {
			t.Errorf("mode of a federated group: err = %v, want read-only", err)
		}
		res, err := s.SetMode(ctx, ModeRequest{All: true, Mode: "monitor"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(res.Skipped, "web") || slices.Contains(res.Groups, "web") {
			t.Errorf("mode all: %+v, want web skipped", res)
		}
		if g := mustView(t, s).Set.Group("web"); g.NetworkMode != policy.ModeProtect {
			t.Errorf("federated web mode = %s after mode all", g.NetworkMode)
		}

		// An export marks the federated document; applying the export
		// leaves it alone and changes no local document.
		out, err := mustView(t, s).Export()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "palisade.dev/source: federated") {
			t.Fatalf("export does not mark federated documents:\n%s", out)
		}
		rt, err := s.ApplyYAML(ctx, out, ApplyOptions{DryRun: true})
		if err != nil {
			t.Fatalf("apply of an export: %v\n%s", err, out)
		}
		for _, d := range rt.Documents {
			switch {
			case d.Federated && d.Op != code.OpUnchanged:
				t.Errorf("federated %s/%s: op %s", d.Kind, d.Name, d.Op)
			case d.Kind == "GroupDefinition" && d.Op != code.OpUnchanged:
				t.Errorf("%s/%s: op %s, want unchanged", d.Kind, d.Name, d.Op)
			}
		}
		if !slices.ContainsFunc(rt.Documents, func(d DocChange) bool { return d.Federated && d.Name == "fed-web" }) {
			t.Errorf("export round trip lost the federated document: %+v", rt.Documents)
		}
	})

	t.Run("ModesAndReset", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		if _, err := s.ApplyYAML(ctx, shop, ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			req   ModeRequest
			field string
		}{
			{ModeRequest{Group: "web", Mode: "strict"}, "mode"},
			{ModeRequest{Mode: "protect"}, "group"},
			{ModeRequest{Group: "web", All: true, Mode: "protect"}, "group"},
		}
		for _, tt := range tests {
			if _, err := s.SetMode(ctx, tt.req); fieldOf(err) != tt.field {
				t.Errorf("SetMode(%+v) = %v, want a problem with %s", tt.req, err, tt.field)
			}
		}
		if _, err := s.SetMode(ctx, ModeRequest{Group: "nosuch", Mode: "protect"}); !errors.Is(err, ErrUnknownGroup) {
			t.Errorf("unknown group: err = %v", err)
		}
		if _, err := s.SetMode(ctx, ModeRequest{Group: "web", Mode: "Protect", Process: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetMode(ctx, ModeRequest{Group: "db", Mode: "protect"}); err != nil {
			t.Fatal(err)
		}
		gs := mustView(t, s).Groups(Filter{Group: "web"})
		if len(gs) != 1 || gs[0].NetworkMode != policy.ModeMonitor || gs[0].ProcessMode != policy.ModeProtect || !gs[0].ProcessModeSet || gs[0].NetworkModeSet {
			t.Fatalf("web after process mode set: %+v", gs)
		}
		// Writing a new process mode in code replaces the setting.
		changed := strings.Replace(string(shop), "    mode: Monitor\n", "    mode: Monitor\n    processMode: Discover\n", 1)
		res, err := s.ApplyYAML(ctx, []byte(changed), ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.ModesReset, []string{"web"}) {
			t.Errorf("modes reset = %v, want [web]", res.ModesReset)
		}
		v := mustView(t, s)
		if gs := v.Groups(Filter{Group: "web"}); gs[0].ProcessMode != policy.ModeDiscover || gs[0].ProcessModeSet {
			t.Errorf("web after apply: %+v", gs[0])
		}
		if gs := v.Groups(Filter{Group: "db"}); gs[0].NetworkMode != policy.ModeProtect {
			t.Errorf("db after apply: %+v", gs[0])
		}
		// The export carries the setting of db as a comment.
		out, _ := v.Export()
		if !strings.Contains(string(out), `# mode setting of group "db": network protect`) {
			t.Errorf("export lacks db's mode:\n%s", out)
		}
	})

	t.Run("ConcurrentWriteConflicts", func(t *testing.T) {
		reset(t, kv)
		racing := &racingKV{Store: kv}
		s := newStore(t, racing)
		other := newStore(t, kv)
		racing.before = func() {
			if _, err := other.SetMode(ctx, ModeRequest{All: true, Mode: "monitor"}); err != nil {
				t.Error(err)
			}
		}
		_, err := s.ApplyYAML(ctx, shop, ApplyOptions{})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("apply racing a mode change: err = %v, want a conflict", err)
		}
		if v := mustView(t, other); len(v.localDocs) != 0 {
			t.Fatal("the losing apply wrote documents")
		}
	})

	t.Run("Learn", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		web := &policy.Workload{ID: "w1", Name: "web-1", Namespace: "shop", Service: "web", Containers: []policy.Container{{Name: "web"}}}
		db := &policy.Workload{ID: "d1", Name: "db-1", Namespace: "shop", Service: "db", Containers: []policy.Container{{Name: "db"}}}
		flows := []learn.Flow{
			{Src: learn.Endpoint{Workload: web}, Dst: learn.Endpoint{Workload: db}, Proto: policy.ProtoTCP, Port: 5432, App: "PostgreSQL"},
			{Src: learn.Endpoint{Addr: netip.MustParseAddr("203.0.113.9")}, Dst: learn.Endpoint{Workload: web}, Proto: policy.ProtoTCP, Port: 443},
		}
		res, err := s.Learn(ctx, flows)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Groups) != 2 || len(res.Rules) != 2 {
			t.Fatalf("learned %d groups, %d rules; want 2 and 2", len(res.Groups), len(res.Rules))
		}
		v := mustView(t, s)
		if n := len(v.Rules(Filter{})); n != 0 {
			t.Errorf("rules without learned = %d, want 0", n)
		}
		lr := v.Rules(Filter{Learned: true})
		if len(lr) != 2 || lr[0].Source != policy.SourceLearned {
			t.Fatalf("learned rules = %+v", lr)
		}
		if gs := v.Groups(Filter{Source: policy.SourceLearned}); len(gs) != 2 {
			t.Fatalf("learned groups = %+v", gs)
		}
		if _, ok, _ := kv.Get(PrefixLearnedRules + res.Rules[0].Name); !ok {
			t.Fatalf("learned rule %q not stored under %s", res.Rules[0].Name, PrefixLearnedRules)
		}
		again, err := s.Learn(ctx, flows)
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Groups)+len(again.Rules) != 0 {
			t.Errorf("learning the same flows again added %+v", again)
		}
		out, err := v.Export()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "palisade.dev/source: learned") {
			t.Errorf("export lacks learned documents:\n%s", out)
		}
	})

	t.Run("LearnProcesses", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		web := &policy.Workload{ID: "shop/web-1", Name: "web-1", Namespace: "shop", Service: "web"}
		execs := []learn.Exec{{Workload: web, Path: "/usr/sbin/nginx"}, {Workload: web, Path: "/bin/sleep"}}
		res, err := s.LearnProcesses(ctx, execs)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Groups) != 1 || len(res.ProcessRules) != 2 {
			t.Fatalf("learned %d groups, %d process rules; want 1 and 2", len(res.Groups), len(res.ProcessRules))
		}
		v := mustView(t, s)
		if len(v.Problems) != 0 {
			t.Fatalf("view problems: %v", v.Problems)
		}
		if n := len(v.Rules(Filter{})); n != 0 {
			t.Errorf("rules without learned = %d, want 0", n)
		}
		var got []string
		for _, r := range v.Rules(Filter{Learned: true, Group: "learned.web.shop"}) {
			if r.Kind != policy.KindProcessRule || r.Source != policy.SourceLearned || r.Action != policy.ActionAllow {
				t.Errorf("listed rule %+v", r)
			}
			got = append(got, r.Process+" "+r.Path)
		}
		if want := []string{"nginx /usr/sbin/nginx", "sleep /bin/sleep"}; !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			t.Errorf("listed process rules %q, want %q", got, want)
		}
		if _, ok, _ := kv.Get(PrefixLearnedProcesses + res.ProcessRules[0].Name); !ok {
			t.Fatalf("learned process rule %q not stored under %s", res.ProcessRules[0].Name, PrefixLearnedProcesses)
		}
		// Flows learn into the same group; nothing is duplicated.
		fres, err := s.Learn(ctx, []learn.Flow{{Src: learn.Endpoint{Addr: netip.MustParseAddr("203.0.113.9")}, Dst: learn.Endpoint{Workload: web}, Proto: policy.ProtoTCP, Port: 80}})
		if err != nil || len(fres.Groups) != 0 || len(fres.Rules) != 1 {
			t.Fatalf("learn flows after processes: %+v, %v", fres, err)
		}
		again, err := s.LearnProcesses(ctx, execs)
		if err != nil || len(again.Groups)+len(again.ProcessRules) != 0 {
			t.Errorf("learning the same executables again: %+v, %v", again, err)
		}
		out, err := mustView(t, s).Export()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "/usr/sbin/nginx") {
			t.Errorf("export lacks the learned process rules:\n%s", out)
		}
	})

	t.Run("ImportNeuVector", func(t *testing.T) {
		reset(t, kv)
		s := newStore(t, kv)
		res, err := s.ImportNeuVector(ctx, readTestdata(t, "neuvector.yaml"), ApplyOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Applied || len(res.Skipped) < 2 {
			t.Fatalf("dry-run import: applied %v, skipped %v", res.Applied, res.Skipped)
		}
		var waf, jetty bool
		for _, sk := range res.Skipped {
			waf = waf || sk.Field == "spec.waf"
			jetty = jetty || strings.Contains(sk.Reason, "Jetty")
		}
		if !waf || !jetty {
			t.Errorf("skipped = %v, want the WAF sensor and the Jetty rule", res.Skipped)
		}
		if _, err := s.ImportNeuVector(ctx, readTestdata(t, "neuvector.yaml"), ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		g := mustView(t, s).Set.Group("nv.api.demo")
		if g == nil || g.NetworkMode != policy.ModeProtect || g.Source != policy.SourceCode {
			t.Fatalf("imported group = %+v", g)
		}
		if _, err := s.ImportNeuVector(ctx, []byte("kind: Nothing\n"), ApplyOptions{}); fieldOf(err) != "body" {
			t.Errorf("import of non-NeuVector YAML: err = %v", err)
		}
	})
}

func fieldOf(err error) string {
	var inv *InvalidError
	if errors.As(err, &inv) {
		return inv.Field
	}
	return ""
}

// racingKV is the real store with a hook run once just before the next
// transaction, to interleave another writer between a read and a write.
type racingKV struct {
	*store.Store
	before func()
}

func (r *racingKV) Txn(ctx context.Context, txn store.Txn) (uint64, error) {
	if f := r.before; f != nil {
		r.before = nil
		f()
	}
	return r.Store.Txn(ctx, txn)
}

func TestDocKey(t *testing.T) {
	tests := []struct {
		obj     code.Object
		want    string
		wantErr string
	}{
		{&code.SecurityRule{TypeMeta: code.TypeMeta{Kind: code.KindSecurityRule}, Metadata: code.ObjectMeta{Name: "web", Namespace: "shop"}}, "SecurityRule/shop.web", ""},
		{&code.SecurityRule{TypeMeta: code.TypeMeta{Kind: code.KindClusterSecurityRule}, Metadata: code.ObjectMeta{Name: "a.b"}}, "ClusterSecurityRule/a.b", ""},
		{&code.GroupDefinition{TypeMeta: code.TypeMeta{Kind: code.KindGroupDefinition}, Metadata: code.ObjectMeta{Name: "g/1"}}, "GroupDefinition/g/1", ""},
		{&code.SecurityRule{TypeMeta: code.TypeMeta{Kind: code.KindSecurityRule}, Metadata: code.ObjectMeta{Name: "web", Namespace: "a.b"}}, "", "metadata.namespace"},
		{&code.AdmissionRule{TypeMeta: code.TypeMeta{Kind: code.KindAdmissionRule}}, "", "metadata.name"},
	}
	for _, tt := range tests {
		got, err := DocKey(tt.obj)
		if got != tt.want || fieldOf(err) != tt.wantErr {
			t.Errorf("DocKey(%s %q) = %q, %v; want %q, field %q", tt.obj.GetKind(), tt.obj.GetName(), got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzStoredDocument feeds arbitrary stored values through the decoder and
// key function: bad values are errors, never panics, and a value that
// decodes has a key that names its kind.
func FuzzStoredDocument(f *testing.F) {
	for _, seed := range []string{
		`{"apiVersion":"palisade.dev/v1","kind":"GroupDefinition","metadata":{"name":"dns"},"spec":{"selector":{"name":"dns","criteria":[{"key":"address","op":"=","value":"10.0.0.10"}]}}}`,
		`{"apiVersion":"palisade.dev/v1","kind":"SecurityRule","metadata":{"name":"web","namespace":"shop"},"spec":{"target":{"selector":{"name":"web"}}}}`,
		`{"apiVersion":"palisade.dev/v1","kind":"SecurityRule","metadata":{"name":"web","namespace":"Sh.op"},"spec":{}}`,
		`{"apiVersion":"palisade.dev/v1","kind":"AdmissionRule","metadata":{"name":"a"},"spec":{"rules":null}}`,
		`{"apiVersion":"v1","kind":"Pod"}`,
		`{"apiVersion":"palisade.dev/v1","kind":"GroupDefinition","metadata":{"name":""}}`,
		`{"apiVersion":"palisade.dev/v1","kind":"GroupDefinition","metadata":{"name":"x"},"extra":1}`,
		`[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := decodeDoc(b)
		if err != nil {
			return
		}
		key, err := DocKey(obj)
		if err != nil {
			return
		}
		if !strings.HasPrefix(key, obj.GetKind()+"/") {
			t.Fatalf("DocKey = %q for a %s", key, obj.GetKind())
		}
		if _, err := code.ToSet([]code.Object{obj}, policy.SourceCode); err != nil {
			return
		}
	})
}
