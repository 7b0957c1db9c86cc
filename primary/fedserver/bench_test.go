package fedserver_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/pki"
)

// The benchmark runs the primary in the benchmark process and the
// simulated remotes in a child process (this test binary again, selected by
// environment), so the primary's memory per connected remote can be read
// from its own resident set. Every simulated remote is a real QUIC + TLS
// client on loopback that speaks the protocol: Hello, then an Ack per Delta.

const (
	envChildIDs  = "PALISADE_FEDBENCH_IDS"
	envChildAddr = "PALISADE_FEDBENCH_ADDR"
)

type benchID struct {
	Name    string `json:"name"`
	CertPEM []byte `json:"cert"`
	KeyPEM  []byte `json:"key"`
	CAPEM   []byte `json:"ca"`
}

func BenchmarkCommitToAck(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("remotes=%d", n), func(b *testing.B) { benchFleet(b, n) })
	}
}

// fleet is a primary with n simulated remotes connected. Ack accounting is
// lock-free so that it does not queue the server's ack readers behind one
// mutex.
type fleet struct {
	p     *primary
	n     int
	index map[string]int // remote name -> slot, read-only once running

	commitAt []atomic.Int64 // revision -> commit time (unix ns)
	acks     []atomic.Int32 // revision -> remotes that acked it
	done     []chan struct{}
	lat      [][]time.Duration // per remote, appended by its own ack reader
	burst    atomic.Bool       // latencies of a burst measure queueing
}

func newFleet(n, maxRev int) *fleet {
	f := &fleet{n: n, index: map[string]int{}, commitAt: make([]atomic.Int64, maxRev+1),
		acks: make([]atomic.Int32, maxRev+1), done: make([]chan struct{}, maxRev+1), lat: make([][]time.Duration, n)}
	for i := range f.done {
		f.done[i] = make(chan struct{})
	}
	return f
}

func (f *fleet) onAck(name string, rev uint64) {
	now := time.Now().UnixNano()
	if rev >= uint64(len(f.commitAt)) {
		return
	}
	t0 := f.commitAt[rev].Load()
	if t0 == 0 {
		return
	}
	if i, ok := f.index[name]; ok && !f.burst.Load() {
		f.lat[i] = append(f.lat[i], time.Duration(now-t0))
	}
	if f.acks[rev].Add(1) == int32(f.n) {
		close(f.done[rev])
	}
}

// commit writes one revision (this benchmark is the log's only writer, so
// the revision is known before the commit).
func (f *fleet) commit(b *testing.B, i int) <-chan struct{} {
	rev := f.p.log.Revision() + 1
	f.commitAt[rev].Store(time.Now().UnixNano())
	if got := f.p.log.Put(fmt.Sprintf("fed/rules/r%d", i%50), []byte(strings.Repeat("x", 200)+strconv.Itoa(i))); got != rev {
		b.Fatalf("committed revision %d, expected %d", got, rev)
	}
	return f.done[rev]
}

func benchFleet(b *testing.B, n int) {
	const burst = 200
	f := newFleet(n, b.N+burst+2)
	f.p = startPrimary(b, func(c *fedserver.Config) {
		c.OnAck = f.onAck
		c.PingInterval = time.Minute
	})
	f.p.log.Put("fed/rules/seed", []byte("seed"))

	ids := make([]benchID, n)
	for i := range ids {
		name := fmt.Sprintf("r%04d", i)
		key, keyPEM, err := pki.NewKey()
		if err != nil {
			b.Fatal(err)
		}
		leaf, err := f.p.ca.Issue(pki.LeafRequest{CommonName: name, Organization: "remote", Client: true, Validity: time.Hour, PublicKey: key.Public()})
		if err != nil {
			b.Fatal(err)
		}
		if err := f.p.members.Add(context.Background(), fedserver.Member{Name: name, CertFingerprint: pki.Fingerprint(leaf.Cert)}); err != nil {
			b.Fatal(err)
		}
		ids[i] = benchID{Name: name, CertPEM: leaf.CertPEM, KeyPEM: keyPEM, CAPEM: f.p.ca.CertPEM}
		f.index[name] = i
	}
	idFile := filepath.Join(b.TempDir(), "ids.json")
	raw, _ := json.Marshal(ids)
	if err := os.WriteFile(idFile, raw, 0o600); err != nil {
		b.Fatal(err)
	}

	runtime.GC()
	debug.FreeOSMemory()
	rssBefore, heapBefore := rss(b), heapInuse()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildIDs+"="+idFile, envChildAddr+"="+f.p.srv.Addr().String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child exits when its stdin closes
		if err := cmd.Wait(); err != nil {
			b.Errorf("remotes process: %v", err)
		}
	}()
	start := time.Now()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || !strings.HasPrefix(line, "ready") {
		b.Fatalf("remotes process: %q %v", line, err)
	}
	seedRev := f.p.log.Revision()
	for {
		acked := 0
		for _, st := range f.p.srv.Status() {
			if st.Connected && st.AckedRevision >= seedRev {
				acked++
			}
		}
		if acked == n {
			break
		}
		if time.Since(start) > 3*time.Minute {
			b.Fatalf("only %d of %d remotes connected and synced", acked, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	connectTime := time.Since(start)
	runtime.GC()
	debug.FreeOSMemory()
	rssAfter, heapAfter := rss(b), heapInuse()

	// Latency: one commit at a time, each acked by every remote.
	var fleetLat []time.Duration
	cpuBefore := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		done := f.commit(b, i)
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatalf("commit %d not acked by every remote within a minute", i)
		}
		fleetLat = append(fleetLat, time.Since(t0))
	}
	b.StopTimer()

	// Throughput: a burst of commits, until every remote acked the last.
	f.burst.Store(true)
	t0 := time.Now()
	var last <-chan struct{}
	for i := range burst {
		last = f.commit(b, b.N+i)
	}
	<-last
	burstTime := time.Since(t0)
	primaryCPU := cpuTime(b) - cpuBefore

	var lat []time.Duration
	for _, l := range f.lat {
		lat = append(lat, l...)
	}
	slices.Sort(lat)
	slices.Sort(fleetLat)
	if testing.Verbose() {
		b.Logf("fleet latencies (sorted): %v", fleetLat)
	}
	b.ReportMetric(ms(pct(lat, 50)), "p50-ms")
	b.ReportMetric(ms(pct(lat, 99)), "p99-ms")
	b.ReportMetric(ms(pct(fleetLat, 99)), "fleet-p99-ms")
	b.ReportMetric(float64(burst)/burstTime.Seconds(), "commits/s")
	b.ReportMetric(float64(burst*n)/burstTime.Seconds(), "deltas/s")
	b.ReportMetric(float64(rssAfter-rssBefore)/float64(n)/1024, "rss-KiB/remote")
	b.ReportMetric(float64(heapAfter-heapBefore)/float64(n)/1024, "heap-KiB/remote")
	b.ReportMetric(connectTime.Seconds(), "connect-s")
	b.ReportMetric(float64(primaryCPU.Microseconds())/float64((b.N+burst)*n), "primary-cpu-us/delta")
	b.ReportMetric(0, "ns/op")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// cpuTime is the user and system CPU time of this process (the primary).
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// rss reads this process's resident set size in bytes.
func rss(tb testing.TB) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb * 1024
		}
	}
	tb.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// runBenchRemotes is the child process: it connects every identity and
// acks everything it receives until its stdin closes.
func runBenchRemotes() error {
	raw, err := os.ReadFile(os.Getenv(envChildIDs))
	if err != nil {
		return err
	}
	var ids []benchID
	if err := json.Unmarshal(raw, &ids); err != nil {
		return err
	}
	addr := os.Getenv(envChildAddr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 16) // connect a few at a time
	for _, id := range ids {
		sem <- struct{}{}
		conn, str, err := benchConnect(ctx, addr, id)
		<-sem
		if err != nil {
			return fmt.Errorf("%s: %w", id.Name, err)
		}
		wg.Go(func() {
			defer conn.CloseWithError(0, "")
			if err := benchAckLoop(str); err != nil && ctx.Err() == nil {
				fmt.Fprintf(os.Stderr, "remote %s: %v\n", id.Name, err)
			}
		})
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	return nil
}

func benchConnect(ctx context.Context, addr string, id benchID) (*quic.Conn, *quic.Stream, error) {
	pair, err := tls.X509KeyPair(id.CertPEM, id.KeyPEM)
	if err != nil {
		return nil, nil, err
	}
	ca, err := pki.ParseCert(id.CAPEM)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	tc := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, NextProtos: []string{fedserver.ALPN}, MinVersion: tls.VersionTLS13}
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	conn, err := quic.DialAddr(dctx, addr, tc, &quic.Config{MaxIdleTimeout: time.Minute, KeepAlivePeriod: 20 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	context.AfterFunc(ctx, func() { conn.CloseWithError(0, "") })
	str, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return nil, nil, err
	}
	if err := fedproto.NewEncoder(str).Encode(&fedproto.Hello{Version: fedproto.Current(), Cluster: id.Name}); err != nil {
		return nil, nil, err
	}
	return conn, str, nil
}

func benchAckLoop(str *quic.Stream) error {
	enc, dec := fedproto.NewEncoder(str), fedproto.NewDecoder(str, 0)
	for {
		m, err := dec.ReadMessage()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *fedproto.Delta:
			err = enc.Encode(&fedproto.Ack{Revision: m.Revision, Healthy: true})
		case *fedproto.Snapshot:
			if m.Last {
				err = enc.Encode(&fedproto.Ack{Revision: m.Revision, Healthy: true})
			}
		case *fedproto.Ping:
			err = enc.Encode(&fedproto.Pong{Nonce: m.Nonce})
		}
		if err != nil {
			return err
		}
	}
}
