// Package store is the replicated, revisioned document store of a controller
// cluster: a key/value tree kept consistent across 1 or 3 (or more) replicas
// with Raft (hashicorp/raft, raft-boltdb log and stable store, file
// snapshots), replicas found with memberlist.
//
// A replica keeps its name and data dir across restarts but may come back
// at a new address (a Kubernetes pod gets a new IP): Raft dials peers at
// the address they publish through gossip, and the leader moves a replica
// in the Raft configuration when that address changes.
//
// Every write is a transaction that gets the Raft index as its revision.
// Writes may be submitted on any replica: a follower forwards them to the
// leader over the Raft port and waits until it has applied the result
// locally, so a read on the same replica after a write sees it. Readers list
// by prefix and watch changes after a revision; a watch that asks for history
// older than the retained window gets ErrCompacted and re-lists.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/palisade-sec/palisade/shared/logfields"
)

// Config configures one replica of the store.
type Config struct {
	// Name identifies the replica in Raft and gossip; unique in the cluster.
	Name string
	// DataDir holds raft.db (log and stable store), snapshots/ and a
	// node-id file binding the directory to Name.
	DataDir string
	// RaftAddr is the TCP address the Raft port listens on; it also carries
	// writes forwarded from followers.
	RaftAddr string
	// RaftAdvertise is the address peers dial; defaults to RaftAddr.
	RaftAdvertise string
	// GossipAddr is the memberlist address (TCP and UDP).
	GossipAddr string
	// Join lists gossip addresses of existing replicas to contact at start.
	Join []string
	// BootstrapExpect is how many replicas must be seen before a new
	// cluster forms. 1 forms a single-replica cluster at once.
	BootstrapExpect int
	// APIAddr is this replica's advertised API address, published to peers
	// so any replica can name the leader's API.
	APIAddr string
	// Meta is published to peers with the addresses (for example the
	// replica's federation address); keep it small.
	Meta map[string]string
	// ReapTimeout is how long a replica may be unreachable before the
	// leader removes it from the Raft configuration.
	ReapTimeout time.Duration
	// HeartbeatTimeout and ElectionTimeout bound how fast a lost leader is
	// noticed and replaced.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// SnapshotThreshold is how many log entries trigger a snapshot.
	SnapshotThreshold uint64
	// TrailingLogs is how many entries are kept after a snapshot, so that
	// a briefly absent follower catches up from the log.
	TrailingLogs uint64
	// HistorySize is how many events are kept in memory for watchers.
	HistorySize int
	// Logger receives the store's logs; Raft's own logs go to RaftLogOutput.
	Logger *slog.Logger
	// RaftLogOutput receives hashicorp/raft and memberlist logs; nil
	// discards them.
	RaftLogOutput io.Writer
}

// DefaultConfig returns the defaults for a replica on a low-latency network.
func DefaultConfig() Config {
	return Config{
		RaftAddr:          "0.0.0.0:18300",
		GossipAddr:        "0.0.0.0:18301",
		BootstrapExpect:   1,
		ReapTimeout:       5 * time.Minute,
		HeartbeatTimeout:  500 * time.Millisecond,
		ElectionTimeout:   500 * time.Millisecond,
		SnapshotThreshold: 8192,
		TrailingLogs:      10240,
		HistorySize:       100000,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("store: config: name is empty")
	case strings.ContainsAny(c.Name, " /\t\n"):
		return fmt.Errorf("store: config: name %q contains spaces or slashes", c.Name)
	case c.DataDir == "":
		return errors.New("store: config: data dir is empty")
	case c.BootstrapExpect < 1:
		return fmt.Errorf("store: config: bootstrap-expect is %d, want at least 1", c.BootstrapExpect)
	case c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0:
		return errors.New("store: config: heartbeat and election timeouts must be positive")
	case c.ReapTimeout <= 0:
		return errors.New("store: config: reap timeout must be positive")
	case c.HistorySize < 1:
		return errors.New("store: config: history size must be at least 1")
	}
	for _, a := range []struct{ name, v string }{{"raft address", c.RaftAddr}, {"gossip address", c.GossipAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("store: config: %s %q: %w", a.name, a.v, err)
		}
	}
	return nil
}

// Errors returned by the store.
var (
	// ErrNoLeader means no leader could be reached before the context ended.
	ErrNoLeader = errors.New("store: no leader")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("store: closed")
)

// forwarder sends an encoded command to the leader at addr.
type forwarder interface {
	forward(ctx context.Context, addr raft.ServerAddress, cmd []byte) (applyResult, error)
}

// Store is one replica of the replicated document store.
type Store struct {
	cfg  Config
	log  *slog.Logger
	fsm  *fsm
	raft *raft.Raft
	fwd  forwarder

	// Closed in Close, in reverse order of opening.
	closers []func() error
	disc    *discovery

	leaderMu   sync.Mutex
	leaderSubs map[chan bool]struct{}
	isLeader   bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// deps are the parts of a Store that differ between a real replica and the
// in-memory replicas of unit tests.
type deps struct {
	trans    raft.Transport
	logs     raft.LogStore
	stable   raft.StableStore
	snaps    raft.SnapshotStore
	fwd      forwarder
	hclogger hclog.Logger
}

func newStore(cfg Config, d deps) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Store{
		cfg:        cfg,
		log:        cfg.Logger.With(logfields.Component, "store"),
		fsm:        newFSM(cfg.HistorySize),
		fwd:        d.fwd,
		leaderSubs: map[chan bool]struct{}{},
		stop:       make(chan struct{}),
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = d.hclogger
	notify := make(chan bool, 16)
	rc.NotifyCh = notify
	r, err := raft.NewRaft(rc, s.fsm, d.logs, d.stable, d.snaps, d.trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	s.wg.Add(1)
	go s.watchLeadership(notify)
	return s, nil
}

// Close stops the replica without leaving the cluster: it can restart from
// its data dir.
func (s *Store) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		close(s.stop)
		if s.disc != nil {
			errs = append(errs, s.disc.shutdown())
		}
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
		}
		s.wg.Wait()
		for i := len(s.closers) - 1; i >= 0; i-- {
			if err := s.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// Leave removes this replica from the cluster gracefully (leadership is
// handed over first when this replica leads), then closes it.
func (s *Store) Leave(ctx context.Context) error {
	if s.raft.State() == raft.Leader {
		if n := len(s.voters()); n > 1 {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer before leave failed", logfields.Error, err)
			}
		}
	}
	if s.disc != nil {
		if err := s.disc.leave(2 * time.Second); err != nil {
			s.log.Warn("gossip leave failed", logfields.Error, err)
		}
		// The leader removes us when gossip says we left. A removed
		// follower may never receive the configuration without it (the
		// leader stops replicating to it), so wait only briefly for it.
		wait, cancel := context.WithTimeout(ctx, 3*time.Second)
		for wait.Err() == nil && s.inConfiguration() && len(s.voters()) > 1 {
			select {
			case <-wait.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		cancel()
	}
	return s.Close()
}

func (s *Store) voters() []raft.Server {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []raft.Server
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			out = append(out, srv)
		}
	}
	return out
}

func (s *Store) inConfiguration() bool {
	for _, srv := range s.voters() {
		if srv.ID == raft.ServerID(s.cfg.Name) {
			return true
		}
	}
	return false
}

// placed reports whether the Raft configuration lists this replica at the
// Raft address it advertises now.
func (s *Store) placed() bool {
	for _, srv := range s.voters() {
		if srv.ID == raft.ServerID(s.cfg.Name) {
			return srv.Address == raft.ServerAddress(s.cfg.RaftAdvertise)
		}
	}
	return false
}

// Name is this replica's name.
func (s *Store) Name() string { return s.cfg.Name }

// Get returns the document at key and the revision the read reflects.
func (s *Store) Get(key string) (KV, bool, uint64) { return s.fsm.get(key) }

// List returns every document under prefix, sorted by key, and the
// revision the read reflects.
func (s *Store) List(prefix string) ([]KV, uint64) { return s.fsm.list(prefix) }

// Revision is the revision of the latest applied write on this replica.
func (s *Store) Revision() uint64 {
	rev, _ := s.fsm.revision()
	return rev
}

// WaitFor blocks until this replica has applied revision rev.
func (s *Store) WaitFor(ctx context.Context, rev uint64) error {
	for {
		cur, changed := s.fsm.revision()
		if cur >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for revision %d (at %d): %w", rev, cur, ctx.Err())
		case <-s.stop:
			return ErrClosed
		}
	}
}

// Watch returns a watcher of the events under prefix after revision
// afterRev; ErrCompacted when that history is no longer retained.
func (s *Store) Watch(prefix string, afterRev uint64) (*Watcher, error) {
	return s.fsm.watch(prefix, afterRev)
}

// Put writes value at key.
func (s *Store) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return s.Txn(ctx, Txn{Ops: []Op{{Type: OpPut, Key: key, Value: value}}})
}

// Create writes value at key only if key does not exist (*ConflictError
// otherwise).
func (s *Store) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	return s.Txn(ctx, Txn{Conds: []Cond{{Kind: CondAbsent, Key: key}}, Ops: []Op{{Type: OpPut, Key: key, Value: value}}})
}

// Delete removes key (a no-op when absent).
func (s *Store) Delete(ctx context.Context, key string) (uint64, error) {
	return s.Txn(ctx, Txn{Ops: []Op{{Type: OpDelete, Key: key}}})
}

// Txn submits a transaction through the leader and returns its revision
// once this replica has applied it. A failed condition returns a
// *ConflictError (errors.Is ErrConflict) and writes nothing.
func (s *Store) Txn(ctx context.Context, txn Txn) (uint64, error) {
	if err := txn.Validate(); err != nil {
		return 0, err
	}
	cmd, err := encodeCommand(CommandTxn, &txn)
	if err != nil {
		return 0, err
	}
	res, err := s.submit(ctx, cmd)
	if err != nil {
		return 0, err
	}
	if err := s.WaitFor(ctx, res.Revision); err != nil {
		return 0, err
	}
	return res.Revision, res.Err
}

// submit applies cmd on the leader, retrying through elections until ctx
// ends.
func (s *Store) submit(ctx context.Context, cmd []byte) (applyResult, error) {
	backoff := 10 * time.Millisecond
	var lastErr error
	for {
		select {
		case <-s.stop:
			return applyResult{}, ErrClosed
		default:
		}
		var res applyResult
		var err error
		if s.raft.State() == raft.Leader {
			res, err = s.applyLocal(ctx, cmd)
		} else if addr, _ := s.raft.LeaderWithID(); addr != "" {
			res, err = s.fwd.forward(ctx, addr, cmd)
		} else {
			err = ErrNoLeader
		}
		if err == nil {
			return res, nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return applyResult{}, fmt.Errorf("%w: %v (last error: %v)", ErrNoLeader, ctx.Err(), lastErr)
		case <-s.stop:
			return applyResult{}, ErrClosed
		case <-time.After(backoff):
		}
		if backoff < 200*time.Millisecond {
			backoff *= 2
		}
	}
}

// applyLocal applies cmd through this replica's Raft, which must lead.
func (s *Store) applyLocal(ctx context.Context, cmd []byte) (applyResult, error) {
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return applyResult{}, ctx.Err()
		}
	}
	f := s.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		return applyResult{}, err
	}
	res, ok := f.Response().(applyResult)
	if !ok {
		return applyResult{}, fmt.Errorf("store: unexpected apply response %T", f.Response())
	}
	return res, nil
}

// IsLeader reports whether this replica leads the cluster now.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's name and Raft address, empty when unknown.
func (s *Store) Leader() (name, raftAddr string) {
	addr, id := s.raft.LeaderWithID()
	return string(id), string(addr)
}

// SubscribeLeadership returns a channel that receives true when this
// replica gains leadership and false when it loses it (only the latest
// value is kept when the reader is slow), and a function to unsubscribe.
func (s *Store) SubscribeLeadership() (<-chan bool, func()) {
	ch := make(chan bool, 1)
	s.leaderMu.Lock()
	s.leaderSubs[ch] = struct{}{}
	if s.isLeader {
		ch <- true
	}
	s.leaderMu.Unlock()
	return ch, func() {
		s.leaderMu.Lock()
		delete(s.leaderSubs, ch)
		s.leaderMu.Unlock()
	}
}

func (s *Store) watchLeadership(notify <-chan bool) {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case v := <-notify:
			s.log.Info("leadership changed", logfields.Leader, v)
			s.leaderMu.Lock()
			s.isLeader = v
			for ch := range s.leaderSubs {
				select {
				case <-ch:
				default:
				}
				ch <- v
			}
			s.leaderMu.Unlock()
		}
	}
}

// Replica describes one member of the Raft configuration.
type Replica struct {
	Name        string `json:"name"`
	RaftAddress string `json:"raftAddress"`
	// APIAddress is the replica's advertised API address, when known.
	APIAddress string `json:"address"`
	// State is leader, follower, failed (unreachable) or left.
	State string `json:"state"`
	// Meta is what the replica publishes besides its addresses.
	Meta map[string]string `json:"meta,omitempty"`
}

// Replicas lists the members of the Raft configuration with their state.
func (s *Store) Replicas() []Replica {
	leader, _ := s.Leader()
	var out []Replica
	for _, srv := range s.voters() {
		r := Replica{Name: string(srv.ID), RaftAddress: string(srv.Address), State: "follower"}
		if s.disc != nil {
			if m, ok := s.disc.member(r.Name); ok {
				r.APIAddress = m.meta.API
				r.Meta = m.meta.Meta
				if m.status != memberAlive {
					r.State = m.status.String()
				}
			} else if r.Name != s.cfg.Name {
				r.State = "failed"
			}
		}
		if r.Name == s.cfg.Name {
			r.APIAddress = s.cfg.APIAddr
			r.Meta = s.cfg.Meta
		}
		if r.Name == leader {
			r.State = "leader"
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RaftStats returns hashicorp/raft's counters (state, term, indexes), for
// metrics and diagnostics.
func (s *Store) RaftStats() map[string]string { return s.raft.Stats() }

// Open opens (or creates) a replica's data dir and starts Raft, the
// forwarding listener and gossip discovery.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RaftAdvertise == "" {
		cfg.RaftAdvertise = cfg.RaftAddr
	}
	if err := checkDataDir(cfg.DataDir, cfg.Name); err != nil {
		return nil, err
	}
	var closers []func() error
	fail := func(err error) (*Store, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		return nil, err
	}
	logOut := cfg.RaftLogOutput
	if logOut == nil {
		logOut = io.Discard
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: logOut, Level: hclog.Info})

	boltPath := filepath.Join(cfg.DataDir, "raft.db")
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: boltPath, BoltOptions: nil})
	if err != nil {
		return fail(fmt.Errorf("open raft log store %s (the file may be corrupt; restore it from a backup or remove the replica's data dir and let it rejoin): %w", boltPath, err))
	}
	closers = append(closers, bolt.Close)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hl.Named("snapshots"))
	if err != nil {
		return fail(fmt.Errorf("open snapshot store in %s: %w", cfg.DataDir, err))
	}
	if err := checkSnapshots(snaps); err != nil {
		return fail(err)
	}
	mux, err := listenMux(cfg.RaftAddr, cfg.RaftAdvertise)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, mux.Close)
	addrs := &gossipAddrs{}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: mux, MaxPool: 3, Timeout: 10 * time.Second, Logger: hl.Named("transport"),
		ServerAddressProvider: addrs,
	})
	closers = append(closers, trans.Close)

	s, err := newStore(cfg, deps{trans: trans, logs: bolt, stable: bolt, snaps: snaps, fwd: &tcpForwarder{}, hclogger: hl})
	if err != nil {
		return fail(err)
	}
	s.closers = closers
	mux.serveForward(s.serveForward)
	hasState, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	disc, err := startDiscovery(s, hasState, logOut)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.disc = disc
	addrs.disc.Store(disc)
	return s, nil
}

// checkDataDir creates the data dir on first use and otherwise checks that
// it belongs to this replica and is complete, so a wrong or damaged
// directory is reported instead of being silently reset.
func checkDataDir(dir, name string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	idPath := filepath.Join(dir, "node-id")
	raftPath := filepath.Join(dir, "raft.db")
	id, err := os.ReadFile(idPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := os.Stat(raftPath); err == nil {
			return fmt.Errorf("data dir %s: raft.db exists but node-id is missing: the directory is incomplete", dir)
		}
		return os.WriteFile(idPath, []byte(name+"\n"), 0o600)
	case err != nil:
		return fmt.Errorf("data dir %s: read node-id: %w", dir, err)
	}
	if got := strings.TrimSpace(string(id)); got != name {
		return fmt.Errorf("data dir %s belongs to replica %q, not %q", dir, got, name)
	}
	if _, err := os.Stat(raftPath); err != nil {
		return fmt.Errorf("data dir %s: node-id exists but raft.db is missing (%v): refusing to start empty", dir, err)
	}
	return nil
}

// checkSnapshots opens the newest snapshot, if any, so a corrupt one fails
// at start with a clear message rather than inside Raft.
func checkSnapshots(snaps *raft.FileSnapshotStore) error {
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(metas) == 0 {
		return nil
	}
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	if _, _, err := readSnapshot(rc); err != nil {
		return fmt.Errorf("snapshot %s is unreadable: %w", metas[0].ID, err)
	}
	return nil
}
