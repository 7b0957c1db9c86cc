package code

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

func importSample(t *testing.T, name string) (*policy.Set, []Skipped, []byte) {
	t.Helper()
	objs, skipped, err := ImportNeuVector(readFile(t, filepath.Join("neuvector", name)))
	if err != nil {
		t.Fatalf("ImportNeuVector(%s): %v", name, err)
	}
	out, err := EncodeObjects(objs)
	if err != nil {
		t.Fatal(err)
	}
	set, err := ToSet(objs, policy.SourceCode)
	if err != nil {
		t.Fatalf("ToSet: %v\n%s", err, out)
	}
	if err := set.Validate(); err != nil {
		t.Fatalf("imported policy does not validate: %v\n%s", err, out)
	}
	return set, skipped, out
}

func skippedText(s []Skipped) []byte {
	var b strings.Builder
	for _, x := range s {
		fmt.Fprintln(&b, x)
	}
	return []byte(b.String())
}

func TestImportNeuVectorSecurityRules(t *testing.T) {
	set, skipped, out := importSample(t, "security-rules.yaml")
	golden(t, "neuvector/security-rules.golden.yaml", out)
	golden(t, "neuvector/security-rules.skipped.txt", skippedText(skipped))

	nginx := set.Group("nv.nginx-pod.demo")
	if nginx == nil || nginx.NetworkMode != policy.ModeProtect || nginx.ProcessMode != policy.ModeProtect || nginx.Baseline != policy.BaselineZeroDrift {
		t.Fatalf("target group %+v", nginx)
	}
	if !slices.Contains(nginx.Criteria, policy.Criterion{Key: policy.KeyNamespace, Op: "=", Value: "demo"}) {
		t.Errorf("domain criterion not mapped to namespace: %+v", nginx.Criteria)
	}
	partner := set.Group("partner-api")
	if partner == nil {
		t.Fatal("address group not imported")
	}
	var got []string
	for _, c := range partner.Criteria {
		got = append(got, c.Value)
	}
	if want := []string{"10.10.0.1/32", "10.10.0.2/31", "10.10.0.4/31", "10.10.0.6/32"}; !slices.Equal(got, want) {
		t.Errorf("address range became %v, want %v", got, want)
	}
	bastion := set.Group("bastion")
	if bastion == nil || bastion.Criteria[1].Key != policy.KeyNSLabel || bastion.Criteria[1].Label != "env" {
		t.Errorf("ns: label criterion %+v", bastion)
	}
	rules := map[string]policy.NetworkRule{}
	for _, r := range set.NetworkRules {
		rules[r.Name] = r
	}
	if r := rules["nv.nginx-pod.demo-egress-1"]; !slices.Equal(r.Applications, []string{"TLS"}) || r.To != "partner-api" {
		t.Errorf("SSL rule %+v", r)
	}
	if _, ok := rules["nv.nginx-pod.demo-egress-2"]; ok {
		t.Error("rule with an unknown application was imported (it would widen)")
	}
	if r := rules["nv.nginx-pod.demo-ingress-0"]; r.From != "external" || len(r.Applications) != 0 || r.Ports != "tcp/80" {
		t.Errorf("ingress rule %+v", r)
	}
	if r := rules["frontend-ingress-0"]; r.From != "bastion" || r.To != "frontend" || r.Action != policy.ActionDeny {
		t.Errorf("cluster rule %+v", r)
	}
	if len(set.FileRules) != 2 || set.FileRules[0].Behavior != policy.FileBlockAccess {
		t.Errorf("file rules %+v", set.FileRules)
	}
	if set.Group("all-demo") == nil {
		t.Error("NvGroupDefinition not imported")
	}
	text := string(skippedText(skipped))
	for _, want := range []string{"Jetty", "spec.waf", "priority 3", "allow_update", "spec.sensors: unknown field"} {
		if !strings.Contains(text, want) {
			t.Errorf("skipped report lacks %q:\n%s", want, text)
		}
	}
}

func TestImportNeuVectorAdmission(t *testing.T) {
	set, skipped, out := importSample(t, "admission.yaml")
	golden(t, "neuvector/admission.golden.yaml", out)
	golden(t, "neuvector/admission.skipped.txt", skippedText(skipped))
	if !set.Admission.Enabled || set.Admission.Mode != policy.ModeProtect {
		t.Errorf("settings %+v", set.Admission)
	}
	rules := map[string]policy.AdmissionRule{}
	for _, r := range set.AdmissionRules {
		rules[r.Name] = r
	}
	if _, ok := rules["nv-1003"]; ok {
		t.Error("rule with sub-criteria imported (it would deny more)")
	}
	if _, ok := rules["nv-1004"]; ok {
		t.Error("rule with an unknown criterion imported")
	}
	r := rules["nv-1001"]
	if !slices.Equal(r.Containers, []policy.ContainerKind{policy.ContainersMain, policy.ContainersInit}) {
		t.Errorf("containers %v", r.Containers)
	}
	if r.Criteria[1].Value != "docker.io,quay.io" {
		t.Errorf("registry value %q", r.Criteria[1].Value)
	}
	if c := rules["nv-1002"].Criteria[2]; c.Op != "regex" || c.Value != "(?:^nginx.*)|(?:^redis:.*)" {
		t.Errorf("regex criterion %+v", c)
	}
	if rules["nv-1"].Action != policy.ActionAllow {
		t.Errorf("exception rule %+v", rules["nv-1"])
	}
	text := string(skippedText(skipped))
	for _, want := range []string{"sub-criteria", `"saBindRiskyRole" has no Palisade equivalent`, "client_mode", "only logged in NeuVector"} {
		if !strings.Contains(text, want) {
			t.Errorf("skipped report lacks %q:\n%s", want, text)
		}
	}
}

func TestImportNeuVectorErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"apiVersion: palisade.dev/v1\nkind: NvSecurityRule\nmetadata: {name: a}\n", `apiVersion "palisade.dev/v1" is not neuvector.com/v1`},
		{"apiVersion: neuvector.com/v1\nkind: NvSecurityRule\nmetadata: {name: a}\nspec: {ingress: 3}\n", `spec: ingress: wrong type`},
		{"- a\n- b\n", "document 1"},
	} {
		_, _, err := ImportNeuVector([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ImportNeuVector(%q) = %v, want containing %q", tt.in, err, tt.want)
		}
	}
	// An unknown kind is reported, not an error.
	_, skipped, err := ImportNeuVector([]byte("apiVersion: neuvector.com/v1\nkind: NvDlpSecurityRule\nmetadata: {name: a}\n"))
	if err != nil || len(skipped) != 1 || !strings.Contains(skipped[0].Reason, "no Palisade equivalent") {
		t.Errorf("unknown kind: %v %v", err, skipped)
	}
}

func TestRangeToPrefixes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
	}{
		{"10.0.0.0-10.0.0.255", "10.0.0.0/24"},
		{"10.0.0.1-10.0.0.1", "10.0.0.1/32"},
		{"0.0.0.0-255.255.255.255", "0.0.0.0/0"},
		{"10.0.0.255-10.0.1.0", "10.0.0.255/32 10.0.1.0/32"},
		{"2001:db8::-2001:db8::ff", "2001:db8::/120"},
	} {
		ps, err := rangeToPrefixes(tt.in)
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		var s []string
		for _, p := range ps {
			s = append(s, p.String())
		}
		if got := strings.Join(s, " "); got != tt.want {
			t.Errorf("%s = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"10.0.0.5-10.0.0.1", "10.0.0.1-::1", "x-y"} {
		if _, err := rangeToPrefixes(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func FuzzImportNeuVector(f *testing.F) {
	for _, name := range []string{"security-rules.yaml", "admission.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "neuvector", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("apiVersion: neuvector.com/v1\nkind: NvSecurityRule\nmetadata: {name: a}\nspec: {target: {selector: {name: a, criteria: [{key: address, op: '=', value: 1.1.1.1-1.1.1.0}]}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _, err := ImportNeuVector(data)
		if err != nil {
			return
		}
		if s, err := ToSet(objs, policy.SourceCode); err == nil {
			_ = s.Validate()
		}
	})
}

func FuzzRangeToPrefixes(f *testing.F) {
	f.Add("10.0.0.1-10.0.0.20")
	f.Add("::1-::ffff")
	f.Fuzz(func(t *testing.T, r string) {
		ps, err := rangeToPrefixes(r)
		if err != nil {
			return
		}
		a, b, _ := strings.Cut(r, "-")
		lo, _ := netip.ParseAddr(strings.TrimSpace(a))
		hi, _ := netip.ParseAddr(strings.TrimSpace(b))
		if ps[0].Addr() != lo || lastAddr(ps[len(ps)-1]) != hi {
			t.Fatalf("%s -> %v does not span the range", r, ps)
		}
	})
}
