package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"*", "", true},
		{"*", "anything", true},
		{"web", "web", true},
		{"web", "webs", false},
		{"web-*", "web-1", true},
		{"web-*", "web-", true},
		{"web-?", "web-12", false},
		{"web-??", "web-12", true},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"*a*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

var testWorkload = Workload{
	ID:              "demo/web-1",
	Name:            "web-1",
	Namespace:       "demo",
	Labels:          map[string]string{"app": "web", "tier": "frontend"},
	NamespaceLabels: map[string]string{"team": "payments"},
	Service:         "web.demo",
	Node:            "node-a",
	Containers:      []Container{{Name: "nginx", Image: "docker.io/library/nginx:1.25"}, {Name: "sidecar", Image: "envoy:1.30"}},
	Addresses:       []netip.Addr{netip.MustParseAddr("10.0.0.5")},
}

func TestSelectorMatchWorkload(t *testing.T) {
	c := func(k Key, op Op, v string) Criterion { return Criterion{Key: k, Op: op, Value: v} }
	l := func(k Key, label string, op Op, v string) Criterion {
		return Criterion{Key: k, Label: label, Op: op, Value: v}
	}
	tests := []struct {
		name     string
		criteria []Criterion
		want     bool
	}{
		{"namespace equal", []Criterion{c(KeyNamespace, OpEqual, "demo")}, true},
		{"namespace other", []Criterion{c(KeyNamespace, OpEqual, "prod")}, false},
		{"namespace wildcard", []Criterion{c(KeyNamespace, OpEqual, "de*")}, true},
		{"namespace question", []Criterion{c(KeyNamespace, OpEqual, "d?mo")}, true},
		{"namespace not equal", []Criterion{c(KeyNamespace, OpNotEqual, "prod")}, true},
		{"namespace not equal self", []Criterion{c(KeyNamespace, OpNotEqual, "demo")}, false},
		{"namespace not equal wildcard", []Criterion{c(KeyNamespace, OpNotEqual, "d*")}, false},
		{"namespace contains", []Criterion{c(KeyNamespace, OpContains, "em")}, true},
		{"namespace prefix", []Criterion{c(KeyNamespace, OpPrefix, "dem")}, true},
		{"namespace prefix miss", []Criterion{c(KeyNamespace, OpPrefix, "emo")}, false},
		{"namespace regex", []Criterion{c(KeyNamespace, OpRegex, "^d.m[o]$")}, true},
		{"namespace not regex", []Criterion{c(KeyNamespace, OpNotRegex, "^prod")}, true},
		{"namespace not regex self", []Criterion{c(KeyNamespace, OpNotRegex, "^de")}, false},
		{"label", []Criterion{l(KeyLabel, "app", OpEqual, "web")}, true},
		{"label missing", []Criterion{l(KeyLabel, "role", OpEqual, "web")}, false},
		{"label missing negative", []Criterion{l(KeyLabel, "role", OpNotEqual, "db")}, true},
		{"ns label", []Criterion{l(KeyNSLabel, "team", OpEqual, "payments")}, true},
		{"ns label is not pod label", []Criterion{l(KeyLabel, "team", OpEqual, "payments")}, false},
		{"image any container", []Criterion{c(KeyImage, OpEqual, "envoy:*")}, true},
		{"image contains", []Criterion{c(KeyImage, OpContains, "nginx")}, true},
		{"image not equal any container", []Criterion{c(KeyImage, OpNotEqual, "envoy:*")}, false},
		{"container", []Criterion{c(KeyContainer, OpEqual, "sidecar")}, true},
		{"node", []Criterion{c(KeyNode, OpEqual, "node-a")}, true},
		{"service", []Criterion{c(KeyService, OpEqual, "web.demo")}, true},
		{"same key ORed", []Criterion{c(KeyNamespace, OpEqual, "prod"), c(KeyNamespace, OpEqual, "demo")}, true},
		{"same key ORed none", []Criterion{c(KeyNamespace, OpEqual, "prod"), c(KeyNamespace, OpEqual, "dev")}, false},
		{"different keys ANDed", []Criterion{c(KeyNamespace, OpEqual, "demo"), l(KeyLabel, "app", OpEqual, "db")}, false},
		{"different keys ANDed all", []Criterion{c(KeyNamespace, OpEqual, "demo"), l(KeyLabel, "app", OpEqual, "web")}, true},
		{"different label names ANDed", []Criterion{l(KeyLabel, "app", OpEqual, "web"), l(KeyLabel, "tier", OpEqual, "backend")}, false},
		{"negatives on one key ANDed", []Criterion{c(KeyNamespace, OpNotEqual, "prod"), c(KeyNamespace, OpNotEqual, "demo")}, false},
		{"positive and negative on one key", []Criterion{c(KeyNamespace, OpPrefix, "d"), c(KeyNamespace, OpNotEqual, "dev")}, true},
		{"address group matches no workload", []Criterion{c(KeyAddress, OpEqual, "10.0.0.0/8")}, false},
	}
	for _, tt := range tests {
		sel, err := CompileSelector(tt.criteria)
		if err != nil {
			t.Fatalf("%s: CompileSelector: %v", tt.name, err)
		}
		if got := sel.MatchWorkload(&testWorkload); got != tt.want {
			t.Errorf("%s: MatchWorkload = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSelectorAddress(t *testing.T) {
	sel, err := CompileSelector([]Criterion{
		{Key: KeyAddress, Op: OpEqual, Value: "10.1.0.0/16"},
		{Key: KeyAddress, Op: OpEqual, Value: "192.0.2.7"},
		{Key: KeyAddress, Op: OpEqual, Value: "2001:db8::/32"},
		{Key: KeyAddress, Op: OpEqual, Value: "*.Example.com"},
		{Key: KeyAddress, Op: OpEqual, Value: "api.github.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sel.IsAddress() {
		t.Fatal("IsAddress = false")
	}
	addrs := []struct {
		a    string
		want bool
	}{{"10.1.2.3", true}, {"10.2.0.1", false}, {"192.0.2.7", true}, {"192.0.2.8", false}, {"2001:db8::1", true}, {"2001:db9::1", false}}
	for _, tt := range addrs {
		if got := sel.MatchAddress(netip.MustParseAddr(tt.a)); got != tt.want {
			t.Errorf("MatchAddress(%s) = %v, want %v", tt.a, got, tt.want)
		}
	}
	names := []struct {
		n    string
		want bool
	}{{"www.example.com", true}, {"a.b.example.com.", true}, {"example.com", false}, {"api.github.com", true}, {"x.api.github.com", false}}
	for _, tt := range names {
		if got := sel.MatchFQDN(tt.n); got != tt.want {
			t.Errorf("MatchFQDN(%s) = %v, want %v", tt.n, got, tt.want)
		}
	}
	if got := len(sel.Prefixes()); got != 3 {
		t.Errorf("Prefixes = %v, want 3", sel.Prefixes())
	}
}

func TestCompileSelectorErrors(t *testing.T) {
	tests := []struct {
		name     string
		criteria []Criterion
		want     string
	}{
		{"none", nil, "no criteria"},
		{"unknown key", []Criterion{{Key: "colour", Op: OpEqual, Value: "x"}}, `unknown key "colour"`},
		{"unknown op", []Criterion{{Key: KeyNamespace, Op: "~", Value: "x"}}, `unknown operator "~"`},
		{"bad regex", []Criterion{{Key: KeyNamespace, Op: OpRegex, Value: "a("}}, `bad regex "a(": missing closing )`},
		{"label without name", []Criterion{{Key: KeyLabel, Op: OpEqual, Value: "x"}}, `needs a label name`},
		{"namespace with label", []Criterion{{Key: KeyNamespace, Label: "x", Op: OpEqual, Value: "x"}}, `takes no label name`},
		{"bad address", []Criterion{{Key: KeyAddress, Op: OpEqual, Value: "10.0.0.0/33"}}, `not a valid IP address or CIDR`},
		{"zone", []Criterion{{Key: KeyAddress, Op: OpEqual, Value: "fe80::1%eth0"}}, `zone`},
		{"bad fqdn", []Criterion{{Key: KeyAddress, Op: OpEqual, Value: "exa mple.com"}}, `not a valid address or domain name`},
		{"address op", []Criterion{{Key: KeyAddress, Op: OpPrefix, Value: "10."}}, `only the = operator`},
		{"address mixed", []Criterion{{Key: KeyAddress, Op: OpEqual, Value: "10.0.0.1"}, {Key: KeyNamespace, Op: OpEqual, Value: "x"}}, `cannot be combined`},
		{"empty contains", []Criterion{{Key: KeyImage, Op: OpContains}}, `contains needs a value`},
		{"huge value", []Criterion{{Key: KeyImage, Op: OpEqual, Value: strings.Repeat("a", 2000)}}, `limit 1024`},
		{"huge regex", []Criterion{{Key: KeyImage, Op: OpRegex, Value: strings.Repeat("a", 1000) + "(((("}}, `bad regex`},
		{"too many", make([]Criterion, 65), `65 criteria`},
	}
	for _, tt := range tests {
		_, err := CompileSelector(tt.criteria)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want containing %q", tt.name, err, tt.want)
		}
	}
}

func FuzzCriteria(f *testing.F) {
	f.Add("namespace", "", "=", "demo", "demo")
	f.Add("label", "app", "regex", "^w.*b$", "web")
	f.Add("address", "", "=", "*.example.com", "a.example.com")
	f.Add("image", "", "!=", "nginx:*?*", "nginx:1")
	f.Add("namespace", "", "regex", "(a+)+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!")
	f.Fuzz(func(t *testing.T, key, label, op, value, subject string) {
		sel, err := CompileSelector([]Criterion{{Key: Key(key), Label: label, Op: Op(op), Value: value}})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		w := Workload{Namespace: subject, Labels: map[string]string{label: subject}, NamespaceLabels: map[string]string{label: subject},
			Service: subject, Node: subject, Containers: []Container{{Name: subject, Image: subject}}}
		sel.MatchWorkload(&w)
		sel.MatchFQDN(subject)
		if a, err := netip.ParseAddr(subject); err == nil {
			sel.MatchAddress(a)
		}
	})
}

func FuzzRegex(f *testing.F) {
	for _, s := range []string{"^a$", "(", "[a-", "(a*)*b", "\\p{Greek}+", "a{1000}{1000}", "(?i)x"} {
		f.Add(s, "aaaa")
	}
	f.Fuzz(func(t *testing.T, expr, s string) {
		re, err := CompileRegex(expr)
		if err != nil {
			return
		}
		re.MatchString(s)
	})
}
