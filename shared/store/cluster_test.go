package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// testCluster is a cluster of in-memory replicas on raft's in-memory
// transport, so partitions can be simulated.
type testCluster struct {
	t      *testing.T
	stores []*Store
	trans  []*raft.InmemTransport
	fwd    *inmemForwarder
}

// inmemForwarder delivers forwarded writes to the replica at an address,
// unless the sender or receiver is partitioned.
type inmemForwarder struct {
	mu          sync.Mutex
	byAddr      map[raft.ServerAddress]*Store
	partitioned map[raft.ServerAddress]bool
}

type addrForwarder struct {
	from raft.ServerAddress
	f    *inmemForwarder
}

func (a addrForwarder) forward(ctx context.Context, addr raft.ServerAddress, cmd []byte) (applyResult, error) {
	a.f.mu.Lock()
	s := a.f.byAddr[addr]
	cut := a.f.partitioned[addr] || a.f.partitioned[a.from]
	a.f.mu.Unlock()
	if s == nil || cut {
		return applyResult{}, fmt.Errorf("no route to %s", addr)
	}
	return s.serveForward(ctx, cmd).result(addr)
}

func testConfig(name string) Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.DataDir = "unused"
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	cfg.ElectionTimeout = 50 * time.Millisecond
	cfg.HistorySize = 1000
	return cfg
}

func newTestCluster(t *testing.T, n int, mod func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, fwd: &inmemForwarder{byAddr: map[raft.ServerAddress]*Store{}, partitioned: map[raft.ServerAddress]bool{}}}
	var servers []raft.Server
	for i := 0; i < n; i++ {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("inmem-%d", i)))
		c.trans = append(c.trans, tr)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("s%d", i)), Address: addr})
	}
	for i, a := range c.trans {
		for j, b := range c.trans {
			if i != j {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	for i := 0; i < n; i++ {
		cfg := testConfig(string(servers[i].ID))
		if mod != nil {
			mod(&cfg)
		}
		logs := raft.NewInmemStore()
		s, err := newStore(cfg, deps{
			trans: c.trans[i], logs: logs, stable: logs, snaps: raft.NewInmemSnapshotStore(),
			fwd: addrForwarder{from: servers[i].Address, f: c.fwd}, hclogger: hclog.NewNullLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		c.stores = append(c.stores, s)
		c.fwd.byAddr[servers[i].Address] = s
	}
	if err := c.stores[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range c.stores {
			s.Close()
		}
	})
	c.leader(nil)
	return c
}

// leader waits for a leader among the replicas not in skip.
func (c *testCluster) leader(skip map[int]bool) *Store {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range c.stores {
			if !skip[i] && s.IsLeader() {
				return s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected")
	return nil
}

func (c *testCluster) follower(leader *Store, skip map[int]bool) (int, *Store) {
	for i, s := range c.stores {
		if s != leader && !skip[i] {
			return i, s
		}
	}
	c.t.Fatal("no follower")
	return 0, nil
}

func (c *testCluster) partition(i int) {
	c.trans[i].DisconnectAll()
	for j, tr := range c.trans {
		if j != i {
			tr.Disconnect(c.trans[i].LocalAddr())
		}
	}
	c.fwd.mu.Lock()
	c.fwd.partitioned[c.trans[i].LocalAddr()] = true
	c.fwd.mu.Unlock()
}

func (c *testCluster) heal(i int) {
	for j, tr := range c.trans {
		if j != i {
			tr.Connect(c.trans[i].LocalAddr(), c.trans[i])
			c.trans[i].Connect(tr.LocalAddr(), tr)
		}
	}
	c.fwd.mu.Lock()
	delete(c.fwd.partitioned, c.trans[i].LocalAddr())
	c.fwd.mu.Unlock()
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClusterWriteOnFollowerIsForwardedAndReadable(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader(nil)
	_, f := c.follower(leader, nil)
	rev, err := f.Put(ctxT(t, 5*time.Second), "k", []byte("v"))
	if err != nil {
		t.Fatalf("write on follower: %v", err)
	}
	// Read-your-write on the replica that took the write.
	if kv, ok, at := f.Get("k"); !ok || string(kv.Value) != "v" || at < rev {
		t.Fatalf("follower read after its write: %+v ok=%v at=%d rev=%d", kv, ok, at, rev)
	}
	for _, s := range c.stores {
		if err := s.WaitFor(ctxT(t, 5*time.Second), rev); err != nil {
			t.Fatal(err)
		}
		if kv, ok, _ := s.Get("k"); !ok || kv.ModRevision != rev {
			t.Fatalf("%s: %+v", s.Name(), kv)
		}
	}
	// A conflict travels back through the forwarder as a ConflictError.
	_, err = f.Create(ctxT(t, 5*time.Second), "k", []byte("again"))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Key != "k" {
		t.Fatalf("create of existing key via follower: %v, want ConflictError on k", err)
	}
}

func TestClusterLeaderLossKeepsAcknowledgedWrites(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader(nil)
	var acked []string
	for i := 0; i < 20; i++ {
		k := fmt.Sprintf("before/%d", i)
		if _, err := leader.Put(ctxT(t, 5*time.Second), k, []byte("x")); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, k)
	}
	dead := -1
	for i, s := range c.stores {
		if s == leader {
			dead = i
		}
	}
	leader.Close()
	skip := map[int]bool{dead: true}
	_, survivor := c.follower(nil, skip)
	rev, err := survivor.Put(ctxT(t, 10*time.Second), "after", []byte("y"))
	if err != nil {
		t.Fatalf("write after leader loss: %v", err)
	}
	newLeader := c.leader(skip)
	if newLeader == leader {
		t.Fatal("closed replica still leads")
	}
	for i, s := range c.stores {
		if skip[i] {
			continue
		}
		if err := s.WaitFor(ctxT(t, 5*time.Second), rev); err != nil {
			t.Fatal(err)
		}
		for _, k := range append(acked, "after") {
			if _, ok, _ := s.Get(k); !ok {
				t.Fatalf("%s lost acknowledged write %s", s.Name(), k)
			}
		}
	}
}

func TestClusterPartitionedFollowerCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader(nil)
	idx, f := c.follower(leader, nil)
	c.partition(idx)
	// The isolated follower cannot commit a write.
	if _, err := f.Put(ctxT(t, 300*time.Millisecond), "isolated", []byte("x")); err == nil {
		t.Fatal("write through a partitioned follower succeeded")
	}
	// The majority keeps going.
	var rev uint64
	for i := 0; i < 30; i++ {
		var err error
		if rev, err = c.leader(map[int]bool{idx: true}).Put(ctxT(t, 5*time.Second), fmt.Sprintf("maj/%d", i), []byte("x")); err != nil {
			t.Fatalf("majority write %d: %v", i, err)
		}
	}
	if got, _ := f.List("maj/"); len(got) != 0 {
		t.Fatalf("partitioned follower saw %d writes", len(got))
	}
	c.heal(idx)
	if err := f.WaitFor(ctxT(t, 10*time.Second), rev); err != nil {
		t.Fatalf("healed follower did not catch up: %v", err)
	}
	if got, _ := f.List("maj/"); len(got) != 30 {
		t.Fatalf("healed follower has %d of 30 writes", len(got))
	}
	if _, ok, _ := f.Get("isolated"); ok {
		t.Fatal("a write refused during the partition appeared later")
	}
}

func TestClusterFollowerCatchesUpFromSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 10
		cfg.TrailingLogs = 5
	})
	leader := c.leader(nil)
	idx, f := c.follower(leader, nil)
	before := f.Revision()
	c.partition(idx)
	live := c.leader(map[int]bool{idx: true})
	var rev uint64
	for i := 0; i < 60; i++ {
		var err error
		if rev, err = live.Put(ctxT(t, 5*time.Second), fmt.Sprintf("k/%03d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := live.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	c.heal(idx)
	if err := f.WaitFor(ctxT(t, 10*time.Second), rev); err != nil {
		t.Fatalf("follower did not catch up: %v", err)
	}
	got, _ := f.List("k/")
	want, _ := live.List("k/")
	if keys(got) != keys(want) {
		t.Fatalf("follower state differs after snapshot install:\n got %s\nwant %s", keys(got), keys(want))
	}
	// History before the installed snapshot is gone on the follower.
	if _, err := f.Watch("", before); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from before the snapshot on follower: %v, want ErrCompacted", err)
	}
}

func TestLeadershipSubscription(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	ch, cancel := c.stores[0].SubscribeLeadership()
	defer cancel()
	select {
	case v := <-ch:
		if !v {
			t.Fatal("got false, want true for the only replica")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no leadership notification")
	}
}
