// Package hub is the federation hub inside a primary cluster's
// controllers: promotion and demotion, join tokens, membership, federated
// objects and their staged rollout, all kept in the cluster's replicated
// store, and the QUIC federation server, which runs on the Raft leader and
// streams every committed change of the federation keyspace to the remotes.
//
// Keyspace (in the primary's store):
//
//	fed/primary/key           token signing key (Ed25519 seed)
//	fed/primary/config        advertised federation addresses
//	fed/members/NAME          joined remotes (fedserver.Member)
//	fed/tokens/used/ID        consumed single-use tokens
//	fed/stream/objects/K/N    federated policy objects (policy/code JSON)
//	fed/stream/scan/DIGEST    federated scan results
//	fed/history/REV           the federated objects as of a fed apply, for rollback
//	fed/rollout               the rollout in force (rollout.State), written in
//	                          the transaction of the objects it rolls out
//
// Everything under fed/stream/ is what remotes receive, with "fed/stream/"
// replaced by "federated/" in their own store.
package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/clusterinfo"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// Keys and prefixes of the federation keyspace.
const (
	KeySigningKey   = "fed/primary/key"
	KeyConfig       = "fed/primary/config"
	PrefixMembers   = "fed/members/"
	PrefixUsed      = "fed/tokens/used/"
	PrefixStream    = "fed/stream/"
	PrefixObjects   = PrefixStream + "objects/"
	PrefixScan      = PrefixStream + "scan/"
	PrefixHistory   = "fed/history/"
	KeyRollout      = "fed/rollout"
	prefixFed       = "fed/"
	historyRetained = 20
)

// ClusterSelectorAnnotation on a federated object limits it to remotes
// whose labels match (k=v pairs separated by commas, all must match;
// "k!=v" and "!k" exclude).
const ClusterSelectorAnnotation = "palisade.dev/clusters"

// Config configures a Hub.
type Config struct {
	// Store is the replica's store.
	Store *store.Store
	// CA returns the cluster CA.
	CA func() *pki.CA
	// FedAddr is this replica's federation listen address (UDP).
	FedAddr string
	// FedAdvertise is the address remotes dial for this replica.
	FedAdvertise string
	// Logger receives the hub's logs.
	Logger *slog.Logger
	// Server tunes the federation server (timeouts, frame sizes); its
	// identity, hooks and Log are filled in by the hub.
	Server fedserver.Config
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	srv := fedserver.DefaultConfig()
	// Remotes keep their links alive every 2 s; a remote silent for 10 s
	// is shown disconnected.
	srv.IdleTimeout = 10 * time.Second
	return Config{FedAddr: "0.0.0.0:11443", Server: srv}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("hub: config: store is nil")
	case c.CA == nil:
		return errors.New("hub: config: CA is nil")
	case c.Logger == nil:
		return errors.New("hub: config: logger is nil")
	}
	if _, _, err := net.SplitHostPort(c.FedAddr); err != nil {
		return fmt.Errorf("hub: config: federation address %q: %w", c.FedAddr, err)
	}
	return nil
}

// Hub is the federation hub of one primary replica.
type Hub struct {
	cfg Config
	st  *store.Store
	log *slog.Logger

	mu     sync.Mutex
	server *fedserver.Server
}

// New builds a Hub.
func New(cfg Config) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FedAdvertise == "" {
		cfg.FedAdvertise = cfg.FedAddr
	}
	return &Hub{cfg: cfg, st: cfg.Store, log: cfg.Logger.With(logfields.Component, "hub")}, nil
}

// Server returns the running federation server, or nil when this replica
// does not serve federation now.
func (h *Hub) Server() *fedserver.Server {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.server
}

// Run serves federation while this replica leads a primary cluster.
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var (
		cancel func()
		done   chan struct{}
	)
	stop := func() {
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
			h.mu.Lock()
			h.server = nil
			h.mu.Unlock()
		}
	}
	defer stop()
	for {
		want := h.st.IsLeader() && clusterinfo.Get(h.st).Role == clusterinfo.Primary
		if _, ok, _ := h.st.Get(KeySigningKey); !ok {
			want = false
		}
		switch {
		case want && cancel == nil:
			srv, err := h.newServer()
			if err != nil {
				h.log.Error("start federation server", logfields.Error, err)
				break
			}
			sctx, c := context.WithCancel(ctx)
			cancel, done = c, make(chan struct{})
			h.mu.Lock()
			h.server = srv
			h.mu.Unlock()
			go func() {
				defer close(done)
				if err := srv.Run(sctx); err != nil {
					h.log.Error("federation server stopped", logfields.Error, err)
				}
			}()
			h.log.Info("serving federation", logfields.Address, h.cfg.FedAddr)
		case !want && cancel != nil:
			h.log.Info("no longer serving federation")
			stop()
		case cancel != nil:
			// Rollout records written without a federated change (by an
			// earlier leader, for example); the server reads the record
			// itself before it streams each revision.
			h.Server().SyncRollout()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// storedRollout reads the rollout record: the rollout (nil: none), bound
// to the revision of its record when it was written with its change, and
// that revision.
func storedRollout(st *store.Store) (*rollout.State, uint64, error) {
	kv, ok, _ := st.Get(KeyRollout)
	if !ok {
		return nil, 0, nil
	}
	var r rollout.State
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return nil, 0, fmt.Errorf("rollout record at revision %d: %w", kv.ModRevision, err)
	}
	r.Bind(kv.ModRevision)
	return &r, kv.ModRevision, nil
}

// persistRollout writes a rollout state the server changed, unless the
// record already holds another rollout (a newer one started) or a later
// copy of this one: the record only ever moves forward.
func persistRollout(ctx context.Context, st *store.Store, r rollout.State) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	for range 8 {
		cond := store.Cond{Kind: store.CondAbsent, Key: KeyRollout}
		if kv, ok, _ := st.Get(KeyRollout); ok {
			var cur rollout.State
			if json.Unmarshal(kv.Value, &cur) == nil && (cur.ID != r.ID || cur.Seq >= r.Seq) {
				return nil
			}
			cond = store.Cond{Kind: store.CondModRevision, Key: KeyRollout, ModRevision: kv.ModRevision}
		}
		_, err = st.Txn(ctx, store.Txn{Conds: []store.Cond{cond}, Ops: []store.Op{{Type: store.OpPut, Key: KeyRollout, Value: b}}})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("rollout %s: record kept changing: %w", r.ID, err)
}

func (h *Hub) signingKey() (*jointoken.Key, error) {
	kv, ok, _ := h.st.Get(KeySigningKey)
	if !ok {
		return nil, errors.New("hub: this cluster is not a primary (no signing key)")
	}
	return jointoken.ParseKey(kv.Value)
}

func (h *Hub) newServer() (*fedserver.Server, error) {
	key, err := h.signingKey()
	if err != nil {
		return nil, err
	}
	scfg := h.cfg.Server
	scfg.Addr = h.cfg.FedAddr
	scfg.Primary = clusterinfo.Get(h.st).Name
	scfg.CA = h.cfg.CA()
	host, _, _ := net.SplitHostPort(h.cfg.FedAdvertise)
	scfg.ServerNames = []string{"localhost", "127.0.0.1", host}
	scfg.TokenKey = key.Public()
	scfg.Tokens = tokenConsumer{h.st}
	scfg.Members = members{h.st}
	scfg.Log = storeLog{h.st}
	scfg.IsCompacted = func(err error) bool { return errors.Is(err, store.ErrCompacted) }
	scfg.Target = target
	scfg.Logger = h.cfg.Logger
	scfg.OnRolloutChange = func(s rollout.State) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := persistRollout(ctx, h.st, s); err != nil {
			h.log.Warn("persist rollout state", logfields.Error, err)
		}
	}
	return fedserver.New(scfg)
}

// storeLog is the federation keyspace as the server reads it.
type storeLog struct{ st *store.Store }

func (l storeLog) Watch(_ context.Context, afterRev uint64) (fedserver.Watcher, error) {
	w, err := l.st.Watch(PrefixStream, afterRev)
	if err != nil {
		return nil, err
	}
	return storeWatcher{w}, nil
}

func (l storeLog) Snapshot(context.Context) (uint64, []fedproto.Object, error) {
	kvs, rev := l.st.List(PrefixStream)
	objs := make([]fedproto.Object, 0, len(kvs))
	for _, kv := range kvs {
		objs = append(objs, fedproto.Object{Key: strings.TrimPrefix(kv.Key, PrefixStream), Value: kv.Value})
	}
	return rev, objs, nil
}

// RolloutRevision implements fedserver.RolloutLog.
func (l storeLog) RolloutRevision() uint64 {
	kv, _, _ := l.st.Get(KeyRollout)
	return kv.ModRevision
}

// StoredRollout implements fedserver.RolloutLog.
func (l storeLog) StoredRollout() (*rollout.State, uint64, error) {
	return storedRollout(l.st)
}

type storeWatcher struct{ w *store.Watcher }

func (s storeWatcher) Next(ctx context.Context) (fedproto.Delta, error) {
	rev, evs, err := s.w.NextRevision(ctx)
	if err != nil {
		return fedproto.Delta{}, err
	}
	d := fedproto.Delta{Revision: rev}
	for _, e := range evs {
		op := fedproto.Op{Key: strings.TrimPrefix(e.Key, PrefixStream)}
		if e.Type == store.EventPut {
			op.Kind, op.Value = fedproto.OpPut, e.Value
		} else {
			op.Kind = fedproto.OpDelete
		}
		d.Ops = append(d.Ops, op)
	}
	return d, nil
}

func (storeWatcher) Close() {}

// tokenConsumer records single-use tokens through Raft.
type tokenConsumer struct{ st *store.Store }

func (t tokenConsumer) Consume(ctx context.Context, id string, expires time.Time) error {
	b, _ := json.Marshal(map[string]time.Time{"expires": expires})
	_, err := t.st.Create(ctx, PrefixUsed+id, b)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: token %s", jointoken.ErrUsed, id)
	}
	return err
}

// members persists membership in the store.
type members struct{ st *store.Store }

func (m members) Get(name string) (fedserver.Member, bool) {
	kv, ok, _ := m.st.Get(PrefixMembers + name)
	if !ok {
		return fedserver.Member{}, false
	}
	var mem fedserver.Member
	if json.Unmarshal(kv.Value, &mem) != nil {
		return fedserver.Member{}, false
	}
	return mem, true
}

func (m members) Add(ctx context.Context, mem fedserver.Member) error {
	b, _ := json.Marshal(mem)
	_, err := m.st.Create(ctx, PrefixMembers+mem.Name, b)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("hub: a member named %q exists: %w", mem.Name, err)
	}
	return err
}

func (m members) Kick(ctx context.Context, name string) error {
	mem, ok := m.Get(name)
	if !ok {
		return fmt.Errorf("hub: no member named %q", name)
	}
	mem.Kicked = true
	b, _ := json.Marshal(mem)
	_, err := m.st.Put(ctx, PrefixMembers+name, b)
	return err
}

func (m members) Remove(ctx context.Context, name string) error {
	_, err := m.st.Delete(ctx, PrefixMembers+name)
	return err
}

func (m members) list() []fedserver.Member {
	kvs, _ := m.st.List(PrefixMembers)
	var out []fedserver.Member
	for _, kv := range kvs {
		var mem fedserver.Member
		if json.Unmarshal(kv.Value, &mem) == nil {
			out = append(out, mem)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// target sends an object to a remote when its cluster selector (if any)
// matches the remote's labels.
func target(remote fedserver.Member, key string, value []byte) bool {
	if !strings.HasPrefix(key, "objects/") {
		return true
	}
	var obj struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if json.Unmarshal(value, &obj) != nil {
		return true
	}
	sel, ok := obj.Metadata.Annotations[ClusterSelectorAnnotation]
	if !ok {
		return true
	}
	return MatchLabels(sel, remote.Labels)
}

// MatchLabels reports whether labels satisfy a selector of comma-separated
// terms: "k=v" (equal), "k!=v" (not equal or absent), "k" (present), "!k"
// (absent). An empty selector matches everything.
func MatchLabels(selector string, labels map[string]string) bool {
	for _, term := range strings.Split(selector, ",") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		switch {
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			if labels[strings.TrimSpace(k)] == strings.TrimSpace(v) {
				return false
			}
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			got, ok := labels[strings.TrimSpace(k)]
			if !ok || got != strings.TrimSpace(v) {
				return false
			}
		case strings.HasPrefix(term, "!"):
			if _, ok := labels[strings.TrimPrefix(term, "!")]; ok {
				return false
			}
		default:
			if _, ok := labels[term]; !ok {
				return false
			}
		}
	}
	return true
}

// ValidateSelector checks a cluster selector's syntax.
func ValidateSelector(selector string) error {
	for _, term := range strings.Split(selector, ",") {
		term = strings.TrimSpace(term)
		k := strings.TrimPrefix(term, "!")
		if i := strings.IndexAny(k, "!="); i >= 0 {
			k = k[:i]
		}
		if term != "" && strings.TrimSpace(k) == "" {
			return fmt.Errorf("cluster selector term %q has no label key", term)
		}
	}
	return nil
}

func newID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
