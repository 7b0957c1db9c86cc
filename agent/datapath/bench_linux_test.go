//go:build linux

package datapath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// benchTable is the baseline table plus filler entries up to n verdicts:
// filler sources 1000.. to B on distinct ports, each one port prefix.
func benchTable(n int) Table {
	t := baseTable(ModeProtect)
	for i := 0; len(t.Verdicts) < n; i++ {
		t.Verdicts = append(t.Verdicts, VerdictEntry{
			SrcID: Identity(1000 + i/1000), DstID: idB, Proto: unix.IPPROTO_TCP,
			PortLo: uint16(1 + i%1000), PortHi: uint16(1 + i%1000), Action: ActionAllow, RuleID: uint32(100 + i),
		})
	}
	t.Verdicts = t.Verdicts[:n]
	return t
}

// sinkServer discards everything it reads.
func sinkServer(b *testing.B, ns, addr string) {
	var l net.Listener
	var err error
	inNetns(b, ns, func() { l, err = net.Listen("tcp4", addr) })
	if err != nil {
		b.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	b.Cleanup(func() { l.Close(); <-done })
}

func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// mapMemory sums the kernel's memlock accounting of this process's BPF maps.
func mapMemory() uint64 {
	ents, _ := os.ReadDir("/proc/self/fdinfo")
	var total uint64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", e.Name()))
		if err != nil || !strings.Contains(string(b), "map_type:") {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total
}

// BenchmarkPrivilegedDatapath measures TCP between two namespaces with no
// program, with the program and 10 rules, and with 100,000 rules (Protect),
// and logs each figure as a ratio of the no-program one.
//
//	go test -run '^$' -bench BenchmarkPrivilegedDatapath -benchtime 3s ./agent/datapath/
func BenchmarkPrivilegedDatapath(b *testing.B) {
	skipUnlessRoot(b)
	n := newTestNet(b)
	run(b, "ip", "netns", "exec", n.a, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
	echoServer(b, n.b, "tcp4", "10.199.2.2:8080")
	sinkServer(b, n.b, "10.199.2.2:7004")

	cfg := DefaultConfig()
	cfg.PinDir = filepath.Join("/sys/fs/bpf/palisade", fmt.Sprintf("bench-%d", os.Getpid()))
	d, err := Open(cfg, quietLogger())
	if err != nil {
		b.Fatalf("open: %+v", err)
	}
	b.Cleanup(func() { d.Destroy() })

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable program stats: %v", err)
	}
	defer stats.Close()
	// progCost returns the programs' total run time and run count.
	progCost := func() (time.Duration, uint64) {
		var t time.Duration
		var n uint64
		for _, p := range []*ebpf.Program{d.objs.PalisadeTcxIngress, d.objs.PalisadeTcxEgress} {
			st, err := p.Stats()
			if err != nil {
				b.Fatalf("program stats: %v", err)
			}
			t += st.Runtime
			n += st.RunCount
		}
		return t, n
	}
	type result struct {
		rr, crr, bulk    []float64
		rrNs, crrNs, bNs []float64 // program run time per packet in each phase
	}
	results := map[string]*result{}
	configs := []struct {
		name  string
		rules int // 0: no program attached
	}{{"none", 0}, {"rules10", 10}, {"rules100k", 100000}}
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("PALISADE_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	} // configurations alternate, so drift hits all alike
	for round := 1; round <= rounds; round++ {
		for _, c := range configs {
			if c.rules == 0 {
				inNetns(b, n.r, func() { d.DetachInterface(n.raIf); d.DetachInterface(n.rbIf) })
			} else {
				start := time.Now()
				if err := d.ApplyTable(benchTable(c.rules)); err != nil {
					b.Fatalf("apply %d rules: %v", c.rules, err)
				}
				if round == 1 {
					b.Logf("%s: table applied in %s", c.name, time.Since(start).Round(time.Millisecond))
				}
				inNetns(b, n.r, func() {
					if err := d.AttachInterface(n.raIf, idA); err != nil {
						b.Fatalf("attach: %v", err)
					}
					if err := d.AttachInterface(n.rbIf, idB); err != nil {
						b.Fatalf("attach: %v", err)
					}
				})
			}
			r := results[c.name]
			if r == nil {
				r = &result{}
				results[c.name] = r
			}
			prefix := fmt.Sprintf("round%d/%s", round, c.name)
			var t0 time.Duration
			var n0 uint64
			cost := func(into *[]float64) {
				if t1, n1 := progCost(); n1 > n0 {
					*into = append(*into, float64(t1-t0)/float64(n1-n0))
				}
			}
			var last float64
			t0, n0 = progCost()
			b.Run(prefix+"/rr", func(b *testing.B) {
				conn, err := benchDial(b, n.a, "10.199.2.2:8080")
				if err != nil {
					b.Fatalf("dial: %v", err)
				}
				defer conn.Close()
				buf := []byte{1}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := conn.Write(buf); err != nil {
						b.Fatalf("write: %v", err)
					}
					if _, err := io.ReadFull(conn, buf); err != nil {
						b.Fatalf("read: %v", err)
					}
				}
				v := float64(b.N) / b.Elapsed().Seconds()
				last = v
				b.ReportMetric(v, "trans/s")
			})
			r.rr = append(r.rr, last)
			cost(&r.rrNs)
			t0, n0 = progCost()
			b.Run(prefix+"/crr", func(b *testing.B) {
				buf := []byte{1}
				for i := 0; i < b.N; i++ {
					conn, err := benchDial(b, n.a, "10.199.2.2:8080")
					if err != nil {
						b.Fatalf("dial: %v", err)
					}
					conn.Write(buf)
					io.ReadFull(conn, buf)
					conn.Close()
				}
				v := float64(b.N) / b.Elapsed().Seconds()
				last = v
				b.ReportMetric(v, "conn/s")
			})
			r.crr = append(r.crr, last)
			cost(&r.crrNs)
			t0, n0 = progCost()
			b.Run(prefix+"/bulk", func(b *testing.B) {
				conn, err := benchDial(b, n.a, "10.199.2.2:7004")
				if err != nil {
					b.Fatalf("dial: %v", err)
				}
				defer conn.Close()
				chunk := make([]byte, 128<<10)
				b.SetBytes(int64(len(chunk)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := conn.Write(chunk); err != nil {
						b.Fatalf("write: %v", err)
					}
				}
				v := float64(b.N) * float64(len(chunk)) * 8 / b.Elapsed().Seconds() / 1e9
				last = v
				b.ReportMetric(v, "Gbit/s")
			})
			r.bulk = append(r.bulk, last)
			cost(&r.bNs)
			if c.rules == 100000 && round == 1 {
				runtime.GC()
				b.Logf("at rest with %d verdicts (%d policy prefixes): process RSS %.1f MiB, BPF map memory %.1f MiB",
					c.rules, d.policyCount, float64(rssBytes())/(1<<20), float64(mapMemory())/(1<<20))
			}
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		if len(s) == 0 {
			return 0
		}
		return s[len(s)/2]
	}
	base := results["none"]
	for _, c := range configs {
		r := results[c.name]
		if r == nil || median(base.rr) == 0 {
			continue
		}
		b.Logf("%-9s median of %d: rr %.0f/s (%.1f%%)  crr %.0f/s (%.1f%%)  bulk %.2f Gbit/s (%.1f%%)  program ns/packet: rr %.0f crr %.0f bulk %.0f",
			c.name, len(r.rr),
			median(r.rr), 100*median(r.rr)/median(base.rr),
			median(r.crr), 100*median(r.crr)/median(base.crr),
			median(r.bulk), 100*median(r.bulk)/median(base.bulk),
			median(r.rrNs), median(r.crrNs), median(r.bNs))
		// The same as benchmark lines, for bench/results.md.
		b.Run("ratio/"+c.name, func(b *testing.B) {
			b.ReportMetric(100*median(r.rr)/median(base.rr), "rr-%")
			b.ReportMetric(100*median(r.crr)/median(base.crr), "crr-%")
			b.ReportMetric(100*median(r.bulk)/median(base.bulk), "bulk-%")
			b.ReportMetric(median(r.rrNs), "rr-prog-ns/pkt")
			b.ReportMetric(median(r.crrNs), "crr-prog-ns/pkt")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchDial connects from ns with a timeout generous enough for a loaded
// machine.
func benchDial(b *testing.B, ns, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	inNetns(b, ns, func() {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err = d.Dial("tcp4", addr)
	})
	return c, err
}

// BenchmarkPrivilegedApplyDiff measures one small diff (one verdict in,
// one out) on top of a 100,000-verdict table: the time from the call to the
// maps enforcing it.
//
//	go test -run '^$' -bench BenchmarkPrivilegedApplyDiff ./agent/datapath/
func BenchmarkPrivilegedApplyDiff(b *testing.B) {
	skipUnlessRoot(b)
	cfg := DefaultConfig()
	cfg.PinDir = filepath.Join("/sys/fs/bpf/palisade", fmt.Sprintf("bench-diff-%d", os.Getpid()))
	d, err := Open(cfg, quietLogger())
	if err != nil {
		b.Fatalf("open: %+v", err)
	}
	b.Cleanup(func() { d.Destroy() })
	if err := d.ApplyTable(benchTable(100000)); err != nil {
		b.Fatalf("apply: %v", err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := VerdictEntry{SrcID: idA, DstID: Identity(5000 + i%2), Proto: unix.IPPROTO_TCP, PortLo: 443, PortHi: 443, Action: ActionAllow, RuleID: 99}
		old := v
		old.DstID = Identity(5000 + (i+1)%2)
		if err := d.ApplyDiff(Diff{AddVerdicts: []VerdictEntry{v}, RemoveVerdicts: []VerdictEntry{old}}); err != nil {
			b.Fatalf("diff: %v", err)
		}
	}
}

// tcpPacket is an Ethernet frame with 10.199.1.2:40000 -> 10.199.2.2:dport.
func tcpPacket(dport uint16, flags byte, payload int) []byte {
	eth := make([]byte, 14)
	eth[12], eth[13] = 0x08, 0x00
	ipPayload := append(tcpHeader(40000, dport, 5), make([]byte, payload)...)
	ipPayload[13] = flags
	return append(eth, ipv4Packet(5, unix.IPPROTO_TCP, ipPayload)...)
}

// BenchmarkPrivilegedProgram runs the tcx program on synthetic packets with
// BPF_PROG_TEST_RUN: the cost per packet of an established flow (one
// conntrack lookup) and of a violation (identity and policy lookups, ring
// buffer), at 10 and at 100,000 verdicts.
//
//	go test -run '^$' -bench BenchmarkPrivilegedProgram ./agent/datapath/
func BenchmarkPrivilegedProgram(b *testing.B) {
	skipUnlessRoot(b)
	cfg := DefaultConfig()
	cfg.PinDir = filepath.Join("/sys/fs/bpf/palisade", fmt.Sprintf("bench-prog-%d", os.Getpid()))
	d, err := Open(cfg, quietLogger())
	if err != nil {
		b.Fatalf("open: %+v", err)
	}
	b.Cleanup(func() { d.Destroy() })
	// Test runs see the loopback device (ifindex 1) as the interface.
	if err := d.objs.Endpoints.Put(uint64(1), bpf.DatapathEndpoint{Identity: uint32(idA)}); err != nil {
		b.Fatalf("endpoint: %v", err)
	}
	for _, rules := range []int{10, 100000} {
		if err := d.ApplyTable(benchTable(rules)); err != nil {
			b.Fatalf("apply: %v", err)
		}
		for _, c := range []struct {
			name string
			pkt  []byte
			want uint32
		}{
			{"established", tcpPacket(8080, 0x10, 0), ^uint32(0)}, // TCX_NEXT
			{"violation", tcpPacket(9090, 0x02, 0), 2},            // TCX_DROP
		} {
			b.Run(fmt.Sprintf("rules%d/%s", rules, c.name), func(b *testing.B) {
				// The first run of the allowed packet creates its flow.
				ret, _, err := d.objs.PalisadeTcxIngress.Benchmark(c.pkt, 1, nil)
				if err != nil {
					b.Fatalf("run: %v", err)
				}
				if ret != c.want {
					b.Fatalf("program returned %d, want %d", int32(ret), int32(c.want))
				}
				b.ResetTimer()
				_, per, err := d.objs.PalisadeTcxIngress.Benchmark(c.pkt, b.N, nil)
				if err != nil {
					b.Fatalf("run: %v", err)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/packet")
			})
		}
	}
}

// BenchmarkPrivilegedDatapathAtRest measures the footprint of a process
// that holds the datapath (this test binary: Open, 100,000 verdicts, two
// attached interfaces, the ring buffer reader, the conntrack sweeper every
// second) while no traffic flows: resident memory, CPU time per second of
// rest, and the kernel memory of the maps. It is the datapath's share of
// an agent, not a whole `palisade agent`.
//
//	go test -run '^$' -bench BenchmarkPrivilegedDatapathAtRest -benchtime 1x ./agent/datapath/
func BenchmarkPrivilegedDatapathAtRest(b *testing.B) {
	skipUnlessRoot(b)
	n := newTestNet(b)
	cfg := DefaultConfig()
	cfg.PinDir = filepath.Join("/sys/fs/bpf/palisade", fmt.Sprintf("bench-rest-%d", os.Getpid()))
	cfg.SweepInterval = time.Second
	d, err := Open(cfg, quietLogger())
	if err != nil {
		b.Fatalf("open: %+v", err)
	}
	b.Cleanup(func() { d.Destroy() })
	if err := d.ApplyTable(benchTable(100000)); err != nil {
		b.Fatalf("apply: %v", err)
	}
	inNetns(b, n.r, func() {
		if err := d.AttachInterface(n.raIf, idA); err != nil {
			b.Fatalf("attach: %v", err)
		}
		if err := d.AttachInterface(n.rbIf, idB); err != nil {
			b.Fatalf("attach: %v", err)
		}
	})
	events := startEvents(d)
	defer events.stop()
	rest := 10 * time.Second
	if v, err := strconv.Atoi(os.Getenv("PALISADE_REST_SECONDS")); err == nil && v > 0 {
		rest = time.Duration(v) * time.Second
	}
	cpu := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			b.Fatalf("getrusage: %v", err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	runtime.GC()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0, t0 := cpu(), time.Now()
		time.Sleep(rest)
		used, wall := cpu()-c0, time.Since(t0)
		b.ReportMetric(float64(used.Microseconds())/wall.Seconds()/1000, "cpu-ms/s")
	}
	b.ReportMetric(float64(rssBytes())/(1<<20), "rss-MiB")
	b.ReportMetric(float64(mapMemory())/(1<<20), "map-MiB")
}
