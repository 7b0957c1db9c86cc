package store

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestAddressChanges(t *testing.T) {
	alive := func(addr string) memberInfo { return memberInfo{meta: nodeMeta{Raft: addr}, status: memberAlive} }
	failed := func(addr string) memberInfo { return memberInfo{meta: nodeMeta{Raft: addr}, status: memberFailed} }
	voters := []raft.Server{
		{ID: "a", Address: "10.0.0.1:1", Suffrage: raft.Voter},
		{ID: "b", Address: "10.0.0.2:1", Suffrage: raft.Voter},
		{ID: "c", Address: "10.0.0.3:1", Suffrage: raft.Voter},
	}
	tests := []struct {
		name     string
		selfAddr string
		members  map[string]memberInfo
		want     []addressChange
	}{
		{
			name:     "all in place",
			selfAddr: "10.0.0.1:1",
			members:  map[string]memberInfo{"a": alive("10.0.0.1:1"), "b": alive("10.0.0.2:1"), "c": alive("10.0.0.3:1")},
		},
		{
			name:     "follower restarted at a new address",
			selfAddr: "10.0.0.1:1",
			members:  map[string]memberInfo{"b": alive("10.0.0.9:1"), "c": alive("10.0.0.3:1")},
			want:     []addressChange{{id: "b", from: "10.0.0.2:1", to: "10.0.0.9:1"}},
		},
		{
			name:     "a failed replica's last address is not applied",
			selfAddr: "10.0.0.1:1",
			members:  map[string]memberInfo{"b": failed("10.0.0.9:1")},
		},
		{
			name:     "unknown and address-less members are left alone",
			selfAddr: "10.0.0.1:1",
			members:  map[string]memberInfo{"b": alive(""), "z": alive("10.0.0.8:1")},
		},
		{
			name:     "the leader itself restarted at a new address",
			selfAddr: "10.0.0.7:1",
			members:  map[string]memberInfo{"a": alive("10.0.0.1:1")},
			want:     []addressChange{{id: "a", from: "10.0.0.1:1", to: "10.0.0.7:1"}},
		},
		{
			name:     "new address still held by another voter",
			selfAddr: "10.0.0.1:1",
			members:  map[string]memberInfo{"b": alive("10.0.0.3:1"), "c": alive("10.0.0.4:1")},
			want: []addressChange{
				{id: "b", from: "10.0.0.2:1", to: "10.0.0.3:1", blockedBy: "c"},
				{id: "c", from: "10.0.0.3:1", to: "10.0.0.4:1"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := addressChanges(voters, "a", tc.selfAddr, tc.members)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("addressChanges = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// eventually polls cond until it holds or the (generous) bound passes, and
// fails with cond's last explanation.
func eventually(t *testing.T, bound time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %s", what, bound, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func configAddr(s *Store, name string) string {
	for _, srv := range s.voters() {
		if string(srv.ID) == name {
			return string(srv.Address)
		}
	}
	return ""
}

// TestOpenReplicaRestartedAtNewAddress restarts a replica from its data dir
// under the same name but on a new Raft and gossip port, as a Kubernetes pod
// does when it comes back with a new IP. The leader must move it in the
// Raft configuration (on every replica, the restarted one included), keep
// three voters, and replicate writes to it; the same when the restarted
// replica led before.
func TestOpenReplicaRestartedAtNewAddress(t *testing.T) {
	for _, restartLeader := range []bool{false, true} {
		t.Run(fmt.Sprintf("leader=%v", restartLeader), func(t *testing.T) {
			base := t.TempDir()
			names := []string{"r0", "r1", "r2"}
			dirs := make([]string, 3)
			gossip := make([]string, 3)
			stores := make([]*Store, 3)
			t.Cleanup(func() {
				for _, s := range stores {
					if s != nil {
						s.Close()
					}
				}
			})
			for i := range stores {
				dirs[i], gossip[i] = filepath.Join(base, names[i]), freePort(t)
				stores[i] = openReplica(t, names[i], dirs[i], freePort(t), gossip[i], []string{gossip[0]}, 3)
			}
			leaderOf := func(skip int) (*Store, bool) {
				for i, s := range stores {
					if i != skip && s != nil && s.IsLeader() {
						return s, true
					}
				}
				return nil, false
			}
			var leader *Store
			eventually(t, 30*time.Second, "a leader with three voters", func() (bool, string) {
				var ok bool
				if leader, ok = leaderOf(-1); !ok {
					return false, "no leader"
				}
				return len(leader.voters()) == 3, fmt.Sprintf("voters %v", leader.voters())
			})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := leader.Put(ctx, "before", []byte("1")); err != nil {
				t.Fatal(err)
			}

			idx := 0
			for i, s := range stores {
				if (s == leader) == restartLeader {
					idx = i
					break
				}
			}
			name := names[idx]
			oldAddr := configAddr(leader, name)
			stores[idx].Close()
			stores[idx] = nil

			// The others carry on (a new leader when the old one left) and
			// take a write the restarted replica must catch up with.
			eventually(t, 30*time.Second, "a leader among the remaining replicas", func() (bool, string) {
				var ok bool
				leader, ok = leaderOf(idx)
				return ok, "no leader"
			})
			rev, err := leader.Put(ctx, "while-away", []byte("2"))
			if err != nil {
				t.Fatalf("write while %s is away: %v", name, err)
			}

			newRaft := freePort(t)
			if newRaft == oldAddr {
				t.Fatalf("free port %s is the old address", newRaft)
			}
			peer := (idx + 1) % 3
			stores[idx] = openReplica(t, name, dirs[idx], newRaft, freePort(t), []string{gossip[peer]}, 3)
			restarted := stores[idx]

			// Every replica, the restarted one included (its stored
			// configuration listed itself at the old address), ends up
			// with the new address and three voters.
			for i, s := range stores {
				eventually(t, 60*time.Second, fmt.Sprintf("%s lists %s at %s", names[i], name, newRaft), func() (bool, string) {
					got := configAddr(s, name)
					return got == newRaft && len(s.voters()) == 3, fmt.Sprintf("%s at %q, voters %v", name, got, s.voters())
				})
			}
			if err := restarted.WaitFor(ctx, rev); err != nil {
				t.Fatalf("restarted replica did not catch up: %v", err)
			}

			// Writes reach it from the leader, and its own writes are
			// forwarded and applied everywhere.
			cur, ok := leaderOf(-1)
			for !ok {
				time.Sleep(50 * time.Millisecond)
				cur, ok = leaderOf(-1)
			}
			if rev, err = cur.Put(ctx, "after", []byte("3")); err != nil {
				t.Fatal(err)
			}
			if err := restarted.WaitFor(ctx, rev); err != nil {
				t.Fatalf("write after the move did not reach %s: %v", name, err)
			}
			if rev, err = restarted.Put(ctx, "from-restarted", []byte("4")); err != nil {
				t.Fatalf("write through %s: %v", name, err)
			}
			for i, s := range stores {
				if err := s.WaitFor(ctx, rev); err != nil {
					t.Fatalf("%s: %v", names[i], err)
				}
				for _, k := range []string{"before", "while-away", "after", "from-restarted"} {
					if _, ok, _ := s.Get(k); !ok {
						t.Fatalf("%s lacks %s", names[i], k)
					}
				}
			}

			// Reconciling again changes nothing: the move is idempotent.
			cur, ok = leaderOf(-1)
			if !ok {
				t.Fatal("no leader after the move")
			}
			before := cur.RaftStats()["latest_configuration_index"]
			cur.disc.reconcile()
			cur.disc.reconcile()
			if after := cur.RaftStats()["latest_configuration_index"]; after != before {
				t.Fatalf("configuration index moved from %s to %s on a reconcile with nothing to do", before, after)
			}
			if got := configAddr(cur, name); got != newRaft {
				t.Fatalf("%s listed at %s after reconcile, want %s", name, got, newRaft)
			}
		})
	}
}

// TestOpenSingleReplicaRestartedAtNewAddress covers a leader that restarts
// at a new address and wins the election again: it must fix its own entry.
func TestOpenSingleReplicaRestartedAtNewAddress(t *testing.T) {
	dir := t.TempDir()
	s := openReplica(t, "solo", dir, freePort(t), freePort(t), nil, 1)
	eventually(t, 30*time.Second, "solo leads", func() (bool, string) { return s.IsLeader(), "not leader" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	oldAddr := configAddr(s, "solo")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	newRaft := freePort(t)
	if newRaft == oldAddr {
		t.Fatalf("free port %s is the old address", newRaft)
	}
	s = openReplica(t, "solo", dir, newRaft, freePort(t), nil, 1)
	defer s.Close()
	eventually(t, 30*time.Second, "solo lists itself at its new address", func() (bool, string) {
		got := configAddr(s, "solo")
		return got == newRaft && len(s.voters()) == 1, fmt.Sprintf("solo at %q (old %s), voters %v", got, oldAddr, s.voters())
	})
	if _, err := s.Put(ctx, "after", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get("before"); !ok {
		t.Fatal("restarted replica lost its data")
	}
}

// TestOpenClusterRestartedAtNewAddresses restarts every replica at once on
// new ports (every pod rescheduled): no stored address is right any more,
// yet the replicas must find each other through gossip, elect a leader,
// and end up listed at their new addresses with their data.
func TestOpenClusterRestartedAtNewAddresses(t *testing.T) {
	base := t.TempDir()
	names := []string{"r0", "r1", "r2"}
	stores := make([]*Store, 3)
	t.Cleanup(func() {
		for _, s := range stores {
			if s != nil {
				s.Close()
			}
		}
	})
	open := func() []string {
		gossip := []string{freePort(t), freePort(t), freePort(t)}
		raftAddrs := make([]string, 3)
		for i, name := range names {
			raftAddrs[i] = freePort(t)
			stores[i] = openReplica(t, name, filepath.Join(base, name), raftAddrs[i], gossip[i], []string{gossip[0]}, 3)
		}
		return raftAddrs
	}
	settled := func(raftAddrs []string) *Store {
		var leader *Store
		for i, s := range stores {
			eventually(t, 60*time.Second, names[i]+" sees every replica at its address", func() (bool, string) {
				for j, name := range names {
					if got := configAddr(s, name); got != raftAddrs[j] {
						return false, fmt.Sprintf("%s at %q, want %s", name, got, raftAddrs[j])
					}
				}
				return len(s.voters()) == 3, fmt.Sprintf("voters %v", s.voters())
			})
		}
		eventually(t, 30*time.Second, "a leader", func() (bool, string) {
			for _, s := range stores {
				if s.IsLeader() {
					leader = s
					return true, ""
				}
			}
			return false, "no leader"
		})
		return leader
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := settled(open())
	if _, err := leader.Put(ctx, "before", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for i, s := range stores {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		stores[i] = nil
	}
	settled(open())
	rev, err := stores[0].Put(ctx, "after", []byte("2"))
	if err != nil {
		t.Fatalf("write after the restart: %v", err)
	}
	for i, s := range stores {
		if err := s.WaitFor(ctx, rev); err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
		if _, ok, _ := s.Get("before"); !ok {
			t.Fatalf("%s lost the write from before the restart", names[i])
		}
	}
}

func TestGossipAddrsResolvesFromGossipThenConfiguration(t *testing.T) {
	c := newTestCluster(t, 3, nil) // s0, s1, s2 at inmem-0, inmem-1, inmem-2
	alive := func(addr string) memberInfo { return memberInfo{meta: nodeMeta{Raft: addr}, status: memberAlive} }
	failed := func(addr string) memberInfo { return memberInfo{meta: nodeMeta{Raft: addr}, status: memberFailed} }
	tests := []struct {
		name    string
		members map[string]memberInfo
		id      raft.ServerID
		want    raft.ServerAddress
		wantErr bool
	}{
		{name: "unknown to gossip: configuration", id: "s1", want: "inmem-1"},
		{name: "alive in gossip: its published address", members: map[string]memberInfo{"s1": alive("10.0.0.9:1")}, id: "s1", want: "10.0.0.9:1"},
		{name: "alive without an address: configuration", members: map[string]memberInfo{"s1": alive("")}, id: "s1", want: "inmem-1"},
		{name: "failed in gossip: configuration", members: map[string]memberInfo{"s1": failed("10.0.0.9:1")}, id: "s1", want: "inmem-1"},
		{
			name:    "stored address now published by another replica: not dialed",
			members: map[string]memberInfo{"s1": alive("inmem-2"), "s2": failed("inmem-2")},
			id:      "s2", want: "",
		},
		{name: "neither in gossip nor in the configuration", id: "s9", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			members := tc.members
			if members == nil {
				members = map[string]memberInfo{}
			}
			g := &gossipAddrs{}
			g.disc.Store(&discovery{s: c.stores[0], members: members})
			got, err := g.ServerAddr(tc.id)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ServerAddr(%s) = %q, %v; want %q, error %v", tc.id, got, err, tc.want, tc.wantErr)
			}
		})
	}
	if _, err := (&gossipAddrs{}).ServerAddr("s1"); err == nil {
		t.Fatal("ServerAddr before discovery started: no error")
	}
}
