package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	iradix "github.com/hashicorp/go-immutable-radix"
	"github.com/hashicorp/raft"
)

// CommandType is the first byte of every Raft log entry the FSM applies.
// The list is append-only: a value, once released, keeps its meaning forever.
type CommandType uint8

const (
	// CommandTxn applies a Txn: conditions checked, then ops applied
	// atomically at one revision.
	CommandTxn CommandType = 1
)

// encodeCommand frames a command: one type byte, then its JSON encoding.
func encodeCommand(t CommandType, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	return append([]byte{byte(t)}, body...), nil
}

// KV is one stored document with its revisions.
type KV struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
	// CreateRevision is the revision at which the key was last created.
	CreateRevision uint64 `json:"createRevision"`
	// ModRevision is the revision of the last write to the key.
	ModRevision uint64 `json:"modRevision"`
}

// EventType says what happened to a key.
type EventType uint8

const (
	// EventPut is a create or update.
	EventPut EventType = 1
	// EventDelete is a delete; Value is empty.
	EventDelete EventType = 2
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event is one change to one key. Several events share a revision when one
// transaction wrote several keys. Value must not be modified by receivers.
type Event struct {
	Revision uint64    `json:"revision"`
	Type     EventType `json:"type"`
	Key      string    `json:"key"`
	Value    []byte    `json:"value,omitempty"`
}

// applyResult is what FSM.Apply returns through the ApplyFuture.
type applyResult struct {
	Revision uint64
	Err      error
}

// fsm is the replicated state machine: an immutable radix tree of KVs, the
// revision it reflects, and a bounded history of events for watchers.
type fsm struct {
	mu   sync.RWMutex
	tree *iradix.Tree
	rev  uint64
	hist history
	// changed is closed and replaced after every apply, waking watchers
	// and WaitFor callers.
	changed chan struct{}
}

func newFSM(historySize int) *fsm {
	return &fsm{tree: iradix.New(), hist: newHistory(historySize), changed: make(chan struct{})}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("store: empty command at index %d", l.Index))
	}
	switch CommandType(l.Data[0]) {
	case CommandTxn:
		var txn Txn
		if err := json.Unmarshal(l.Data[1:], &txn); err != nil {
			panic(fmt.Sprintf("store: decode txn at index %d: %v", l.Index, err))
		}
		return f.applyTxn(l.Index, &txn)
	default:
		panic(fmt.Sprintf("store: unknown command type %d at index %d", l.Data[0], l.Index))
	}
}

func (f *fsm) applyTxn(index uint64, txn *Txn) applyResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range txn.Conds {
		if err := c.check(f.tree); err != nil {
			f.advance(index, nil)
			return applyResult{Revision: index, Err: err}
		}
	}
	tx := f.tree.Txn()
	var events []Event
	for _, op := range txn.Ops {
		switch op.Type {
		case OpPut:
			kv := &KV{Key: op.Key, Value: op.Value, CreateRevision: index, ModRevision: index}
			if old, ok := tx.Get([]byte(op.Key)); ok {
				kv.CreateRevision = old.(*KV).CreateRevision
			}
			tx.Insert([]byte(op.Key), kv)
			events = append(events, Event{Revision: index, Type: EventPut, Key: op.Key, Value: op.Value})
		case OpDelete:
			if _, ok := tx.Delete([]byte(op.Key)); ok {
				events = append(events, Event{Revision: index, Type: EventDelete, Key: op.Key})
			}
		case OpDeletePrefix:
			var keys []string
			tx.Root().WalkPrefix([]byte(op.Key), func(k []byte, _ any) bool {
				keys = append(keys, string(k))
				return false
			})
			for _, k := range keys {
				tx.Delete([]byte(k))
				events = append(events, Event{Revision: index, Type: EventDelete, Key: k})
			}
		default:
			// Validated before submission; an unknown op in the log means
			// the log was written by a newer version.
			panic(fmt.Sprintf("store: unknown op type %d at index %d", op.Type, index))
		}
	}
	f.tree = tx.Commit()
	f.advance(index, events)
	return applyResult{Revision: index}
}

// advance records the new revision and events and wakes waiters. f.mu is held.
func (f *fsm) advance(index uint64, events []Event) {
	f.rev = index
	f.hist.append(events)
	close(f.changed)
	f.changed = make(chan struct{})
}

// Snapshot implements raft.FSM: it captures the immutable tree.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{tree: f.tree, rev: f.rev}, nil
}

// Restore implements raft.FSM: it builds fresh state and swaps it in.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tree, rev, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tree = tree
	f.rev = rev
	f.hist.reset(rev)
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

func (f *fsm) get(key string) (KV, bool, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.tree.Get([]byte(key))
	if !ok {
		return KV{}, false, f.rev
	}
	return *v.(*KV), true, f.rev
}

func (f *fsm) list(prefix string) ([]KV, uint64) {
	f.mu.RLock()
	tree, rev := f.tree, f.rev
	f.mu.RUnlock()
	var out []KV
	tree.Root().WalkPrefix([]byte(prefix), func(_ []byte, v any) bool {
		out = append(out, *v.(*KV))
		return false
	})
	return out, rev
}

func (f *fsm) revision() (uint64, <-chan struct{}) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rev, f.changed
}

// Snapshot format: magic, revision, then records of (key, value,
// createRevision, modRevision), then a terminating zero-length key marker.
// Lengths and numbers are uvarints.
const snapshotMagic = "PALSNAP1"

type fsmSnapshot struct {
	tree *iradix.Tree
	rev  uint64
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.tree, s.rev); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() {}

func writeSnapshot(w io.Writer, tree *iradix.Tree, rev uint64) error {
	bw := bufio.NewWriter(w)
	var buf [binary.MaxVarintLen64]byte
	putU := func(v uint64) {
		n := binary.PutUvarint(buf[:], v)
		bw.Write(buf[:n])
	}
	bw.WriteString(snapshotMagic)
	putU(rev)
	putU(uint64(tree.Len()))
	tree.Root().Walk(func(_ []byte, v any) bool {
		kv := v.(*KV)
		putU(uint64(len(kv.Key)))
		bw.WriteString(kv.Key)
		putU(uint64(len(kv.Value)))
		bw.Write(kv.Value)
		putU(kv.CreateRevision)
		putU(kv.ModRevision)
		return false
	})
	return bw.Flush()
}

// maxSnapshotField bounds a single key or value read from a snapshot, so a
// corrupt length cannot make Restore allocate without limit.
const maxSnapshotField = 64 << 20

func readSnapshot(r io.Reader) (*iradix.Tree, uint64, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	if string(magic) != snapshotMagic {
		return nil, 0, fmt.Errorf("store: snapshot has bad magic %q", magic)
	}
	rev, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, 0, fmt.Errorf("read revision: %w", err)
	}
	count, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, 0, fmt.Errorf("read record count: %w", err)
	}
	readBytes := func(what string) ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, fmt.Errorf("read %s length: %w", what, err)
		}
		if n > maxSnapshotField {
			return nil, fmt.Errorf("store: snapshot %s length %d exceeds %d", what, n, maxSnapshotField)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		return b, nil
	}
	tx := iradix.New().Txn()
	for i := uint64(0); i < count; i++ {
		key, err := readBytes("key")
		if err != nil {
			return nil, 0, fmt.Errorf("record %d: %w", i, err)
		}
		val, err := readBytes("value")
		if err != nil {
			return nil, 0, fmt.Errorf("record %d (%q): %w", i, key, err)
		}
		kv := &KV{Key: string(key), Value: val}
		if kv.CreateRevision, err = binary.ReadUvarint(br); err != nil {
			return nil, 0, fmt.Errorf("record %d (%q): read create revision: %w", i, key, err)
		}
		if kv.ModRevision, err = binary.ReadUvarint(br); err != nil {
			return nil, 0, fmt.Errorf("record %d (%q): read mod revision: %w", i, key, err)
		}
		tx.Insert(key, kv)
	}
	return tx.Commit(), rev, nil
}

// history keeps the most recent events so watchers can resume from a
// revision. Every event gets a dense sequence number; the ring holds the
// events with sequence numbers [first, next).
type history struct {
	events []Event // ring buffer, capacity cap(events)
	size   int
	first  uint64 // sequence number of the oldest retained event
	next   uint64 // sequence number the next event gets
	// floor is the highest revision whose events may no longer all be
	// retained: a watch from a revision below it cannot be served.
	floor uint64
}

func newHistory(size int) history {
	if size < 1 {
		size = 1
	}
	return history{events: make([]Event, size), size: size, first: 1, next: 1}
}

func (h *history) at(seq uint64) Event { return h.events[seq%uint64(h.size)] }

func (h *history) append(events []Event) {
	for _, e := range events {
		if h.next-h.first == uint64(h.size) {
			dropped := h.at(h.first)
			if dropped.Revision > h.floor {
				h.floor = dropped.Revision
			}
			h.first++
		}
		h.events[h.next%uint64(h.size)] = e
		h.next++
	}
}

// reset forgets every event after a snapshot restore. The sequence jumps by
// one so that watchers positioned before the restore see a gap and report
// ErrCompacted instead of silently missing the restored changes.
func (h *history) reset(rev uint64) {
	h.next++
	h.first = h.next
	h.floor = rev
}

// seqAfter returns the sequence number of the last retained event with
// Revision <= rev, or first-1 when there is none. The caller has checked
// rev >= floor.
func (h *history) seqAfter(rev uint64) uint64 {
	n := int(h.next - h.first)
	i := sort.Search(n, func(i int) bool { return h.at(h.first+uint64(i)).Revision > rev })
	return h.first + uint64(i) - 1
}

// ErrCompacted is returned by Watch and Watcher.Next when the requested
// revision is older than the retained history: the caller must re-list.
var ErrCompacted = errors.New("store: revision compacted, re-list and watch again")

// Watcher delivers events under a prefix, in revision order.
type Watcher struct {
	f      *fsm
	prefix string
	cursor uint64 // sequence number of the last event delivered or skipped
}

func (f *fsm) watch(prefix string, afterRev uint64) (*Watcher, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if afterRev < f.hist.floor {
		return nil, fmt.Errorf("%w (watch from %d, oldest retained %d)", ErrCompacted, afterRev, f.hist.floor)
	}
	return &Watcher{f: f, prefix: prefix, cursor: f.hist.seqAfter(afterRev)}, nil
}

// Next blocks until the next event under the watcher's prefix, the context
// ends, or the watcher has fallen behind the retained history.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	for {
		w.f.mu.RLock()
		h := &w.f.hist
		if w.cursor+1 < h.first {
			w.f.mu.RUnlock()
			return Event{}, ErrCompacted
		}
		for w.cursor+1 < h.next {
			w.cursor++
			e := h.at(w.cursor)
			if strings.HasPrefix(e.Key, w.prefix) {
				w.f.mu.RUnlock()
				return e, nil
			}
		}
		changed := w.f.changed
		w.f.mu.RUnlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// NextRevision blocks until the next revision with events under the
// watcher's prefix and returns all of them: one transaction's changes are
// never split across calls.
func (w *Watcher) NextRevision(ctx context.Context) (uint64, []Event, error) {
	first, err := w.Next(ctx)
	if err != nil {
		return 0, nil, err
	}
	events := []Event{first}
	// The rest of the revision was appended under the same lock as the
	// first event, so it is already in the history.
	w.f.mu.RLock()
	defer w.f.mu.RUnlock()
	h := &w.f.hist
	for w.cursor+1 < h.next {
		e := h.at(w.cursor + 1)
		if e.Revision != first.Revision {
			break
		}
		w.cursor++
		if strings.HasPrefix(e.Key, w.prefix) {
			events = append(events, e)
		}
	}
	return first.Revision, events, nil
}
