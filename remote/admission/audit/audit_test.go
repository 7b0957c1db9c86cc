package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/shared/store/storetest"
)

func TestLogStoresAndLists(t *testing.T) {
	st := storetest.Open(t, "r1")
	cfg := DefaultConfig()
	cfg.Replica, cfg.Store, cfg.MaxEvents, cfg.MaxBatchEvents = "r1", st, 6, 2
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Five batches of two events; only the newest six events stay.
	for b := range 5 {
		for i := range 2 {
			n := b*2 + i
			l.Record(Event{Time: t0.Add(time.Duration(n) * time.Second), UID: fmt.Sprint(n), Namespace: []string{"a", "b"}[i],
				Allowed: n%3 != 0, WouldDeny: n == 8, Rule: map[bool]string{true: "deny-critical"}[n%3 == 0], Outcome: Decided})
		}
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// One more event not flushed yet is listed too.
	l.Record(Event{Time: t0.Add(time.Minute), UID: "pending", Allowed: true, Outcome: Skipped})

	if kvs, _ := st.List(Prefix); len(kvs) != 3 {
		t.Errorf("%d batches stored, want 3", len(kvs))
	}
	uids := func(es []Event) string {
		var s []string
		for _, e := range es {
			s = append(s, e.UID)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name string
		f    Filter
		want string
	}{
		{"all, newest first", Filter{}, "pending,9,8,7,6,5,4"},
		{"limit", Filter{Limit: 2}, "pending,9"},
		{"denied and would-be denied", Filter{Denied: true}, "9,8,6"},
		{"namespace", Filter{Namespace: "b"}, "9,7,5"},
		{"rule", Filter{Rule: "deny-critical"}, "9,6"},
		{"since", Filter{Since: t0.Add(8 * time.Second)}, "pending,9,8"},
	}
	for _, tt := range tests {
		got, err := l.List(tt.f)
		if err != nil || uids(got) != tt.want {
			t.Errorf("%s: got %s (%v), want %s", tt.name, uids(got), err, tt.want)
		}
	}
	if got, _ := l.List(Filter{Limit: 1}); len(got) != 1 || got[0].Replica != "r1" {
		t.Errorf("replica not recorded: %+v", got)
	}
	if _, err := l.List(Filter{Limit: MaxLimit + 1}); !errors.Is(err, ErrBadFilter) {
		t.Errorf("limit over max: %v", err)
	}

	// A restarted log keeps counting the batches already stored.
	l2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l2.Record(Event{Time: t0.Add(time.Hour), UID: "after-restart", Outcome: Decided})
	if err := l2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if kvs, _ := st.List(Prefix); len(kvs) != 3 {
		t.Errorf("%d batches after restart, want 3", len(kvs))
	}
}

func TestFlushSplitsBatches(t *testing.T) {
	st := storetest.Open(t, "r1")
	cfg := DefaultConfig()
	cfg.Replica, cfg.Store, cfg.MaxBatchEvents, cfg.MaxEvents = "r1", st, 2, 4
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		l.Record(Event{Time: time.Unix(int64(i), 0), UID: fmt.Sprint(i)})
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The oldest event does not fit in four; the rest go in two batches.
	kvs, _ := st.List(Prefix)
	if len(kvs) != 2 || !strings.HasSuffix(kvs[0].Key, "-2") || !strings.HasSuffix(kvs[1].Key, "-2") {
		t.Errorf("stored keys %q, %q", kvs[0].Key, kvs[len(kvs)-1].Key)
	}
	if got, _ := l.List(Filter{}); len(got) != 4 || got[0].UID != "4" || got[3].UID != "1" || l.Dropped() != 1 {
		t.Errorf("listed %d events, dropped %d", len(got), l.Dropped())
	}
	// Two more events push out the oldest batch.
	l.Record(Event{Time: time.Unix(10, 0), UID: "10"})
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.List(Filter{}); len(got) != 3 || got[2].UID != "3" {
		t.Errorf("after one more: listed %d events", len(got))
	}
}

func TestRecordDropsOldestWhenFull(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Replica, cfg.MaxPending = "r1", 3
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		l.Record(Event{Time: time.Unix(int64(i), 0), UID: fmt.Sprint(i)})
	}
	got, _ := l.List(Filter{})
	if len(got) != 3 || got[2].UID != "2" || l.Dropped() != 2 {
		t.Errorf("kept %+v, dropped %d; want 4,3,2 and 2 dropped", got, l.Dropped())
	}
}

func TestRunFlushesOnStop(t *testing.T) {
	st := storetest.Open(t, "r1")
	cfg := DefaultConfig()
	cfg.Replica, cfg.Store, cfg.FlushInterval = "r1", st, time.Hour
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	l.Record(Event{UID: "x", Outcome: Decided})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if kvs, _ := st.List(Prefix); len(kvs) != 1 {
		t.Errorf("%d batches after stop, want 1", len(kvs))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Replica = "" },
		func(c *Config) { c.Replica = "a/b" },
		func(c *Config) { c.FlushInterval = 0 },
		func(c *Config) { c.MaxPending = 0 },
		func(c *Config) { c.MaxBatchEvents = 0 },
		func(c *Config) { c.MaxEvents = c.MaxBatchEvents - 1 },
	} {
		c := DefaultConfig()
		c.Replica = "r1"
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

func TestRing(t *testing.T) {
	var r ring
	dropped := 0
	for i := range 200 {
		if r.push(Event{UID: fmt.Sprint(i)}, 100) {
			dropped++
		}
		if i == 150 {
			if got := r.take(); len(got) != 100 || got[0].UID != "51" || got[99].UID != "150" {
				t.Fatalf("take after 151 pushes: %d events, first %s last %s", len(got), got[0].UID, got[len(got)-1].UID)
			}
		}
	}
	got := r.items()
	if len(got) != 49 || got[0].UID != "151" || got[48].UID != "199" || dropped != 51 {
		t.Errorf("items: %d, first %s, last %s, dropped %d", len(got), got[0].UID, got[len(got)-1].UID, dropped)
	}
}
