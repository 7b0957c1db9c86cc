package learn

import (
	"slices"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

func TestLearnProcesses(t *testing.T) {
	webGroup := policy.Group{Meta: policy.Meta{Name: "web", Source: policy.SourceUser}, Criteria: []policy.Criterion{{Key: policy.KeyLabel, Label: "app", Op: "=", Value: "web"}}}
	learnedWeb := policy.Group{Meta: policy.Meta{Name: "learned.web.demo", Source: policy.SourceLearned},
		Criteria: []policy.Criterion{{Key: policy.KeyService, Op: "=", Value: "web"}, {Key: policy.KeyNamespace, Op: "=", Value: "demo"}}}
	tests := []struct {
		name       string
		groups     []policy.Group
		rules      []policy.ProcessRule
		execs      []Exec
		wantRules  []string // group process path
		wantGroups []string
	}{
		{name: "new group and rule", execs: []Exec{{web1, "/usr/sbin/nginx"}},
			wantRules: []string{"learned.web.demo nginx /usr/sbin/nginx"}, wantGroups: []string{"learned.web.demo"}},
		{name: "two workloads of one service learn one rule",
			execs:     []Exec{{web1, "/usr/sbin/nginx"}, {web2, "/usr/sbin/nginx"}, {web2, "/usr/sbin/nginx"}},
			wantRules: []string{"learned.web.demo nginx /usr/sbin/nginx"}, wantGroups: []string{"learned.web.demo"}},
		{name: "existing learned group", groups: []policy.Group{learnedWeb}, execs: []Exec{{web1, "/bin/sh"}, {db, "/usr/bin/postgres"}},
			wantRules:  []string{"learned.db.demo postgres /usr/bin/postgres", "learned.web.demo sh /bin/sh"},
			wantGroups: []string{"learned.db.demo"}},
		{name: "covered by a user rule of a group the workload is in", groups: []policy.Group{webGroup},
			rules:     []policy.ProcessRule{{Meta: policy.Meta{Name: "web-bin", Source: policy.SourceUser}, Group: "web", Process: "*", Path: "/usr/sbin/*", Action: policy.ActionAllow}},
			execs:     []Exec{{web1, "/usr/sbin/nginx"}, {db, "/usr/sbin/nginx"}},
			wantRules: []string{"learned.db.demo nginx /usr/sbin/nginx"}, wantGroups: []string{"learned.db.demo"}},
		{name: "covered by a deny rule", groups: []policy.Group{webGroup},
			rules: []policy.ProcessRule{{Meta: policy.Meta{Name: "no-sh", Source: policy.SourceUser}, Group: "web", Process: "sh", Path: "*", Action: policy.ActionDeny}},
			execs: []Exec{{web1, "/bin/sh"}}},
		{name: "already learned", groups: []policy.Group{learnedWeb},
			rules: []policy.ProcessRule{{Meta: policy.Meta{Name: "x", Source: policy.SourceLearned}, Group: "learned.web.demo", Process: "sh", Path: "/bin/sh", Action: policy.ActionAllow}},
			execs: []Exec{{web1, "/bin/sh"}}},
		{name: "bad paths are ignored", execs: []Exec{{web1, "sh"}, {web1, ""}, {nil, "/bin/sh"}, {web1, "/bin/s\x00h"}, {web1, "/" + strings.Repeat("a", 5000)}}},
	}
	l := learner(t, 16)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := &policy.Set{Groups: tc.groups, ProcessRules: tc.rules}
			cur.Normalize()
			res, err := l.LearnProcesses(cur, tc.execs)
			if err != nil {
				t.Fatalf("LearnProcesses: %v", err)
			}
			got := []string{}
			for _, r := range res.ProcessRules {
				if r.Source != policy.SourceLearned || r.Action != policy.ActionAllow {
					t.Errorf("rule %s: source %s action %s", r.Name, r.Source, r.Action)
				}
				got = append(got, r.Group+" "+r.Process+" "+r.Path)
			}
			if want := append([]string{}, tc.wantRules...); !slices.Equal(got, want) {
				t.Errorf("rules: got %q, want %q", got, want)
			}
			gotG := []string{}
			for _, g := range res.Groups {
				gotG = append(gotG, g.Name)
			}
			if want := append([]string{}, tc.wantGroups...); !slices.Equal(gotG, want) {
				t.Errorf("groups: got %q, want %q", gotG, want)
			}
			// What is learned is a valid policy with what was there.
			next := &policy.Set{Groups: append(slices.Clone(tc.groups), res.Groups...), ProcessRules: append(slices.Clone(tc.rules), res.ProcessRules...)}
			next.Normalize()
			if err := next.Validate(); err != nil {
				t.Errorf("learned policy does not validate: %v", err)
			}
			// Learning again from the same execs adds nothing.
			again, err := l.LearnProcesses(next, tc.execs)
			if err != nil || len(again.ProcessRules)+len(again.Groups) != 0 {
				t.Errorf("second pass: %+v, %v", again, err)
			}
		})
	}
}

func TestLearnProcessesOrderFree(t *testing.T) {
	execs := []Exec{{web1, "/bin/sh"}, {db, "/usr/bin/postgres"}, {web2, "/usr/sbin/nginx"}, {web1, "/bin/sh"}}
	l := learner(t, 16)
	first, err := l.LearnProcesses(&policy.Set{}, execs)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(execs)
	second, err := l.LearnProcesses(&policy.Set{}, execs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(first.ProcessRules, second.ProcessRules, func(a, b policy.ProcessRule) bool { return a.Name == b.Name && a.Path == b.Path }) {
		t.Errorf("order changed the result: %v vs %v", first.ProcessRules, second.ProcessRules)
	}
	names := map[string]bool{}
	for _, r := range first.ProcessRules {
		if err := policy.CheckName(r.Name); err != nil || names[r.Name] {
			t.Errorf("rule name %q: %v (duplicate %v)", r.Name, err, names[r.Name])
		}
		names[r.Name] = true
	}
}
