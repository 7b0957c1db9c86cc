package code

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from golden; run with -update and review.\ngot:\n%s", name, got)
	}
}

func mustLoad(t *testing.T, data []byte) *policy.Set {
	t.Helper()
	s, err := Load(data, policy.SourceCode)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return s
}

// canonical sorts every list of a set by name, so that sets that differ
// only in order compare equal.
func canonical(s *policy.Set) *policy.Set {
	c := *s
	c.Groups = slices.Clone(s.Groups)
	slices.SortFunc(c.Groups, func(a, b policy.Group) int { return strings.Compare(a.Name, b.Name) })
	c.NetworkRules = slices.Clone(s.NetworkRules)
	slices.SortFunc(c.NetworkRules, func(a, b policy.NetworkRule) int { return strings.Compare(a.Name, b.Name) })
	c.ProcessRules = slices.Clone(s.ProcessRules)
	slices.SortFunc(c.ProcessRules, func(a, b policy.ProcessRule) int { return strings.Compare(a.Name, b.Name) })
	c.FileRules = slices.Clone(s.FileRules)
	slices.SortFunc(c.FileRules, func(a, b policy.FileRule) int { return strings.Compare(a.Name, b.Name) })
	c.AdmissionRules = slices.Clone(s.AdmissionRules)
	slices.SortFunc(c.AdmissionRules, func(a, b policy.AdmissionRule) int { return strings.Compare(a.Name, b.Name) })
	return &c
}

func TestLoadPolicy(t *testing.T) {
	s := mustLoad(t, readFile(t, "policy.yaml"))
	web := s.Group("web")
	if web == nil {
		t.Fatal("no group web")
	}
	wantCrit := []policy.Criterion{
		{Key: policy.KeyLabel, Label: "app", Op: "=", Value: "web"},
		{Key: policy.KeyNamespace, Op: "=", Value: "shop"},
	}
	if !reflect.DeepEqual(web.Criteria, wantCrit) {
		t.Errorf("web criteria %+v, want %+v", web.Criteria, wantCrit)
	}
	if web.NetworkMode != policy.ModeProtect || web.ProcessMode != policy.ModeMonitor || web.Baseline != policy.BaselineZeroDrift {
		t.Errorf("web modes %s/%s/%s", web.NetworkMode, web.ProcessMode, web.Baseline)
	}
	mon := s.Group("monitoring")
	if mon.Criteria[0].Key != policy.KeyNSLabel || mon.Criteria[0].Label != "team" {
		t.Errorf("ns: key not a namespace label: %+v", mon.Criteria[0])
	}
	byName := map[string]policy.NetworkRule{}
	for _, r := range s.NetworkRules {
		byName[r.Name] = r
	}
	if r := byName["lb-to-web"]; r.From != "external" || r.To != "web" || r.Ports != "tcp/443,tcp/80" {
		t.Errorf("ingress rule %+v", r)
	}
	if r := byName["web-to-db"]; r.From != "web" || r.To != "db" || !slices.Equal(r.Applications, []string{"PostgreSQL"}) {
		t.Errorf("egress rule %+v", r)
	}
	if r := byName["scrape-all"]; r.From != "monitoring" || r.To != "web" {
		t.Errorf("cluster egress rule %+v", r)
	}
	if len(s.ProcessRules) != 2 || s.ProcessRules[1].Name != "web:sh:/bin/sh" || s.ProcessRules[1].Action != policy.ActionDeny {
		t.Errorf("process rules %+v", s.ProcessRules)
	}
	if len(s.FileRules) != 1 || s.FileRules[0].Behavior != policy.FileBlockAccess {
		t.Errorf("file rules %+v", s.FileRules)
	}
	if !s.Admission.Enabled || s.Admission.Mode != policy.ModeProtect || len(s.AdmissionRules) != 3 {
		t.Errorf("admission %+v %d rules", s.Admission, len(s.AdmissionRules))
	}
	for _, g := range s.Groups {
		if g.Source != policy.SourceCode || g.Kind != policy.KindGroup {
			t.Errorf("group %s source %q kind %q", g.Name, g.Source, g.Kind)
		}
	}
}

func TestExportGoldenAndRoundTrip(t *testing.T) {
	s := mustLoad(t, readFile(t, "policy.yaml"))
	out, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "policy.export.yaml", out)
	again := mustLoad(t, out)
	if !reflect.DeepEqual(canonical(again), canonical(s)) {
		t.Errorf("round trip changed the policy:\nbefore %+v\nafter  %+v", canonical(s), canonical(again))
	}
	out2, err := Encode(again)
	if err != nil {
		t.Fatal(err)
	}
	if string(out2) != string(out) {
		t.Errorf("second export differs from the first")
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"wrong api version", "apiVersion: v1\nkind: SecurityRule\nmetadata: {name: a}\n", `document 1 (SecurityRule "a"): apiVersion "v1" is not palisade.dev/v1`},
		{"unknown kind", "apiVersion: palisade.dev/v1\nkind: Policy\nmetadata: {name: a}\n", `unknown kind "Policy"`},
		{"unknown field", "apiVersion: palisade.dev/v1\nkind: ClusterSecurityRule\nmetadata: {name: a}\nspec:\n  ingres: []\n", `unknown field "ingres"`},
		{"wrong type", "apiVersion: palisade.dev/v1\nkind: ClusterSecurityRule\nmetadata: {name: a}\nspec:\n  ingress: 5\n", `spec.ingress: wrong type`},
		{"bad yaml", "apiVersion: palisade.dev/v1\nkind: [\n", `document 1`},
		{"second document", "apiVersion: palisade.dev/v1\nkind: GroupDefinition\nmetadata: {name: a}\nspec: {selector: {name: a, criteria: [{key: app, op: '=', value: x}]}}\n---\nfoo: bar\n", `document 2: apiVersion "" is not`},
		{"no name", "apiVersion: palisade.dev/v1\nkind: GroupDefinition\nspec: {}\n", `metadata.name is missing`},
		{"scalar document", "just text\n", `not a mapping`},
		{"huge", strings.Repeat("#", MaxInputBytes+1), `limit`},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrDecode) {
			t.Errorf("%s: err = %v, want ErrDecode containing %q", tt.name, err, tt.want)
		}
	}
}

func TestConvertErrors(t *testing.T) {
	doc := func(body string) string {
		return "apiVersion: palisade.dev/v1\n" + body
	}
	tests := []struct {
		name, in, want string
	}{
		{"namespaced without namespace", doc("kind: SecurityRule\nmetadata: {name: a}\nspec: {target: {selector: {name: a, criteria: [{key: app, op: '=', value: a}]}}}\n"),
			`SecurityRule a: metadata.namespace is missing`},
		{"target namespace mismatch", doc("kind: SecurityRule\nmetadata: {name: a, namespace: x}\nspec: {target: {selector: {name: a, criteria: [{key: namespace, op: '=', value: prod}]}}}\n"),
			`does not match metadata.namespace "x"`},
		{"target without criteria", doc("kind: ClusterSecurityRule\nmetadata: {name: a}\nspec: {target: {selector: {name: a}}}\n"),
			`spec.target.selector: group "a" has no criteria`},
		{"namespaced target without criteria", doc("kind: SecurityRule\nmetadata: {name: a, namespace: shop}\nspec: {target: {selector: {name: learned.orders.shop}}}\n"),
			`spec.target.selector: group "learned.orders.shop" has no criteria`},
		{"bad mode", doc("kind: ClusterSecurityRule\nmetadata: {name: a}\nspec: {target: {mode: Enforce, selector: {name: a, criteria: [{key: app, op: '=', value: a}]}}}\n"),
			`spec.target.mode: "Enforce" is not Discover, Monitor or Protect`},
		{"conflicting group", doc("kind: GroupDefinition\nmetadata: {name: a}\nspec: {selector: {name: a, criteria: [{key: app, op: '=', value: a}]}}\n---\n") +
			doc("kind: GroupDefinition\nmetadata: {name: b}\nspec: {selector: {name: a, criteria: [{key: app, op: '=', value: b}]}}\n"),
			`GroupDefinition b: group "a" conflicts with its definition in GroupDefinition a`},
		{"reserved with criteria", doc("kind: ClusterSecurityRule\nmetadata: {name: a}\nspec:\n  target: {selector: {name: a, criteria: [{key: app, op: '=', value: a}]}}\n  egress: [{name: x, action: allow, selector: {name: external, criteria: [{key: app, op: '=', value: a}]}}]\n"),
			`"external" is a reserved group`},
		{"admission mode", doc("kind: AdmissionRule\nmetadata: {name: a}\nspec: {mode: discover}\n"), `spec.mode: "discover" is not monitor or protect`},
	}
	for _, tt := range tests {
		_, err := Load([]byte(tt.in), policy.SourceCode)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want containing %q", tt.name, err, tt.want)
		}
	}
}

func TestValidateNamesTheRule(t *testing.T) {
	in := "apiVersion: palisade.dev/v1\nkind: ClusterSecurityRule\nmetadata: {name: a}\nspec:\n  target: {selector: {name: a, criteria: [{key: app, op: '=', value: a}]}}\n  egress: [{name: web-to-db, action: allow, ports: tcp/99999, selector: {name: external}}]\n"
	s, err := Load([]byte(in), policy.SourceCode)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Validate()
	if want := `network rule "web-to-db": ports: "tcp/99999" is out of range`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate = %v, want containing %q", err, want)
	}
}

func TestPlanAndApply(t *testing.T) {
	current := mustLoad(t, readFile(t, "policy.yaml"))
	// A user-created rule and a federated group live next to the code.
	current.NetworkRules = append(current.NetworkRules, policy.NetworkRule{Meta: policy.Meta{Name: "user-rule", Kind: policy.KindNetworkRule, Source: policy.SourceUser}, From: "web", To: "batch", Action: policy.ActionAllow})
	current.Groups = append(current.Groups, policy.Group{Meta: policy.Meta{Name: "fed.all", Kind: policy.KindGroup, Source: policy.SourceFederated, Revision: 4}, Criteria: []policy.Criterion{{Key: policy.KeyNamespace, Op: "=", Value: "*"}}})

	incoming := mustLoad(t, readFile(t, "policy.yaml"))
	incoming.NetworkRules = slices.DeleteFunc(incoming.NetworkRules, func(r policy.NetworkRule) bool { return r.Name == "scrape-all" })
	for i := range incoming.NetworkRules {
		if incoming.NetworkRules[i].Name == "web-to-db" {
			incoming.NetworkRules[i].Ports = "tcp/5432,tcp/5433"
		}
	}
	incoming.NetworkRules = append(incoming.NetworkRules, policy.NetworkRule{Meta: policy.Meta{Name: "new-rule", Kind: policy.KindNetworkRule, Source: policy.SourceCode}, From: "web", To: "batch", Ports: "tcp/1", Action: policy.ActionAllow})

	rep, err := Plan(current, incoming, PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := rep.String()
	for _, want := range []string{
		`update    network rule "web-to-db" (ports)`,
		`create    network rule "new-rule"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("plan lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "scrape-all") || strings.Contains(got, "user-rule") {
		t.Errorf("plan without prune touches other objects:\n%s", got)
	}
	rep, err = Plan(current, incoming, PlanOptions{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.String(); !strings.Contains(got, `delete    network rule "scrape-all"`) || strings.Contains(got, "user-rule") || strings.Contains(got, "fed.all") {
		t.Errorf("prune plan:\n%s", got)
	}
	applied, _, err := Apply(current, incoming, PlanOptions{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, r := range applied.NetworkRules {
		names[r.Name] = r.Ports
	}
	if _, ok := names["scrape-all"]; ok {
		t.Error("pruned rule still there")
	}
	if names["web-to-db"] != "tcp/5432,tcp/5433" || names["user-rule"] != "" {
		t.Errorf("applied rules %v", names)
	}
	if _, ok := names["user-rule"]; !ok {
		t.Error("user rule lost")
	}
	same, err := Plan(applied, incoming, PlanOptions{Prune: true})
	if err != nil || same.Changed() {
		t.Errorf("re-plan after apply: %v %s", err, same)
	}

	// Code must not replace a federated object.
	fed := &policy.Set{Groups: []policy.Group{{Meta: policy.Meta{Name: "fed.all", Source: policy.SourceCode}, Criteria: []policy.Criterion{{Key: policy.KeyNamespace, Op: "=", Value: "x"}}}}}
	if _, err := Plan(current, fed, PlanOptions{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("replacing a federated group: %v", err)
	}
	// A result that does not validate is refused.
	bad := &policy.Set{NetworkRules: []policy.NetworkRule{{Meta: policy.Meta{Name: "dangling", Source: policy.SourceCode}, From: "nope", To: "web", Action: policy.ActionAllow}}}
	if _, _, err := Apply(current, bad, PlanOptions{}); err == nil || !strings.Contains(err.Error(), `unknown group "nope"`) {
		t.Errorf("apply of dangling rule: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"policy.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("kind: List\nitems: [{apiVersion: palisade.dev/v1, kind: GroupDefinition, metadata: {name: a}}]\n"))
	f.Add([]byte("a: &a [x,x,x,x]\nb: &b [*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b]\nd: [*c,*c,*c,*c]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		s, err := ToSet(objs, policy.SourceCode)
		if err != nil {
			return
		}
		if s.Validate() != nil {
			return
		}
		// A valid set exports, and the export loads back.
		out, err := Encode(s)
		if err != nil {
			return
		}
		if _, err := Load(out, policy.SourceCode); err != nil {
			t.Fatalf("export of a valid set does not load: %v\n%s", err, out)
		}
	})
}
