//go:build linux

package datapath

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
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
// and logs each figure as a ratio of the no-program one. Two paths are
// measured: rules10 and rules100k route every packet through the host (no
// local endpoints: both ends' tcx hooks decide, the host forwards),
// rules10-local and rules100k-local deliver it straight into the receiving
// namespace (SetLocalEndpoint for both veths: the sender's ingress hook
// decides for both ends and redirects to the peer, past host routing and
// the receiver's egress hook).
//
// Each rule count has its own datapath, loaded once before any
// measurement, so switching configurations is only an attach or a detach:
// no table load, its garbage or its freed map memory lands in a measured
// phase. A round measures one phase (rr, crr, bulk) for every
// configuration back to back, in an order that rotates from round to
// round, and a ratio is the median over rounds of the ratio within a
// round: drift and the bursts of other work on a shared machine hit the
// configurations they are compared with, not a baseline measured seconds
// earlier. Request/response is measured first a second way as well,
// finer: pairedRR, which also measures a program that returns at once on
// the same four hooks (`empty`): the share of the hooks themselves, below
// which no program attached there can go.
//
//	go test -run '^$' -bench BenchmarkPrivilegedDatapath -benchtime 3s ./agent/datapath/
func BenchmarkPrivilegedDatapath(b *testing.B) {
	skipUnlessRoot(b)
	n := newTestNet(b)
	run(b, "ip", "netns", "exec", n.a, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
	echoServer(b, n.b, "tcp4", "10.199.2.2:8080")
	sinkServer(b, n.b, "10.199.2.2:7004")

	configs := []struct {
		name  string
		rules int  // 0: no program attached
		local bool // local delivery: a and b are local endpoints
	}{{"none", 0, false}, {"rules10", 10, false}, {"rules100k", 100000, false},
		{"rules10-local", 10, true}, {"rules100k-local", 100000, true}}
	local := map[string]bool{}
	m := n.macs(b)
	localEndpoints := []LocalEndpoint{
		{Ifindex: n.raIf, Addrs: []netip.Addr{netip.MustParseAddr("10.199.1.2")}, MAC: m.a, HostMAC: m.ra},
		{Ifindex: n.rbIf, Addrs: []netip.Addr{netip.MustParseAddr("10.199.2.2")}, MAC: m.b, HostMAC: m.rb},
	}
	paths := map[string]*Datapath{}
	for _, c := range configs[1:] {
		local[c.name] = c.local
		cfg := DefaultConfig()
		cfg.LocalDelivery = c.local
		cfg.PinDir = filepath.Join("/sys/fs/bpf/palisade", fmt.Sprintf("bench-%d-%s", os.Getpid(), c.name))
		d, err := Open(cfg, quietLogger())
		if err != nil {
			b.Fatalf("open: %+v", err)
		}
		b.Cleanup(func() { d.Destroy() })
		start := time.Now()
		if err := d.ApplyTable(benchTable(c.rules)); err != nil {
			b.Fatalf("apply %d rules: %v", c.rules, err)
		}
		b.Logf("%s: table applied in %s", c.name, time.Since(start).Round(time.Millisecond))
		if c.rules == 100000 {
			runtime.GC()
			b.Logf("at rest with %d verdicts (%d policy prefixes): process RSS %.1f MiB, BPF map memory %.1f MiB",
				c.rules, d.policyCount, float64(rssBytes())/(1<<20), float64(mapMemory())/(1<<20))
		}
		paths[c.name] = d
	}
	// empty is a program that returns at once, attached where the
	// datapath's programs go: what the hooks cost by themselves.
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}}) // TCX_NEXT
	if err != nil {
		b.Fatalf("load empty program: %v", err)
	}
	defer empty.Close()
	var emptyLinks []link.Link
	attached := ""
	use := func(name string) {
		if name == attached {
			return
		}
		inNetns(b, n.r, func() {
			if d := paths[attached]; d != nil {
				if err := errors.Join(d.DetachInterface(n.raIf), d.DetachInterface(n.rbIf)); err != nil {
					b.Fatalf("detach: %v", err)
				}
			}
			for _, l := range emptyLinks {
				if err := l.Close(); err != nil {
					b.Fatalf("detach empty program: %v", err)
				}
			}
			emptyLinks = nil
			if name == "empty" {
				for _, ifindex := range []int{n.raIf, n.rbIf} {
					for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
						l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: empty, Attach: at})
						if err != nil {
							b.Fatalf("attach empty program: %v", err)
						}
						emptyLinks = append(emptyLinks, l)
					}
				}
			}
			if d := paths[name]; d != nil {
				if err := d.AttachInterface(n.raIf, idA); err != nil {
					b.Fatalf("attach: %v", err)
				}
				if err := d.AttachInterface(n.rbIf, idB); err != nil {
					b.Fatalf("attach: %v", err)
				}
				for _, ep := range localEndpoints {
					if !local[name] {
						break
					}
					if err := d.SetLocalEndpoint(ep); err != nil {
						b.Fatalf("set local endpoint: %v", err)
					}
				}
			}
		})
		attached = name
	}

	others := []string{"empty"}
	for _, c := range configs[1:] {
		others = append(others, c.name)
	}
	pairedRR(b, n, configs[0].name, others, use)

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable program stats: %v", err)
	}
	defer stats.Close()
	// progCost returns the programs' total run time and run count.
	progCost := func() (time.Duration, uint64) {
		var t time.Duration
		var n uint64
		for _, d := range paths {
			for _, p := range []*ebpf.Program{d.objs.PalisadeTcxIngress, d.objs.PalisadeTcxEgress} {
				st, err := p.Stats()
				if err != nil {
					b.Fatalf("program stats: %v", err)
				}
				t += st.Runtime
				n += st.RunCount
			}
		}
		return t, n
	}

	phases := []struct {
		name, unit string
		run        func(b *testing.B) float64
	}{
		{"rr", "trans/s", func(b *testing.B) float64 {
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
			return float64(b.N) / b.Elapsed().Seconds()
		}},
		{"crr", "conn/s", func(b *testing.B) float64 {
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
			return float64(b.N) / b.Elapsed().Seconds()
		}},
		{"bulk", "Gbit/s", func(b *testing.B) float64 {
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
			return float64(b.N) * float64(len(chunk)) * 8 / b.Elapsed().Seconds() / 1e9
		}},
	}
	// value[phase][config] holds one figure per round, cost[phase][config]
	// the programs' run time per packet in that phase.
	value := map[string]map[string][]float64{}
	cost := map[string]map[string][]float64{}
	for _, ph := range phases {
		value[ph.name], cost[ph.name] = map[string][]float64{}, map[string][]float64{}
	}
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("PALISADE_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	for round := 1; round <= rounds; round++ {
		for _, ph := range phases {
			for k := range configs {
				c := configs[(k+round-1)%len(configs)] // rotate who goes first
				use(c.name)
				t0, n0 := progCost()
				var last float64
				b.Run(fmt.Sprintf("round%d/%s/%s", round, c.name, ph.name), func(b *testing.B) {
					last = ph.run(b)
					b.ReportMetric(last, ph.unit)
				})
				value[ph.name][c.name] = append(value[ph.name][c.name], last)
				if t1, n1 := progCost(); n1 > n0 {
					cost[ph.name][c.name] = append(cost[ph.name][c.name], float64(t1-t0)/float64(n1-n0))
				}
			}
		}
	}
	use("none")
	// Each configuration took the path its name says.
	for name, d := range paths {
		c, err := d.Counters()
		if err != nil {
			b.Fatalf("counters: %v", err)
		}
		if (c.LocalRedirected > 0) != local[name] {
			b.Fatalf("%s: %d packets delivered locally, want local delivery %v", name, c.LocalRedirected, local[name])
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
	// ratio is the median over rounds of a configuration's figure as a
	// percentage of the no-program figure of the same round.
	ratio := func(phase, config string) float64 {
		var r []float64
		for i, v := range value[phase][config] {
			if base := value[phase]["none"]; i < len(base) && base[i] > 0 {
				r = append(r, 100*v/base[i])
			}
		}
		return median(r)
	}
	for _, c := range configs {
		b.Logf("%-9s median of %d: rr %.0f/s (%.1f%%)  crr %.0f/s (%.1f%%)  bulk %.2f Gbit/s (%.1f%%)  program ns/packet: rr %.0f crr %.0f bulk %.0f",
			c.name, rounds,
			median(value["rr"][c.name]), ratio("rr", c.name),
			median(value["crr"][c.name]), ratio("crr", c.name),
			median(value["bulk"][c.name]), ratio("bulk", c.name),
			median(cost["rr"][c.name]), median(cost["crr"][c.name]), median(cost["bulk"][c.name]))
		// The same as benchmark lines, for bench/results.md.
		b.Run("ratio/"+c.name, func(b *testing.B) {
			b.ReportMetric(ratio("rr", c.name), "rr-%")
			b.ReportMetric(ratio("crr", c.name), "crr-%")
			b.ReportMetric(ratio("bulk", c.name), "bulk-%")
			b.ReportMetric(median(cost["rr"][c.name]), "rr-prog-ns/pkt")
			b.ReportMetric(median(cost["crr"][c.name]), "crr-prog-ns/pkt")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// pairedRR measures request/response on one established connection per
// configuration in short samples that alternate between the baseline and
// the configurations, many times, with the programs' run-time statistics
// off (they add two clock reads to every run). Each sample of a
// configuration is compared with the baseline sample taken right before
// or after it, and the figure is the median of those ratios: a second of
// other work on the machine lowers both sides of a pair, not one ratio.
// PALISADE_BENCH_PAIRS sets the number of cycles (default 60).
func pairedRR(b *testing.B, n *testNet, base string, configs []string, use func(string)) {
	cycles := 60
	if v, err := strconv.Atoi(os.Getenv("PALISADE_BENCH_PAIRS")); err == nil && v > 0 {
		cycles = v
	}
	const sample = 100 * time.Millisecond
	all := append([]string{base}, configs...)
	conns := map[string]net.Conn{}
	for _, c := range all {
		conn, err := benchDial(b, n.a, "10.199.2.2:8080")
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		conns[c] = conn
	}
	buf := []byte{1}
	rate := func(conn net.Conn) float64 {
		start := time.Now()
		k := 0
		for ; k%64 != 0 || time.Since(start) < sample; k++ {
			if _, err := conn.Write(buf); err != nil {
				b.Fatalf("write: %v", err)
			}
			if _, err := io.ReadFull(conn, buf); err != nil {
				b.Fatalf("read: %v", err)
			}
		}
		return float64(k) / time.Since(start).Seconds()
	}
	// Warm every connection up under its own configuration.
	for _, c := range all {
		use(c)
		rate(conns[c])
	}
	ratios := map[string][]float64{}
	for cycle := 0; cycle < cycles; cycle++ {
		got := map[string]float64{}
		for k := range all {
			c := all[(k+cycle)%len(all)] // rotate who goes first
			use(c)
			got[c] = rate(conns[c])
		}
		for _, c := range configs {
			ratios[c] = append(ratios[c], 100*got[c]/got[base])
		}
	}
	use(base)
	for _, c := range configs {
		r := slices.Clone(ratios[c])
		slices.Sort(r)
		med, q1, q3 := r[len(r)/2], r[len(r)/4], r[3*len(r)/4]
		b.Logf("%-9s rr in %d paired samples of %s: median %.1f%% of %s (quartiles %.1f%%, %.1f%%)", c, cycles, sample, med, base, q1, q3)
		b.Run("paired/"+c, func(b *testing.B) {
			b.ReportMetric(med, "rr-%")
			b.ReportMetric(q1, "rr-q1-%")
			b.ReportMetric(q3, "rr-q3-%")
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
	n.attach(b, d)
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
