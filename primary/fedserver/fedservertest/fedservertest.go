// Package fedservertest provides in-memory implementations of the hooks a
// fedserver.Server consumes (Log, Members, jointoken.Consumer), for tests
// and benchmarks of federation and as a reference for the real ones.
package fedservertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
)

// Log is an in-memory federation keyspace with a revision history that can
// be compacted.
type Log struct {
	mu        sync.RWMutex
	rev       uint64
	compacted uint64 // history is kept for revisions above this
	deltas    []fedproto.Delta
	state     map[string][]byte
	changed   chan struct{}
	// roll is the stored rollout record, written at rollRev.
	roll    *rollout.State
	rollRev uint64
}

// NewLog returns an empty Log at revision 0.
func NewLog() *Log {
	return &Log{state: map[string][]byte{}, changed: make(chan struct{})}
}

// Commit applies ops as one new revision and returns it.
func (l *Log) Commit(ops ...fedproto.Op) uint64 {
	return l.CommitRollout(nil, ops...)
}

// CommitRollout applies ops and, when r is not nil, writes r as the stored
// rollout record, all as one new revision, which it returns. A record
// without a revision is bound to that revision when read (see
// fedserver.RolloutLog). Ops may be empty when r is not nil.
func (l *Log) CommitRollout(r *rollout.State, ops ...fedproto.Op) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rev++
	if r != nil {
		cp := *r
		l.roll, l.rollRev = &cp, l.rev
	}
	for _, op := range ops {
		if op.Kind == fedproto.OpDelete {
			delete(l.state, op.Key)
		} else {
			l.state[op.Key] = op.Value
		}
	}
	if r == nil || len(ops) > 0 { // a rollout record alone is no change to stream
		l.deltas = append(l.deltas, fedproto.Delta{Revision: l.rev, Ops: slices.Clone(ops)})
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return l.rev
}

// Put commits one put.
func (l *Log) Put(key string, value []byte) uint64 {
	return l.Commit(fedproto.Op{Kind: fedproto.OpPut, Key: key, Value: value})
}

// Delete commits one delete.
func (l *Log) Delete(key string) uint64 {
	return l.Commit(fedproto.Op{Kind: fedproto.OpDelete, Key: key})
}

// Compact drops the history up to and including rev.
func (l *Log) Compact(rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rev = min(rev, l.rev)
	if rev <= l.compacted {
		return
	}
	i := sort.Search(len(l.deltas), func(i int) bool { return l.deltas[i].Revision > rev })
	l.deltas = slices.Clone(l.deltas[i:])
	l.compacted = rev
}

// Revision is the latest revision.
func (l *Log) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Get returns a key's value.
func (l *Log) Get(key string) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.state[key]
	return v, ok
}

// RolloutRevision implements fedserver.RolloutLog.
func (l *Log) RolloutRevision() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.rollRev
}

// StoredRollout implements fedserver.RolloutLog.
func (l *Log) StoredRollout() (*rollout.State, uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.roll == nil {
		return nil, 0, nil
	}
	cp := *l.roll
	cp.Bind(l.rollRev)
	return &cp, l.rollRev, nil
}

// Watch implements fedserver.Log.
func (l *Log) Watch(_ context.Context, afterRev uint64) (fedserver.Watcher, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if afterRev < l.compacted {
		return nil, fmt.Errorf("watch after %d (history starts after %d): %w", afterRev, l.compacted, fedserver.ErrCompacted)
	}
	return &watcher{l: l, after: afterRev}, nil
}

// Snapshot implements fedserver.Log.
func (l *Log) Snapshot(context.Context) (uint64, []fedproto.Object, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	objs := make([]fedproto.Object, 0, len(l.state))
	for _, k := range slices.Sorted(maps.Keys(l.state)) {
		objs = append(objs, fedproto.Object{Key: k, Value: l.state[k]})
	}
	return l.rev, objs, nil
}

type watcher struct {
	l     *Log
	after uint64
}

func (w *watcher) Next(ctx context.Context) (fedproto.Delta, error) {
	for {
		w.l.mu.RLock()
		if w.after < w.l.compacted {
			w.l.mu.RUnlock()
			return fedproto.Delta{}, fedserver.ErrCompacted
		}
		i := sort.Search(len(w.l.deltas), func(i int) bool { return w.l.deltas[i].Revision > w.after })
		if i < len(w.l.deltas) {
			d := w.l.deltas[i]
			w.l.mu.RUnlock()
			w.after = d.Revision
			return d, nil
		}
		ch := w.l.changed
		w.l.mu.RUnlock()
		select {
		case <-ctx.Done():
			return fedproto.Delta{}, ctx.Err()
		case <-ch:
		}
	}
}

func (w *watcher) Close() {}

// Members is an in-memory membership record.
type Members struct {
	mu sync.RWMutex
	m  map[string]fedserver.Member
}

// NewMembers returns an empty Members.
func NewMembers() *Members { return &Members{m: map[string]fedserver.Member{}} }

// ErrExists is returned by Add for a name already recorded.
var ErrExists = errors.New("fedservertest: member exists")

// Get implements fedserver.Members.
func (ms *Members) Get(name string) (fedserver.Member, bool) {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	m, ok := ms.m[name]
	return m, ok
}

// Add implements fedserver.Members.
func (ms *Members) Add(_ context.Context, m fedserver.Member) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if _, ok := ms.m[m.Name]; ok {
		return fmt.Errorf("%w: %s", ErrExists, m.Name)
	}
	ms.m[m.Name] = m
	return nil
}

// Kick implements fedserver.Members.
func (ms *Members) Kick(_ context.Context, name string) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m, ok := ms.m[name]
	if !ok {
		return fmt.Errorf("fedservertest: no member %s", name)
	}
	m.Kicked = true
	ms.m[name] = m
	return nil
}

// Remove implements fedserver.Members.
func (ms *Members) Remove(_ context.Context, name string) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if _, ok := ms.m[name]; !ok {
		return fmt.Errorf("fedservertest: no member %s", name)
	}
	delete(ms.m, name)
	return nil
}

// SetLabels changes a member's labels.
func (ms *Members) SetLabels(name string, labels map[string]string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m, ok := ms.m[name]; ok {
		m.Labels = labels
		ms.m[name] = m
	}
}

// Names lists the members.
func (ms *Members) Names() []string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return slices.Sorted(maps.Keys(ms.m))
}

// Tokens is an in-memory jointoken.Consumer.
type Tokens struct {
	mu   sync.Mutex
	used map[string]time.Time
}

// NewTokens returns an empty Tokens.
func NewTokens() *Tokens { return &Tokens{used: map[string]time.Time{}} }

// Consume implements jointoken.Consumer.
func (t *Tokens) Consume(_ context.Context, id string, expires time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.used[id]; ok {
		return jointoken.ErrUsed
	}
	t.used[id] = expires
	return nil
}

// Used is how many tokens were consumed.
func (t *Tokens) Used() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.used)
}
