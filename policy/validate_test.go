package policy

import (
	"errors"
	"strings"
	"testing"
)

func validSet() *Set {
	g := func(name string, src Source, ns string) Group {
		return Group{Meta: Meta{Name: name, Source: src}, Criteria: []Criterion{{Key: KeyNamespace, Op: OpEqual, Value: ns}}}
	}
	s := &Set{
		Groups: []Group{g("web", SourceUser, "demo"), g("db", SourceUser, "data"),
			{Meta: Meta{Name: "fed.api", Source: SourceFederated, Revision: 7}, Criteria: []Criterion{{Key: KeyService, Op: OpEqual, Value: "api"}}}},
		NetworkRules: []NetworkRule{
			{Meta: Meta{Name: "web-to-db", Source: SourceUser}, From: "web", To: "db", Ports: "tcp/5432", Action: ActionAllow},
			{Meta: Meta{Name: "fed-out", Source: SourceFederated, Revision: 7}, From: "fed.api", To: "external", Ports: "tcp/443", Applications: []string{"tls"}, Action: ActionAllow},
		},
		ProcessRules:   []ProcessRule{{Meta: Meta{Name: "web:nginx", Source: SourceUser}, Group: "web", Process: "nginx", Path: "/usr/sbin/nginx", Action: ActionAllow}},
		FileRules:      []FileRule{{Meta: Meta{Name: "web:/etc", Source: SourceUser}, Group: "web", Filter: "/etc/nginx", Recursive: true, Behavior: FileMonitorChange}},
		AdmissionRules: []AdmissionRule{{Meta: Meta{Name: "no-critical", Source: SourceUser}, Action: ActionDeny, Criteria: []AdmissionCriterion{{Name: CritCVECriticalCount, Op: ">", Value: "0"}}}},
		ResponseRules:  []ResponseRule{{Meta: Meta{Name: "hook", Source: SourceUser}, Event: EventNetworkViolation, Group: "web", Actions: []ResponseAction{ResponseWebhook}, Webhook: "https://hooks.example/x"}},
	}
	return s
}

func TestValidateAcceptsValidSet(t *testing.T) {
	if err := validSet().Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Set)
		want   string
	}{
		{"port out of range", func(s *Set) { s.NetworkRules[0].Ports = "tcp/99999" },
			`network rule "web-to-db": ports: "tcp/99999" is out of range`},
		{"unknown from group", func(s *Set) { s.NetworkRules[0].From = "nope" },
			`network rule "web-to-db": from: unknown group "nope"`},
		{"missing to group", func(s *Set) { s.NetworkRules[0].To = "" },
			`network rule "web-to-db": to: missing group`},
		{"bad action", func(s *Set) { s.NetworkRules[0].Action = "permit" },
			`network rule "web-to-db": action: "permit" is not allow or deny`},
		{"unknown application", func(s *Set) { s.NetworkRules[0].Applications = []string{"gopher"} },
			`network rule "web-to-db": applications: unknown application "gopher"`},
		{"conflicting rule", func(s *Set) {
			r := s.NetworkRules[0]
			r.Name, r.Action = "deny-web-db", ActionDeny
			s.NetworkRules = append(s.NetworkRules, r)
		}, `network rule "deny-web-db": action: conflicts with network rule "web-to-db"`},
		{"conflicting duplicate name", func(s *Set) {
			r := s.NetworkRules[0]
			r.Ports = "tcp/5433"
			s.NetworkRules = append(s.NetworkRules, r)
		}, `network rule "web-to-db": name: conflicting duplicate`},
		{"identical duplicate name", func(s *Set) { s.NetworkRules = append(s.NetworkRules, s.NetworkRules[0]) },
			`network rule "web-to-db": name: defined twice`},
		{"bad regex", func(s *Set) {
			s.Groups[0].Criteria = []Criterion{{Key: KeyLabel, Label: "app", Op: OpRegex, Value: "web("}}
		},
			`group "web": criteria: bad regex "web(": missing closing )`},
		{"reserved group", func(s *Set) { s.Groups[0].Name = "external" },
			`group "external": name: "external" is a reserved group`},
		{"group mode", func(s *Set) { s.Groups[0].NetworkMode = "block" },
			`group "web": networkMode: "block" is not discover, monitor or protect`},
		{"group baseline", func(s *Set) { s.Groups[0].Baseline = "strict" },
			`group "web": baseline: "strict" is not basic or zeroDrift`},
		{"federated without revision", func(s *Set) { s.Groups[2].Revision = 0 },
			`group "fed.api": revision: federated object has no primary revision`},
		{"revision on local", func(s *Set) { s.Groups[0].Revision = 3 },
			`group "web": revision: only federated objects carry a primary revision`},
		{"federated refers to local", func(s *Set) { s.NetworkRules[1].To = "web" },
			`network rule "fed-out": to: federated rule refers to non-federated group "web"`},
		{"unknown source", func(s *Set) { s.Groups[0].Source = "crd" },
			`group "web": source: "crd" is not federated, code, user or learned`},
		{"missing name", func(s *Set) { s.Groups[0].Name = "" }, `group "": name: missing name`},
		{"name with space", func(s *Set) { s.Groups[0].Name = "a b" }, `contains a space`},
		{"wrong kind", func(s *Set) { s.Groups[0].Kind = KindNetworkRule }, `group "web": kind: "networkRule" is not "group"`},
		{"process path", func(s *Set) { s.ProcessRules[0].Path = "nginx" },
			`process rule "web:nginx": path: "nginx" is not an absolute path or *`},
		{"process group", func(s *Set) { s.ProcessRules[0].Group = "gone" },
			`process rule "web:nginx": group: unknown group "gone"`},
		{"process conflict", func(s *Set) {
			r := s.ProcessRules[0]
			r.Name, r.Action = "web:nginx-deny", ActionDeny
			s.ProcessRules = append(s.ProcessRules, r)
		}, `conflicts with process rule "web:nginx"`},
		{"file behavior", func(s *Set) { s.FileRules[0].Behavior = "watch" },
			`file rule "web:/etc": behavior: "watch" is not monitorChange or blockAccess`},
		{"file filter", func(s *Set) { s.FileRules[0].Filter = "etc" },
			`file rule "web:/etc": filter: "etc" is not an absolute path`},
		{"admission unknown criterion", func(s *Set) { s.AdmissionRules[0].Criteria[0].Name = "cveSuperCount" },
			`admission rule "no-critical": criteria[0]: unknown criterion "cveSuperCount"`},
		{"admission bad op", func(s *Set) { s.AdmissionRules[0].Criteria[0].Op = "containsAny" },
			`admission rule "no-critical": criteria[0]: cveCriticalCount: operator "containsAny" does not apply`},
		{"admission bad number", func(s *Set) { s.AdmissionRules[0].Criteria[0].Value = "-1" },
			`cveCriticalCount: "-1" is not a count`},
		{"admission bad bool", func(s *Set) {
			s.AdmissionRules[0].Criteria[0] = AdmissionCriterion{Name: CritRunAsRoot, Op: "=", Value: "yes please"}
		}, `runAsRoot: "yes please" is not true or false`},
		{"admission bad regex", func(s *Set) {
			s.AdmissionRules[0].Criteria[0] = AdmissionCriterion{Name: CritImage, Op: "regex", Value: "[a"}
		}, `admission rule "no-critical": criteria[0]: image: bad regex "[a": missing closing ]`},
		{"admission empty list", func(s *Set) {
			s.AdmissionRules[0].Criteria[0] = AdmissionCriterion{Name: CritNamespace, Op: "containsAny", Value: " , "}
		}, `namespace: empty value`},
		{"admission containers", func(s *Set) { s.AdmissionRules[0].Containers = []ContainerKind{"sidecars"} },
			`containers: "sidecars" is not containers`},
		{"admission no criteria", func(s *Set) { s.AdmissionRules[0].Criteria = nil }, `criteria: no criteria`},
		{"admission mode", func(s *Set) { s.Admission.Mode = ModeDiscover }, `admission: mode: "discover" is not monitor or protect`},
		{"response webhook", func(s *Set) { s.ResponseRules[0].Webhook = "ftp://x" },
			`response rule "hook": webhook: "ftp://x" is not an http or https URL`},
		{"response event", func(s *Set) { s.ResponseRules[0].Event = "boom" }, `unknown event kind "boom"`},
		{"response action", func(s *Set) { s.ResponseRules[0].Actions = []ResponseAction{"page"} }, `unknown action "page"`},
		{"default mode", func(s *Set) { s.Defaults.NetworkMode = "x" }, `defaults: networkMode`},
	}
	for _, tt := range tests {
		s := validSet()
		tt.mutate(s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v\nwant containing %q", tt.name, err, tt.want)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error does not wrap ErrInvalid", tt.name)
		}
	}
}

func TestValidateBoundsProblems(t *testing.T) {
	s := &Set{}
	for range 500 {
		s.Groups = append(s.Groups, Group{})
	}
	err := s.Validate()
	if err == nil || !strings.Contains(err.Error(), "more problems not shown") {
		t.Fatalf("Validate of 500 bad groups: %v", err)
	}
	if n := strings.Count(err.Error(), "\n"); n > maxProblems+1 {
		t.Fatalf("reported %d lines, want at most %d", n, maxProblems+1)
	}
}

func TestSetMode(t *testing.T) {
	s := validSet()
	if err := s.SetMode("web", ModeProtect, false); err != nil {
		t.Fatal(err)
	}
	n, p := s.GroupModes(s.Group("web"))
	if n != ModeProtect || p != ModeDiscover {
		t.Fatalf("modes = %s/%s, want protect/discover", n, p)
	}
	if err := s.SetMode("", ModeMonitor, true); err != nil {
		t.Fatal(err)
	}
	if s.Defaults.ProcessMode != ModeMonitor {
		t.Fatalf("default process mode = %s", s.Defaults.ProcessMode)
	}
	for _, g := range s.Groups {
		if _, p := s.GroupModes(&g); p != ModeMonitor {
			t.Fatalf("group %s process mode = %s, want monitor", g.Name, p)
		}
	}
	if err := s.SetMode("nope", ModeMonitor, false); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("SetMode unknown group: %v", err)
	}
	if err := s.SetMode("web", "fast", false); !errors.Is(err, ErrBadMode) {
		t.Fatalf("SetMode bad mode: %v", err)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"Protect": ModeProtect, " monitor ": ModeMonitor, "DISCOVER": ModeDiscover} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("enforce"); !errors.Is(err, ErrBadMode) {
		t.Errorf("ParseMode(enforce) error = %v", err)
	}
}
