//go:build linux

package node

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/procguard"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

func TestFileMarks(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc/app", "srv/data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/app/secret.conf"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	dirMark := func(rel string) procguard.Mark {
		return procguard.Mark{Path: p(rel), Scope: procguard.ScopeDirectory, Files: true}
	}
	mountMark := func(rel string) procguard.Mark {
		return procguard.Mark{Path: p(rel), Scope: procguard.ScopeMount, Files: true}
	}
	tests := []struct {
		name  string
		rules []procguard.FileRule
		want  []procguard.Mark
	}{
		{"file: its directory", []procguard.FileRule{{Path: p("etc/app/secret.conf")}}, []procguard.Mark{dirMark("etc/app")}},
		{"file yet to be created: its directory", []procguard.FileRule{{Path: p("etc/app/new.conf")}}, []procguard.Mark{dirMark("etc/app")}},
		{"directory: itself", []procguard.FileRule{{Path: p("etc/app")}}, []procguard.Mark{dirMark("etc/app")}},
		{"wildcard: its directory", []procguard.FileRule{{Path: p("etc/app/*.conf")}}, []procguard.Mark{dirMark("etc/app")}},
		{"missing directory: no mark", []procguard.FileRule{{Path: p("opt/x/y.conf")}}, nil},
		{"recursive: a mount mark", []procguard.FileRule{{Path: p("srv/data"), Recursive: true}}, []procguard.Mark{mountMark("srv/data")}},
		{"recursive below a missing directory: closest above", []procguard.FileRule{{Path: p("srv/data/a/b"), Recursive: true}}, []procguard.Mark{mountMark("srv/data")}},
		{"one mark per place", []procguard.FileRule{{Path: p("etc/app/a")}, {Path: p("etc/app/b"), Block: true}, {Path: p("etc/app")}}, []procguard.Mark{dirMark("etc/app")}},
	}
	for _, tc := range tests {
		if got := fileMarks(tc.rules); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: fileMarks = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// fakeMarker records marks; paths in fail are refused once.
type fakeMarker struct {
	marks map[procguard.Mark]bool
	fail  map[string]bool
}

func (f *fakeMarker) AddMark(m procguard.Mark) error {
	if f.fail[m.Path] {
		delete(f.fail, m.Path)
		return errors.New("refused")
	}
	f.marks[m] = true
	return nil
}

func (f *fakeMarker) RemoveMark(m procguard.Mark) error {
	if !f.marks[m] {
		return fmt.Errorf("%s not marked", m.Path)
	}
	delete(f.marks, m)
	return nil
}

func testAgent() *Agent {
	return &Agent{log: slog.New(slog.DiscardHandler), agg: newAggregator(100, 100, 100), procs: newProcControl(), cfg: Config{Processes: DefaultProcessConfig()}}
}

func TestSyncFileMarks(t *testing.T) {
	dir := t.TempDir()
	a := testAgent()
	g := &fakeMarker{marks: map[procguard.Mark]bool{}, fail: map[string]bool{dir: true}}
	placed := map[procguard.Mark]bool{}
	mark := procguard.Mark{Path: dir, Scope: procguard.ScopeDirectory, Files: true}
	set := func(files []procguard.FileRule) {
		a.procs.mu.Lock()
		a.procs.groups[7] = procguard.Group{Name: "shop/orders", CgroupID: 7, Files: files}
		a.procs.mu.Unlock()
	}
	steps := []struct {
		name  string
		files []procguard.FileRule
		want  []procguard.Mark
	}{
		{"refused mark is not placed", []procguard.FileRule{{Path: filepath.Join(dir, "secret.conf"), Block: true}}, nil},
		{"tried again", []procguard.FileRule{{Path: filepath.Join(dir, "secret.conf"), Block: true}}, []procguard.Mark{mark}},
		{"rule gone, mark gone", nil, nil},
	}
	for _, s := range steps {
		set(s.files)
		a.syncFileMarks(g, placed)
		var got []procguard.Mark
		for m := range g.marks {
			got = append(got, m)
		}
		if !reflect.DeepEqual(got, s.want) || len(placed) != len(s.want) {
			t.Errorf("%s: marks %+v (placed %v), want %+v", s.name, got, placed, s.want)
		}
	}
}

func TestFileDecisionEvents(t *testing.T) {
	a := testAgent()
	rule := procguard.FileRule{Path: "/etc/app", Block: true, ID: 12}
	a.procs.groups[7] = procguard.Group{Name: "shop/orders", CgroupID: 7, Files: []procguard.FileRule{rule}}
	ds := []procguard.Decision{
		{Kind: procguard.EventFileOpen, Pid: 10, CgroupID: 7, Path: "/etc/app/secret.conf", Mode: procguard.ModeProtect, Denied: true, Rule: rule},
		{Kind: procguard.EventFileOpen, Pid: 11, CgroupID: 7, Path: "/etc/app/secret.conf", Mode: procguard.ModeMonitor, Rule: rule},
		{Kind: procguard.EventFileChange, Pid: 12, CgroupID: 7, Path: "/etc/app/a.conf", Mode: procguard.ModeMonitor, Rule: rule},
		{Kind: procguard.EventFileOpen, Pid: 13, CgroupID: 8, Path: "/etc/app/secret.conf", Mode: procguard.ModeProtect, Denied: true, Rule: rule}, // no workload
		{Kind: procguard.EventExec, Pid: 14, CgroupID: 7, Path: "/bin/sh", Mode: procguard.ModeProtect, Denied: true},
	}
	for _, d := range ds {
		a.onDecision(d)
	}
	_, evs := a.agg.drain(time.Now(), time.Hour)
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%s %s %s %s %s %d", e.Kind, e.Action, e.Mode, e.Workload, e.Path, e.Rule))
		if e.Message == "" {
			t.Errorf("event %+v has no message", e)
		}
	}
	want := []string{
		agentproto.EventFileDenied + " deny protect shop/orders /etc/app/secret.conf 12",
		agentproto.EventFileViolation + " alert monitor shop/orders /etc/app/secret.conf 12",
		agentproto.EventFileChange + " alert monitor shop/orders /etc/app/a.conf 12",
		agentproto.EventExecDenied + " deny protect shop/orders /bin/sh 0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}
