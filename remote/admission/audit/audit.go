// Package audit records admission decisions: who asked to run what, which
// rule decided, whether it was allowed, and how long the decision took.
// Recording never blocks the webhook: events are buffered in memory and
// written to the replicated store in batches (keys under
// admission/events/<replica>/), keeping the newest events of each replica up
// to a bound.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// logKey is the log field naming a store key.
const logKey = "key"

// Prefix is where event batches are stored.
const Prefix = "admission/events/"

// Outcome says how a decision was reached.
type Outcome string

// Outcomes.
const (
	// Decided: the rules decided.
	Decided Outcome = "decided"
	// Skipped: admission does not check this request (kind, operation).
	Skipped Outcome = "skipped"
	// Deadline: no decision in time; the failure policy answered.
	Deadline Outcome = "deadline"
	// Invalid: the request could not be read; the failure policy answered
	// (or the review itself was rejected).
	Invalid Outcome = "invalid"
	// NotReady: the rules were not loaded yet; the failure policy answered.
	NotReady Outcome = "notReady"
)

// Event is one admission decision.
type Event struct {
	Time      time.Time `json:"time"`
	Replica   string    `json:"replica"`
	UID       string    `json:"uid,omitempty"`
	User      string    `json:"user,omitempty"`
	Operation string    `json:"operation,omitempty"`
	Kind      string    `json:"kind,omitempty"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name,omitempty"`
	Images    []string  `json:"images,omitempty"`
	// Rule is the admission rule that decided; empty when none did.
	Rule    string `json:"rule,omitempty"`
	Allowed bool   `json:"allowed"`
	// WouldDeny marks a denial that monitor mode let through.
	WouldDeny bool    `json:"wouldDeny,omitempty"`
	Mode      string  `json:"mode,omitempty"`
	Outcome   Outcome `json:"outcome"`
	Message   string  `json:"message"`
	DryRun    bool    `json:"dryRun,omitempty"`
	// LatencyMicros is how long the webhook took, from reading the request
	// to the answer.
	LatencyMicros int64 `json:"latencyMicros"`
}

// Store is the part of the replicated store the log writes to.
type Store interface {
	Txn(ctx context.Context, txn store.Txn) (uint64, error)
	List(prefix string) ([]store.KV, uint64)
}

// Config configures a Log.
type Config struct {
	// Replica names this replica; its batches are stored under its name.
	Replica string
	// Store receives the batches; nil keeps events in memory only.
	Store Store
	// FlushInterval is how often buffered events are written.
	FlushInterval time.Duration
	// MaxPending bounds the events buffered between flushes; beyond it the
	// oldest are dropped (and counted).
	MaxPending int
	// MaxEvents is how many events of this replica are kept in the store;
	// the oldest batches go first.
	MaxEvents int
	// MaxBatchEvents bounds the events of one stored batch (one key).
	MaxBatchEvents int
	// Logger receives flush errors.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: a flush a second, at most 10,000
// events waiting, the newest 50,000 events of each replica kept (about
// 15 MB of store), in batches of at most 1,000.
func DefaultConfig() Config {
	return Config{FlushInterval: time.Second, MaxPending: 10000, MaxEvents: 50000, MaxBatchEvents: 1000}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Replica == "" || strings.Contains(c.Replica, "/"):
		return fmt.Errorf("audit: config: replica name %q must be non-empty without '/'", c.Replica)
	case c.FlushInterval <= 0:
		return fmt.Errorf("audit: config: flush interval %v must be positive", c.FlushInterval)
	case c.MaxPending < 1:
		return fmt.Errorf("audit: config: max pending %d must be at least 1", c.MaxPending)
	case c.MaxBatchEvents < 1:
		return fmt.Errorf("audit: config: max batch events %d must be at least 1", c.MaxBatchEvents)
	case c.MaxEvents < c.MaxBatchEvents:
		return fmt.Errorf("audit: config: max events %d must be at least max batch events %d", c.MaxEvents, c.MaxBatchEvents)
	}
	return nil
}

// Log buffers and stores events.
type Log struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	pending ring
	dropped uint64
	seq     int64

	flushMu sync.Mutex
	batches []batch // this replica's stored batches, oldest first
	stored  int     // events in batches
}

// New builds a Log; with a store, it picks up the batches this replica
// stored before a restart so retention keeps counting them.
func New(cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg, log: cfg.Logger}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.log = l.log.With(logfields.Component, "admission-audit")
	if cfg.Store != nil {
		kvs, _ := cfg.Store.List(l.ownPrefix())
		for _, kv := range kvs {
			b := batch{key: kv.Key, n: cfg.MaxBatchEvents}
			if i := strings.LastIndexByte(kv.Key, '-'); i >= 0 {
				if n, err := strconv.Atoi(kv.Key[i+1:]); err == nil && n >= 0 {
					b.n = n
				}
			}
			l.batches = append(l.batches, b)
			l.stored += b.n
		}
	}
	return l, nil
}

func (l *Log) ownPrefix() string { return Prefix + l.cfg.Replica + "/" }

// Record adds an event; it never blocks on the store.
func (l *Log) Record(e Event) {
	e.Replica = l.cfg.Replica
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending.push(e, l.cfg.MaxPending) {
		l.dropped++
	}
}

// ring is a bounded FIFO of events that overwrites the oldest when full.
type ring struct {
	buf  []Event
	head int // index of the oldest event
	n    int
}

// push appends e and reports whether the oldest event was overwritten.
func (r *ring) push(e Event, limit int) bool {
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = e
		r.n++
		return false
	}
	if len(r.buf) < limit {
		// Grow, keeping the order.
		nb := make([]Event, min(max(2*len(r.buf), 64), limit))
		copy(nb, r.items())
		r.buf, r.head = nb, 0
		r.buf[r.n] = e
		r.n++
		return false
	}
	r.buf[r.head] = e
	r.head = (r.head + 1) % len(r.buf)
	return true
}

// items returns the events, oldest first, as a new slice.
func (r *ring) items() []Event {
	out := make([]Event, 0, r.n)
	for i := range r.n {
		out = append(out, r.buf[(r.head+i)%len(r.buf)])
	}
	return out
}

// take returns the events and empties the ring, keeping its buffer.
func (r *ring) take() []Event {
	out := r.items()
	clear(r.buf)
	r.head, r.n = 0, 0
	return out
}

// Dropped is how many events were dropped because the store could not keep
// up.
func (l *Log) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// Run flushes every FlushInterval until ctx ends, then flushes once more
// with a short grace period.
func (l *Log) Run(ctx context.Context) error {
	if l.cfg.Store == nil {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(l.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			err := l.Flush(fctx)
			cancel()
			return err
		case <-t.C:
			if err := l.Flush(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("store admission events", logfields.Error, err)
			}
		}
	}
}

// batch is one stored key of events; its key ends in "-<count>".
type batch struct {
	key string
	n   int
}

// Flush writes the buffered events in batches of at most MaxBatchEvents,
// deleting this replica's oldest batches beyond MaxEvents in the same
// transaction. On failure the events go back to the buffer.
func (l *Log) Flush(ctx context.Context) error {
	if l.cfg.Store == nil {
		return nil
	}
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	events := l.pending.take()
	if over := len(events) - l.cfg.MaxEvents; over > 0 {
		events = events[over:]
		l.dropped += uint64(over)
	}
	l.mu.Unlock()
	if len(events) == 0 {
		return nil
	}
	var (
		txn     store.Txn
		planned = slices.Clone(l.batches)
		total   = l.stored
		now     = time.Now().UnixNano()
	)
	for chunk := range slices.Chunk(events, l.cfg.MaxBatchEvents) {
		b, err := json.Marshal(chunk)
		if err != nil {
			return fmt.Errorf("encode events: %w", err)
		}
		l.seq++
		key := fmt.Sprintf("%s%020d-%06d-%d", l.ownPrefix(), now, l.seq%1000000, len(chunk))
		txn.Ops = append(txn.Ops, store.Op{Type: store.OpPut, Key: key, Value: b})
		planned = append(planned, batch{key: key, n: len(chunk)})
		total += len(chunk)
	}
	dropped := 0
	for total > l.cfg.MaxEvents && dropped < len(l.batches) {
		txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: planned[dropped].key})
		total -= planned[dropped].n
		dropped++
	}
	if _, err := l.cfg.Store.Txn(ctx, txn); err != nil {
		l.mu.Lock()
		newer := l.pending.take()
		for _, e := range append(events, newer...) {
			if l.pending.push(e, l.cfg.MaxPending) {
				l.dropped++
			}
		}
		l.mu.Unlock()
		return fmt.Errorf("write %d events: %w", len(events), err)
	}
	l.batches, l.stored = planned[dropped:], total
	return nil
}

// Filter selects events.
type Filter struct {
	// Limit is the most events returned (newest first); 0 is 100.
	Limit int
	// Denied keeps denials and monitor-mode would-be denials only.
	Denied bool
	// Namespace keeps one namespace.
	Namespace string
	// Rule keeps the decisions of one rule.
	Rule string
	// Since keeps events at or after this time.
	Since time.Time
}

// MaxLimit bounds Filter.Limit.
const MaxLimit = 10000

// ErrBadFilter is returned by List for a filter it cannot apply.
var ErrBadFilter = errors.New("audit: bad filter")

func (f *Filter) keep(e *Event) bool {
	switch {
	case f.Denied && e.Allowed && !e.WouldDeny:
		return false
	case f.Namespace != "" && e.Namespace != f.Namespace:
		return false
	case f.Rule != "" && e.Rule != f.Rule:
		return false
	case !f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	}
	return true
}

// List returns the events of every replica that match f, newest first:
// those in the store and those this replica has not written yet.
func (l *Log) List(f Filter) ([]Event, error) {
	switch {
	case f.Limit < 0 || f.Limit > MaxLimit:
		return nil, fmt.Errorf("%w: limit %d (want 0..%d)", ErrBadFilter, f.Limit, MaxLimit)
	case f.Limit == 0:
		f.Limit = 100
	}
	var out []Event
	l.mu.Lock()
	pending := l.pending.items()
	l.mu.Unlock()
	for i := range pending {
		if f.keep(&pending[i]) {
			out = append(out, pending[i])
		}
	}
	if l.cfg.Store != nil {
		kvs, _ := l.cfg.Store.List(Prefix)
		for _, kv := range kvs {
			var batch []Event
			if err := json.Unmarshal(kv.Value, &batch); err != nil {
				l.log.Warn("skip unreadable admission event batch", logKey, kv.Key, logfields.Error, err)
				continue
			}
			for i := range batch {
				if f.keep(&batch[i]) {
					out = append(out, batch[i])
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Event) int { return b.Time.Compare(a.Time) })
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}
