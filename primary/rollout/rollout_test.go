package rollout

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWaves(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s, err := New("r1", 10, []string{"c2", "c1", "c1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Canaries, []string{"c1", "c2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("canaries %v, want %v", got, want)
	}
	if max, limited := s.Limit("other"); !limited || max != 10 {
		t.Fatalf("Limit(other) = %d, %v; want 10, true", max, limited)
	}
	if _, limited := s.Limit("c1"); limited {
		t.Fatal("canary c1 is limited")
	}
	if s.Advance([]Remote{{Name: "c1", Acked: 99, Healthy: true}}, now) {
		t.Fatal("advanced before the revision was set")
	}
	if err := s.SetRevision(10, now); !errors.Is(err, ErrBadRevision) {
		t.Fatalf("SetRevision(base): got %v, want ErrBadRevision", err)
	}
	if err := s.SetRevision(11, now); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name    string
		remotes []Remote
		changed bool
		phase   Phase
		paused  bool
	}{
		{"one canary acked", []Remote{{Name: "c1", Acked: 11, Healthy: true}, {Name: "c2", Acked: 10, Healthy: true}}, false, PhaseCanary, false},
		{"canary missing", []Remote{{Name: "c1", Acked: 11, Healthy: true}}, false, PhaseCanary, false},
		{"both canaries acked", []Remote{{Name: "c1", Acked: 11, Healthy: true}, {Name: "c2", Acked: 12, Healthy: true}, {Name: "x", Connected: true, Acked: 10}}, true, PhaseRest, false},
		{"rest not acked", []Remote{{Name: "x", Connected: true, Acked: 10}, {Name: "gone", Acked: 3}}, false, PhaseRest, false},
		{"rest acked, disconnected ignored", []Remote{{Name: "x", Connected: true, Acked: 11}, {Name: "gone", Acked: 3}}, true, PhaseDone, false},
	}
	for _, st := range steps {
		changed := s.Advance(st.remotes, now)
		if changed != st.changed || s.Phase != st.phase || s.Paused != st.paused {
			t.Fatalf("%s: changed=%v phase=%s paused=%v; want %v %s %v", st.name, changed, s.Phase, s.Paused, st.changed, st.phase, st.paused)
		}
	}
	if _, limited := s.Limit("other"); limited {
		t.Fatal("remote still limited after the rollout finished")
	}
	if err := s.Pause(now); !errors.Is(err, ErrFinished) {
		t.Fatalf("Pause after done: got %v, want ErrFinished", err)
	}
}

func TestUnhealthyCanaryPauses(t *testing.T) {
	now := time.Now()
	s, _ := New("r", 5, []string{"c"}, now)
	_ = s.SetRevision(6, now)
	if !s.Advance([]Remote{{Name: "c", Acked: 6, Healthy: false, Error: "enforce: map full"}}, now) {
		t.Fatal("no change on an unhealthy canary")
	}
	if !s.Paused || s.Phase != PhaseCanary || !strings.Contains(s.Message, "map full") {
		t.Fatalf("state %+v, want paused in canary naming the error", s)
	}
	if s.Advance([]Remote{{Name: "c", Acked: 6, Healthy: true}}, now) {
		t.Fatal("a paused rollout advanced")
	}
	if err := s.Resume(now); err != nil {
		t.Fatal(err)
	}
	if !s.Advance([]Remote{{Name: "c", Acked: 6, Healthy: true}}, now) || s.Phase != PhaseRest {
		t.Fatalf("after resume: phase %s, want rest", s.Phase)
	}
}

func TestRollback(t *testing.T) {
	now := time.Now()
	s, _ := New("r", 5, []string{"c"}, now)
	_ = s.SetRevision(6, now)
	if err := s.Rollback(6, now); !errors.Is(err, ErrBadRevision) {
		t.Fatalf("Rollback(6): got %v, want ErrBadRevision", err)
	}
	if err := s.Rollback(8, now); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		remote       string
		applied, rev uint64
		want         bool
	}{
		{"held", 5, 6, true},
		{"held", 5, 8, true},
		{"held", 5, 9, false},
		{"held", 6, 7, false},
		{"c", 5, 6, false},
	}
	for _, tt := range tests {
		if got := s.Resync(tt.remote, tt.applied, tt.rev); got != tt.want {
			t.Errorf("Resync(%s, %d, %d) = %v, want %v", tt.remote, tt.applied, tt.rev, got, tt.want)
		}
	}
	if _, limited := s.Limit("held"); limited {
		t.Fatal("held remote still limited after rollback")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s, _ := New("r", 5, []string{"a", "b"}, now)
	_ = s.SetRevision(7, now)
	_ = s.Pause(now)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, s) {
		t.Fatalf("round trip: got %+v, want %+v", back, *s)
	}
}

func TestNewNeedsCanaries(t *testing.T) {
	if _, err := New("r", 1, nil, time.Now()); !errors.Is(err, ErrNoCanaries) {
		t.Fatalf("got %v, want ErrNoCanaries", err)
	}
}

func TestBindAndSeq(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		revision uint64 // set before Bind (0: none)
		bind     uint64
		bound    bool
		want     uint64
	}{
		{"record above base", 0, 11, true, 11},
		{"record at base", 0, 10, false, 0},
		{"revision already set", 12, 13, false, 12},
	}
	for _, c := range cases {
		s, err := New("r1", 10, []string{"c1"}, now)
		if err != nil {
			t.Fatal(err)
		}
		if c.revision != 0 {
			if err := s.SetRevision(c.revision, now); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.Bind(c.bind); got != c.bound || s.Revision != c.want {
			t.Errorf("%s: Bind(%d) = %v, revision %d; want %v, %d", c.name, c.bind, got, s.Revision, c.bound, c.want)
		}
	}

	first, err := New("r1", 10, []string{"c1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	first.Bind(11)
	s := *first
	steps := []struct {
		name string
		do   func(*State) bool
	}{
		{"advance", func(s *State) bool { return s.Advance([]Remote{{Name: "c1", Acked: 11, Healthy: true}}, now) }},
		{"pause", func(s *State) bool { return s.Pause(now) == nil }},
		{"resume", func(s *State) bool { return s.Resume(now) == nil }},
		{"advance to done", func(s *State) bool { return s.Advance(nil, now) }},
	}
	for _, st := range steps {
		prev := s
		if !st.do(&s) {
			t.Fatalf("%s: no change", st.name)
		}
		if s.Seq <= prev.Seq || !s.Newer(&prev) || prev.Newer(&s) {
			t.Fatalf("%s: seq %d after %d; Newer = %v, reverse %v", st.name, s.Seq, prev.Seq, s.Newer(&prev), prev.Newer(&s))
		}
	}
	if s.Advance(nil, now) {
		t.Fatal("advanced a finished rollout")
	}
	other, err := New("r2", 12, []string{"c1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !other.Newer(&s) || !s.Newer(nil) {
		t.Fatal("another rollout, or any rollout over none, is not newer")
	}
}
