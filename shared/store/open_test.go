package store

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// handedPorts holds every address freePort has returned in this test
// binary: the kernel may hand a port it just freed out again, and two
// listeners of one test (a replica's raft and gossip ports) must not get
// the same one.
var handedPorts sync.Map

// freePort returns a loopback address whose port is free for both TCP and
// UDP (gossip uses both) and that it has not returned before.
func freePort(t testing.TB) string {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, uerr := net.ListenPacket("udp", addr)
		l.Close()
		if uerr != nil {
			continue
		}
		u.Close()
		if _, taken := handedPorts.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
	t.Fatal("no port free for TCP and UDP")
	return ""
}

func openReplica(t *testing.T, name, dir, raftAddr, gossipAddr string, join []string, expect int) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.DataDir = dir
	cfg.RaftAddr = raftAddr
	cfg.GossipAddr = gossipAddr
	cfg.Join = join
	cfg.BootstrapExpect = expect
	cfg.APIAddr = "127.0.0.1:1" + name
	cfg.Meta = map[string]string{"fed": "fed-" + name}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return s
}

// TestOpenReplicasFormClusterOnLoopback runs three real replicas (TCP Raft,
// gossip, bolt) in one process: they find each other through --join, form
// a cluster at bootstrap-expect 3, forward a follower's write, and a
// restarted replica catches up from its data dir.
func TestOpenReplicasFormClusterOnLoopback(t *testing.T) {
	base := t.TempDir()
	type rep struct{ name, dir, raft, gossip string }
	var reps []rep
	for i := 0; i < 3; i++ {
		reps = append(reps, rep{fmt.Sprintf("r%d", i), filepath.Join(base, fmt.Sprint(i)), freePort(t), freePort(t)})
	}
	stores := make([]*Store, 3)
	for i, r := range reps {
		stores[i] = openReplica(t, r.name, r.dir, r.raft, r.gossip, []string{reps[0].gossip}, 3)
	}
	defer func() {
		for _, s := range stores {
			if s != nil {
				s.Close()
			}
		}
	}()
	var leader *Store
	deadline := time.Now().Add(15 * time.Second)
	for leader == nil && time.Now().Before(deadline) {
		for _, s := range stores {
			if s.IsLeader() {
				leader = s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if leader == nil {
		t.Fatal("no leader after 15s")
	}
	follower := stores[0]
	if follower == leader {
		follower = stores[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev, err := follower.Put(ctx, "x", []byte("1"))
	if err != nil {
		t.Fatalf("write through follower over TCP: %v", err)
	}
	reps3 := leader.Replicas()
	if len(reps3) != 3 {
		t.Fatalf("replicas = %+v, want 3", reps3)
	}
	nLeaders := 0
	for _, r := range reps3 {
		if r.State == "leader" {
			nLeaders++
		}
		if r.APIAddress == "" {
			t.Errorf("replica %s has no API address from gossip", r.Name)
		}
		if r.Meta["fed"] != "fed-"+r.Name {
			t.Errorf("replica %s meta = %v, want fed=fed-%s", r.Name, r.Meta, r.Name)
		}
	}
	if nLeaders != 1 {
		t.Fatalf("replicas report %d leaders: %+v", nLeaders, reps3)
	}

	// Restart a follower from its data dir; it catches up with writes made
	// while it was away.
	idx := 0
	for i, s := range stores {
		if s == follower {
			idx = i
		}
	}
	follower.Close()
	stores[idx] = nil
	if rev, err = leader.Put(ctx, "y", []byte("2")); err != nil {
		t.Fatal(err)
	}
	r := reps[idx]
	stores[idx] = openReplica(t, r.name, r.dir, r.raft, r.gossip, []string{reps[(idx+1)%3].gossip}, 3)
	if err := stores[idx].WaitFor(ctx, rev); err != nil {
		t.Fatalf("restarted replica did not catch up: %v", err)
	}
	if _, ok, _ := stores[idx].Get("x"); !ok {
		t.Fatal("restarted replica lost x")
	}
}

func TestOpenRejectsForeignOrDamagedDataDir(t *testing.T) {
	dir := t.TempDir()
	s := openReplica(t, "a", dir, freePort(t), freePort(t), nil, 1)
	s.Close()
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.RaftAddr, cfg.GossipAddr = "b", dir, freePort(t), freePort(t)
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), `belongs to replica "a"`) {
		t.Fatalf("open with another name: %v", err)
	}
	cfg.Name = "a"
	if err := os.WriteFile(filepath.Join(dir, "raft.db"), []byte("not a bolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("open with corrupt raft.db: %v", err)
	}
	os.Remove(filepath.Join(dir, "raft.db"))
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "raft.db is missing") {
		t.Fatalf("open with missing raft.db: %v", err)
	}
}
