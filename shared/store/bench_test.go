package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

// benchCluster opens n real replicas (TCP Raft, gossip, bolt on disk) on
// loopback and waits for a leader.
func benchCluster(b *testing.B, n int) []*Store {
	b.Helper()
	base := b.TempDir()
	type addrs struct{ raft, gossip string }
	var as []addrs
	for i := 0; i < n; i++ {
		as = append(as, addrs{freePort(b), freePort(b)})
	}
	var stores []*Store
	for i := 0; i < n; i++ {
		cfg := DefaultConfig()
		cfg.Name = fmt.Sprintf("b%d", i)
		cfg.DataDir = filepath.Join(base, cfg.Name)
		cfg.RaftAddr, cfg.GossipAddr = as[i].raft, as[i].gossip
		cfg.BootstrapExpect = n
		if n > 1 {
			cfg.Join = []string{as[0].gossip}
		}
		s, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		stores = append(stores, s)
	}
	b.Cleanup(func() {
		for _, s := range stores {
			s.Close()
		}
	})
	waitLeader(b, stores)
	return stores
}

func waitLeader(b *testing.B, stores []*Store) *Store {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range stores {
			if s != nil && s.IsLeader() {
				return s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("no leader")
	return nil
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

// benchWrites commits b.N 256-byte writes through the leader from
// `writers` goroutines and reports commit latency percentiles.
func benchWrites(b *testing.B, replicas, writers int) {
	stores := benchCluster(b, replicas)
	leader := waitLeader(b, stores)
	val := make([]byte, 256)
	lat := make([]time.Duration, b.N)
	var next int64
	var mu sync.Mutex
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= int64(b.N) {
					return
				}
				start := time.Now()
				if _, err := leader.Put(context.Background(), fmt.Sprintf("bench/%d", i), val); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
}

// BenchmarkWrite1Replica is the baseline: the same writes on a cluster of
// one, with no replication round trip.
func BenchmarkWrite1Replica(b *testing.B)           { benchWrites(b, 1, 1) }
func BenchmarkWrite3Replicas(b *testing.B)          { benchWrites(b, 3, 1) }
func BenchmarkWrite3Replicas16Writers(b *testing.B) { benchWrites(b, 3, 16) }

// BenchmarkLeaderFailover measures, per iteration, the time from closing
// the leader of a 3-replica cluster to the first successful write through
// a survivor, then brings the replica back.
func BenchmarkLeaderFailover(b *testing.B) {
	base := b.TempDir()
	type rep struct{ name, dir, raft, gossip string }
	var reps []rep
	for i := 0; i < 3; i++ {
		reps = append(reps, rep{fmt.Sprintf("f%d", i), filepath.Join(base, fmt.Sprint(i)), freePort(b), freePort(b)})
	}
	open := func(r rep, join string) *Store {
		cfg := DefaultConfig()
		cfg.Name, cfg.DataDir, cfg.RaftAddr, cfg.GossipAddr = r.name, r.dir, r.raft, r.gossip
		cfg.BootstrapExpect = 3
		cfg.Join = []string{join}
		s, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	stores := make([]*Store, 3)
	for i, r := range reps {
		stores[i] = open(r, reps[0].gossip)
	}
	defer func() {
		for _, s := range stores {
			if s != nil {
				s.Close()
			}
		}
	}()
	var times []time.Duration
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		leader := waitLeader(b, stores)
		idx := 0
		for i, s := range stores {
			if s == leader {
				idx = i
			}
		}
		survivor := stores[(idx+1)%3]
		if _, err := leader.Put(context.Background(), "warm", []byte("x")); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		leader.Close()
		stores[idx] = nil
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := survivor.Put(ctx, fmt.Sprintf("after/%d", n), []byte("x"))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		b.StopTimer()
		stores[idx] = open(reps[idx], reps[(idx+1)%3].gossip)
		if err := stores[idx].WaitFor(context.Background(), survivor.Revision()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(times, 0.5).Milliseconds()), "p50-failover-ms")
	b.ReportMetric(float64(percentile(times, 1).Milliseconds()), "max-failover-ms")
}
