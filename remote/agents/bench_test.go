package agents

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

const benchPolicy = `apiVersion: palisade.dev/v1
kind: GroupDefinition
metadata: {name: db}
spec:
  selector:
    name: db
    criteria: [{key: app, op: "=", value: db}]
---
apiVersion: palisade.dev/v1
kind: SecurityRule
metadata: {name: web, namespace: shop}
spec:
  target:
    selector:
      name: web
      criteria: [{key: app, op: "=", value: web}]
  egress:
  - {name: web-to-db, selector: {name: db}, ports: tcp/%d, action: allow}
`

// BenchmarkCommitToAgents measures the time from a rule commit on the
// controller (a policy apply that changes the port of a rule) to the new
// verdict being in the table of each of 100 agents connected over real
// QUIC in this process. Each agent runs one workload, half of them in the
// rule's source group and half in its destination group, so every agent
// receives the change.
func BenchmarkCommitToAgents(b *testing.B) {
	const agents = 100
	f := newFixture(b, func(c *Config) { c.Logger = nil })
	addr := f.m.cfg.Addr
	ctx := context.Background()
	if _, err := f.ps.ApplyYAML(ctx, fmt.Appendf(nil, benchPolicy, 1000), policystore.ApplyOptions{User: "bench"}); err != nil {
		b.Fatal(err)
	}
	var target atomic.Uint32
	var mu sync.Mutex
	var lat []time.Duration
	var start atomic.Int64
	var pending sync.WaitGroup
	var readers sync.WaitGroup
	as := make([]*testAgent, agents)
	for i := range agents {
		node := fmt.Sprintf("n%03d", i)
		a, msg := enroll(b, addr, f.tok, node)
		if msg.Type() != agentproto.TypeEnrolled {
			b.Fatalf("enroll: %+v", msg)
		}
		if msg := a.connect(b, addr, node); msg.Type() != agentproto.TypeTable {
			b.Fatalf("hello: %+v", msg)
		}
		app := "web"
		if i%2 == 1 {
			app = "db"
		}
		ip := netip.AddrFrom4([4]byte{10, 232, byte(i / 250), byte(i%250 + 1)})
		if err := a.enc.Encode(&agentproto.Workloads{Workloads: []agentproto.Workload{{ID: "shop/" + node, Name: node, Namespace: "shop",
			Labels: map[string]string{"app": app}, Addresses: []netip.Addr{ip}}}}); err != nil {
			b.Fatal(err)
		}
		as[i] = a
	}
	has := func(t *compile.Table, port uint16) bool {
		return slices.ContainsFunc(t.Verdicts, func(v compile.Verdict) bool { return v.PortLo == port && v.PortHi == port })
	}
	// Wait until every agent holds the first rule, then read diffs in the
	// background.
	// Every agent must also know every workload's address, so that no
	// workload report is still being compiled when the timing starts.
	for _, a := range as {
		a.until(b, "first rule and every endpoint", func(t *compile.Table) bool { return has(t, 1000) && len(t.Endpoints) >= agents })
	}
	for _, a := range as {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var seen uint32
			for {
				msg, err := a.dec.Decode()
				if err != nil {
					return
				}
				a.apply(b, msg)
				if p := target.Load(); p != seen && has(a.table, uint16(p)) {
					seen = p
					d := time.Duration(time.Now().UnixNano() - start.Load())
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
					pending.Done()
				}
			}
		}()
	}
	b.ResetTimer()
	for i := range b.N {
		port := 1001 + i%60000
		pending.Add(agents)
		start.Store(time.Now().UnixNano())
		target.Store(uint32(port))
		if _, err := f.ps.ApplyYAML(ctx, fmt.Appendf(nil, benchPolicy, port), policystore.ApplyOptions{User: "bench"}); err != nil {
			b.Fatal(err)
		}
		applied := time.Since(time.Unix(0, start.Load()))
		done := make(chan struct{})
		go func() { pending.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			f.m.sessMu.Lock()
			n := len(f.m.sessions)
			f.m.sessMu.Unlock()
			b.Fatalf("iteration %d: the change to port %d did not reach every agent within 30s (%d sessions open)", i, port, n)
		}
		if testing.Verbose() {
			b.Logf("iteration %d: apply %s, all agents %s", i, applied, time.Since(time.Unix(0, start.Load())))
		}
	}
	b.StopTimer()
	for _, a := range as {
		a.close()
	}
	readers.Wait()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	}
}
