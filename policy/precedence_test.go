package policy

import (
	"slices"
	"testing"
)

func TestSortedNetworkRules(t *testing.T) {
	r := func(name string, src Source, a Action) NetworkRule {
		return NetworkRule{Meta: Meta{Name: name, Source: src}, Action: a}
	}
	tests := []struct {
		name  string
		rules []NetworkRule
		want  []string
	}{
		{"sources in order", []NetworkRule{r("l", SourceLearned, ActionAllow), r("u", SourceUser, ActionAllow), r("c", SourceCode, ActionAllow), r("f", SourceFederated, ActionAllow)},
			[]string{"f", "c", "u", "l"}},
		{"deny before allow within a source", []NetworkRule{r("a", SourceUser, ActionAllow), r("b", SourceUser, ActionDeny)}, []string{"b", "a"}},
		{"source beats action", []NetworkRule{r("d", SourceUser, ActionDeny), r("a", SourceCode, ActionAllow)}, []string{"a", "d"}},
		{"name breaks ties", []NetworkRule{r("z", SourceUser, ActionAllow), r("m", SourceUser, ActionAllow)}, []string{"m", "z"}},
		{"disabled dropped", []NetworkRule{{Meta: Meta{Name: "x", Source: SourceUser}, Disabled: true}, r("y", SourceUser, ActionAllow)}, []string{"y"}},
	}
	for _, tt := range tests {
		var got []string
		for _, x := range SortedNetworkRules(tt.rules) {
			got = append(got, x.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: order %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSortedAdmissionRules(t *testing.T) {
	r := func(name string, src Source, a Action) AdmissionRule {
		return AdmissionRule{Meta: Meta{Name: name, Source: src}, Action: a}
	}
	rules := []AdmissionRule{
		r("user-deny", SourceUser, ActionDeny), r("user-allow", SourceUser, ActionAllow),
		r("code-deny", SourceCode, ActionDeny), r("fed-deny", SourceFederated, ActionDeny),
		r("fed-allow", SourceFederated, ActionAllow), r("code-allow", SourceCode, ActionAllow),
	}
	want := []string{"fed-allow", "fed-deny", "code-allow", "code-deny", "user-allow", "user-deny"}
	var got []string
	for _, x := range SortedAdmissionRules(rules) {
		got = append(got, x.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

func TestResponses(t *testing.T) {
	s := &Set{ResponseRules: []ResponseRule{
		{Meta: Meta{Name: "b", Source: SourceUser}, Event: EventNetworkViolation, Actions: []ResponseAction{ResponseSuppressLog}},
		{Meta: Meta{Name: "a", Source: SourceFederated, Revision: 1}, Event: EventNetworkViolation, Group: "web", Actions: []ResponseAction{ResponseQuarantine}},
		{Meta: Meta{Name: "c", Source: SourceUser}, Event: EventProcessViolation, Actions: []ResponseAction{ResponseQuarantine}},
		{Meta: Meta{Name: "d", Source: SourceUser}, Event: EventNetworkViolation, Disabled: true, Actions: []ResponseAction{ResponseQuarantine}},
	}}
	names := func(rs []*ResponseRule) (out []string) {
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	if got := names(s.Responses(EventNetworkViolation, []string{"web"})); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("web network violation: %v", got)
	}
	if got := names(s.Responses(EventNetworkViolation, []string{"db"})); !slices.Equal(got, []string{"b"}) {
		t.Errorf("db network violation: %v", got)
	}
}
