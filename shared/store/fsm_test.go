package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func txnLog(t *testing.T, index uint64, txn Txn) *raft.Log {
	t.Helper()
	cmd, err := encodeCommand(CommandTxn, &txn)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: cmd}
}

func put(k, v string) Op { return Op{Type: OpPut, Key: k, Value: []byte(v)} }

func mustApply(t *testing.T, f *fsm, index uint64, txn Txn) applyResult {
	t.Helper()
	res, ok := f.Apply(txnLog(t, index, txn)).(applyResult)
	if !ok {
		t.Fatalf("Apply returned %T", res)
	}
	return res
}

func keys(kvs []KV) string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key+"="+string(kv.Value))
	}
	return strings.Join(out, ",")
}

func TestFSMTxnOps(t *testing.T) {
	f := newFSM(100)
	mustApply(t, f, 3, Txn{Ops: []Op{put("a/1", "x"), put("a/2", "y"), put("b/1", "z")}})
	mustApply(t, f, 5, Txn{Ops: []Op{put("a/1", "x2")}})
	kv, ok, rev := f.get("a/1")
	if !ok || string(kv.Value) != "x2" || kv.CreateRevision != 3 || kv.ModRevision != 5 || rev != 5 {
		t.Fatalf("get a/1 = %+v ok=%v rev=%d; want x2 created 3 modified 5 at rev 5", kv, ok, rev)
	}
	if got, _ := f.list("a/"); keys(got) != "a/1=x2,a/2=y" {
		t.Fatalf("list a/ = %s", keys(got))
	}
	mustApply(t, f, 6, Txn{Ops: []Op{{Type: OpDeletePrefix, Key: "a/"}}})
	if got, _ := f.list(""); keys(got) != "b/1=z" {
		t.Fatalf("after delete prefix: %s", keys(got))
	}
	mustApply(t, f, 7, Txn{Ops: []Op{{Type: OpDelete, Key: "b/1"}, {Type: OpDelete, Key: "missing"}}})
	if got, _ := f.list(""); len(got) != 0 {
		t.Fatalf("after delete: %s", keys(got))
	}
	// Recreating a key starts a new create revision.
	mustApply(t, f, 9, Txn{Ops: []Op{put("b/1", "again")}})
	if kv, _, _ := f.get("b/1"); kv.CreateRevision != 9 {
		t.Fatalf("recreated key create revision = %d, want 9", kv.CreateRevision)
	}
}

func TestFSMConditions(t *testing.T) {
	f := newFSM(100)
	mustApply(t, f, 2, Txn{Ops: []Op{put("k", "v")}})
	tests := []struct {
		name    string
		cond    Cond
		wantErr bool
	}{
		{"absent on existing", Cond{Kind: CondAbsent, Key: "k"}, true},
		{"absent on missing", Cond{Kind: CondAbsent, Key: "other"}, false},
		{"exists on existing", Cond{Kind: CondExists, Key: "k"}, false},
		{"exists on missing", Cond{Kind: CondExists, Key: "nope"}, true},
		{"revision match", Cond{Kind: CondModRevision, Key: "k", ModRevision: 2}, false},
		{"revision mismatch", Cond{Kind: CondModRevision, Key: "k", ModRevision: 1}, true},
	}
	index := uint64(10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			index++
			before, _ := f.list("")
			res := mustApply(t, f, index, Txn{Conds: []Cond{tt.cond}, Ops: []Op{put("written/"+tt.name, "1")}})
			after, _ := f.list("")
			if tt.wantErr {
				if !errors.Is(res.Err, ErrConflict) {
					t.Fatalf("err = %v, want a conflict", res.Err)
				}
				if keys(before) != keys(after) {
					t.Fatalf("failed condition still wrote: %s", keys(after))
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("err = %v", res.Err)
			}
			if len(after) != len(before)+1 {
				t.Fatalf("write did not happen")
			}
		})
	}
	// The revision advances even when a condition fails, so WaitFor on
	// the returned revision terminates.
	if _, _, rev := f.get("k"); rev != index {
		t.Fatalf("revision = %d, want %d", rev, index)
	}
}

func TestFSMPanicsOnUndecodableCommand(t *testing.T) {
	for _, data := range [][]byte{{}, {byte(CommandTxn), '{'}, {99, '{', '}'}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Apply(%q) did not panic", data)
				}
			}()
			newFSM(10).Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
		}()
	}
}

type bufSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufSink) Close() error  { return nil }

func TestFSMSnapshotRestoreRoundTrip(t *testing.T) {
	f := newFSM(100)
	mustApply(t, f, 4, Txn{Ops: []Op{put("a", "1"), put("b/c", ""), put("b/d", strings.Repeat("x", 5000))}})
	mustApply(t, f, 8, Txn{Ops: []Op{put("a", "2"), {Type: OpDelete, Key: "b/c"}}})
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot must not leak into it.
	mustApply(t, f, 9, Txn{Ops: []Op{put("late", "x")}})
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(100)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got, rev := g.list("")
	if rev != 8 {
		t.Fatalf("restored revision = %d, want 8", rev)
	}
	want, _ := f.list("")
	want = want[:len(want)-1] // without "late"
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Fatalf("restored state\n got %s\nwant %s", gj, wj)
	}
	if _, err := g.watch("", 7); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch before restored revision: err = %v, want ErrCompacted", err)
	}
}

func TestFSMRestoreRejectsCorruptSnapshots(t *testing.T) {
	f := newFSM(10)
	mustApply(t, f, 1, Txn{Ops: []Op{put("key", "value")}})
	snap, _ := f.Snapshot()
	var sink bufSink
	snap.Persist(&sink)
	good := sink.Bytes()
	tests := map[string][]byte{
		"empty":     nil,
		"bad magic": append([]byte("NOTSNAP!"), good[8:]...),
		"truncated": good[:len(good)-3],
		"huge len":  append(append([]byte{}, good[:10]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			g := newFSM(10)
			if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
				t.Fatalf("Restore accepted a %s snapshot", name)
			}
			if got, _ := g.list(""); len(got) != 0 {
				t.Fatalf("failed restore changed state")
			}
		})
	}
}

func nextEvent(t *testing.T, w *Watcher) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return e
}

func TestWatchSemantics(t *testing.T) {
	f := newFSM(4)
	mustApply(t, f, 1, Txn{Ops: []Op{put("a/1", "x"), put("b/1", "y")}})
	w, err := f.watch("a/", 0)
	if err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, w); e.Key != "a/1" || e.Revision != 1 || e.Type != EventPut {
		t.Fatalf("first event = %+v", e)
	}
	// Blocks until a matching event, skipping others.
	done := make(chan Event, 1)
	go func() {
		e, _ := w.Next(context.Background())
		done <- e
	}()
	mustApply(t, f, 2, Txn{Ops: []Op{put("b/2", "skip")}})
	mustApply(t, f, 3, Txn{Ops: []Op{{Type: OpDelete, Key: "a/1"}}})
	select {
	case e := <-done:
		if e.Key != "a/1" || e.Type != EventDelete || e.Revision != 3 {
			t.Fatalf("event = %+v, want delete of a/1 at 3", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("watcher not woken")
	}
	// A watch from a revision sees only later events.
	w2, err := f.watch("", 2)
	if err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, w2); e.Revision != 3 {
		t.Fatalf("watch after 2 got revision %d", e.Revision)
	}
	// Overflow the 4-event history: old revisions become unavailable and
	// a lagging watcher reports ErrCompacted.
	lag, _ := f.watch("", 0)
	for i := uint64(4); i < 10; i++ {
		mustApply(t, f, i, Txn{Ops: []Op{put(fmt.Sprintf("c/%d", i), "v")}})
	}
	if _, err := f.watch("", 1); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from 1 after overflow: %v, want ErrCompacted", err)
	}
	if _, err := lag.Next(context.Background()); !errors.Is(err, ErrCompacted) {
		t.Fatalf("lagging watcher: %v, want ErrCompacted", err)
	}
	if _, err := f.watch("", 6); err != nil {
		t.Fatalf("watch from a retained revision: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w3, _ := f.watch("", 9)
	if _, err := w3.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next on cancelled context: %v", err)
	}
}

func TestTxnValidate(t *testing.T) {
	tests := []struct {
		name string
		txn  Txn
		want string
	}{
		{"no ops", Txn{}, "no ops"},
		{"empty key", Txn{Ops: []Op{{Type: OpPut}}}, "empty key"},
		{"bad op", Txn{Ops: []Op{{Type: 9, Key: "k"}}}, "unknown op type 9"},
		{"long key", Txn{Ops: []Op{{Type: OpPut, Key: strings.Repeat("k", MaxKeyLen+1)}}}, "exceeds"},
		{"big", Txn{Ops: []Op{{Type: OpPut, Key: "k", Value: make([]byte, MaxTxnSize+1)}}}, "exceeds"},
		{"bad cond", Txn{Conds: []Cond{{Kind: 7, Key: "k"}}, Ops: []Op{put("k", "v")}}, "unknown kind"},
	}
	for _, tt := range tests {
		err := tt.txn.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestWatchNextRevisionKeepsTransactionsWhole(t *testing.T) {
	f := newFSM(100)
	mustApply(t, f, 1, Txn{Ops: []Op{put("p/a", "1"), put("q/x", "skip"), put("p/b", "2")}})
	mustApply(t, f, 2, Txn{Ops: []Op{put("p/c", "3")}})
	w, _ := f.watch("p/", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rev, evs, err := w.NextRevision(ctx)
	if err != nil || rev != 1 || len(evs) != 2 || evs[0].Key != "p/a" || evs[1].Key != "p/b" {
		t.Fatalf("first revision = %d %+v %v, want 1 with p/a and p/b", rev, evs, err)
	}
	rev, evs, err = w.NextRevision(ctx)
	if err != nil || rev != 2 || len(evs) != 1 || evs[0].Key != "p/c" {
		t.Fatalf("second revision = %d %+v %v", rev, evs, err)
	}
}
