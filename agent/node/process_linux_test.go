//go:build linux

package node

import (
	"reflect"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/procguard"
	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
)

func TestProcessGroup(t *testing.T) {
	tb := &compile.Table{
		Profiles: []compile.Profile{
			{ID: 256, ProcessMode: policy.ModeProtect, Processes: []compile.ProcessEntry{
				{Process: "sh", Path: "*", Action: policy.ActionDeny},
				{Process: "sleep", Path: "/usr/bin/sleep", Action: policy.ActionAllow},
				{Process: "bad", Path: "relative", Action: policy.ActionAllow},
			}, Files: []compile.FileEntry{
				{Filter: "/etc/secret", Behavior: policy.FileBlockAccess, Applications: []string{"api"}, RuleID: 9},
				{Filter: "/srv/data", Recursive: true, Behavior: policy.FileMonitorChange, RuleID: 10},
				{Filter: "relative", Behavior: policy.FileBlockAccess, RuleID: 11},
			}},
			{ID: 257, ProcessMode: policy.ModeMonitor},
			{ID: 258},
		},
		Workloads: []compile.WorkloadIdentity{{Workload: "shop/a", ID: 256}, {Workload: "shop/b", ID: 257}, {Workload: "shop/c", ID: 258}, {Workload: "shop/d", ID: 300}},
	}
	tests := []struct {
		workload string
		want     procguard.Group
		ok       bool
	}{
		{"shop/a", procguard.Group{Name: "shop/a", Mode: procguard.ModeProtect, Rules: []procguard.Rule{
			{Process: "sh", Path: "*", Deny: true}, {Process: "sleep", Path: "/usr/bin/sleep"}}, Files: []procguard.FileRule{
			{Path: "/etc/secret", Block: true, Apps: []string{"api"}, ID: 9}, {Path: "/srv/data", Recursive: true, ID: 10}}}, true},
		{"shop/b", procguard.Group{Name: "shop/b", Mode: procguard.ModeMonitor}, true},
		{"shop/c", procguard.Group{Name: "shop/c", Mode: procguard.ModeDiscover}, true},
		{"shop/d", procguard.Group{}, false}, // no profile
		{"shop/e", procguard.Group{}, false}, // no identity
	}
	for _, tc := range tests {
		got, ok := processGroup(tb, tc.workload)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("processGroup(%s) = %+v, %v; want %+v, %v", tc.workload, got, ok, tc.want, tc.ok)
		}
	}
}

func TestProcessConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*ProcessConfig)
		ok   bool
	}{
		{"default", func(*ProcessConfig) {}, true},
		{"disabled ignores the rest", func(c *ProcessConfig) { c.Disabled, c.CgroupRoot = true, "" }, true},
		{"relative cgroup root", func(c *ProcessConfig) { c.CgroupRoot = "sys/fs/cgroup" }, false},
		{"relative mark", func(c *ProcessConfig) { c.Marks = []procguard.Mark{{Path: "tmp"}} }, false},
		{"no resync", func(c *ProcessConfig) { c.Resync = 0 }, false},
		{"no pending", func(c *ProcessConfig) { c.MaxPending = 0 }, false},
		{"fallback stale too short", func(c *ProcessConfig) { c.FallbackStale = time.Millisecond }, false},
		{"relative fallback pin dir", func(c *ProcessConfig) { c.FallbackPinDir = "sys/fs/bpf/x" }, false},
		{"no fallback ignores its settings", func(c *ProcessConfig) { c.NoFallback, c.FallbackStale = true, 0 }, true},
	}
	for _, tc := range tests {
		c := DefaultProcessConfig()
		tc.edit(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
