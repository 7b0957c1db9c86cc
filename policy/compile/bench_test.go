package compile

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

// benchInput is a cluster of 5,000 workloads (500 services of 10 replicas in
// 50 namespaces on 50 nodes) with 10,000 rules between service, namespace,
// label and address groups.
func benchInput(nRules int) Input {
	r := rand.New(rand.NewPCG(42, 42))
	var set policy.Set
	const services, replicas, namespaces, nodes = 500, 10, 50, 50
	var groups []string
	for s := range services {
		name := fmt.Sprintf("svc%d.ns%d", s, s%namespaces)
		set.Groups = append(set.Groups, group(name, policy.SourceLearned,
			crit(policy.KeyService, fmt.Sprintf("svc%d", s)), crit(policy.KeyNamespace, fmt.Sprintf("ns%d", s%namespaces))))
		groups = append(groups, name)
	}
	for n := range namespaces {
		name := fmt.Sprintf("ns-%d", n)
		set.Groups = append(set.Groups, group(name, policy.SourceUser, crit(policy.KeyNamespace, fmt.Sprintf("ns%d", n))))
		groups = append(groups, name)
	}
	for l := range 20 {
		name := fmt.Sprintf("tier-%d", l)
		set.Groups = append(set.Groups, group(name, policy.SourceCode, label("tier", fmt.Sprintf("t%d", l))))
		groups = append(groups, name)
	}
	for a := range 10 {
		name := fmt.Sprintf("net-%d", a)
		set.Groups = append(set.Groups, group(name, policy.SourceUser, crit(policy.KeyAddress, fmt.Sprintf("198.51.%d.0/24", a))))
		groups = append(groups, name)
	}
	groups = append(groups, "external", "nodes")
	ports := []string{"tcp/80", "tcp/443", "udp/53", "tcp/8000-8100", "tcp/5432", "tcp/6379", "any", "tcp/9090,tcp/9091"}
	srcs := []policy.Source{policy.SourceCode, policy.SourceUser, policy.SourceLearned, policy.SourceLearned}
	for i := range nRules {
		a := policy.ActionAllow
		if i%10 == 0 {
			a = policy.ActionDeny
		}
		// Most rules connect two services; some involve wider groups.
		from, to := groups[r.IntN(services)], groups[r.IntN(services)]
		if i%20 == 0 {
			from = groups[r.IntN(len(groups))]
		}
		if i%25 == 0 {
			to = groups[r.IntN(len(groups))]
		}
		p := ports[r.IntN(len(ports))]
		if a == policy.ActionDeny {
			p = "tcp/22,tcp/23" // denies never repeat an allow's ports
		}
		set.NetworkRules = append(set.NetworkRules, rule(fmt.Sprintf("rule-%05d", i), srcs[i%len(srcs)], from, to, p, a))
	}
	in := Input{Policy: &set}
	for n := range nodes {
		in.Nodes = append(in.Nodes, Node{Name: fmt.Sprintf("node-%02d", n), Addresses: []netip.Addr{netip.AddrFrom4([4]byte{192, 168, 0, byte(n + 1)})}})
	}
	i := 0
	for s := range services {
		for k := range replicas {
			in.Workloads = append(in.Workloads, policy.Workload{
				ID: fmt.Sprintf("ns%d/svc%d-%d", s%namespaces, s, k), Namespace: fmt.Sprintf("ns%d", s%namespaces), Service: fmt.Sprintf("svc%d", s),
				Labels: map[string]string{"tier": fmt.Sprintf("t%d", s%20)}, Node: fmt.Sprintf("node-%02d", r.IntN(nodes)),
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			})
			i++
		}
	}
	return in
}

func BenchmarkCompileFull(b *testing.B) {
	in := benchInput(10000)
	var tb *Table
	for b.Loop() {
		var err error
		if tb, err = Compile(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(tb.Verdicts)), "verdicts")
	b.ReportMetric(float64(len(tb.Identities)), "identities")
}

func loadedCompiler(b *testing.B) (*Compiler, Input) {
	in := benchInput(10000)
	c := NewCompiler()
	if _, err := c.Load(in); err != nil {
		b.Fatal(err)
	}
	return c, in
}

// BenchmarkIncrementalRuleChange changes the ports of one rule per
// iteration and measures the recompute, including the cluster and per-node
// deltas agents receive.
func BenchmarkIncrementalRuleChange(b *testing.B) {
	c, in := loadedCompiler(b)
	r := in.Policy.NetworkRules[1234]
	ports := []string{"tcp/80", "tcp/81"}
	i := 0
	for b.Loop() {
		r.Ports = ports[i%2]
		i++
		d, err := c.UpsertNetworkRule(r)
		if err != nil {
			b.Fatal(err)
		}
		if d.Cluster.Empty() {
			b.Fatal("empty delta")
		}
	}
}

// BenchmarkIncrementalWorkloadChange relabels one workload per iteration so
// that it moves between identities.
func BenchmarkIncrementalWorkloadChange(b *testing.B) {
	c, in := loadedCompiler(b)
	w := in.Workloads[777]
	tiers := []string{"t3", "t4"}
	i := 0
	for b.Loop() {
		w.Labels = map[string]string{"tier": tiers[i%2]}
		i++
		d, err := c.UpsertWorkload(w)
		if err != nil {
			b.Fatal(err)
		}
		if d.Cluster.Empty() {
			b.Fatal("empty delta")
		}
	}
}

// BenchmarkIncrementalWorkloadAdd adds a replica of an existing service
// (its identity already exists) and removes it again.
func BenchmarkIncrementalWorkloadAdd(b *testing.B) {
	c, in := loadedCompiler(b)
	w := in.Workloads[10]
	w.ID, w.Addresses = "extra", []netip.Addr{netip.MustParseAddr("10.250.0.1")}
	for b.Loop() {
		if _, err := c.UpsertWorkload(w); err != nil {
			b.Fatal(err)
		}
		c.DeleteWorkload(w.ID)
	}
}

func BenchmarkDiffFullTables(b *testing.B) {
	c, in := loadedCompiler(b)
	old := c.Table()
	r := in.Policy.NetworkRules[99]
	r.Ports = "tcp/1"
	if _, err := c.UpsertNetworkRule(r); err != nil {
		b.Fatal(err)
	}
	cur := c.Table()
	for b.Loop() {
		d := Diff(old, cur)
		if d.Empty() {
			b.Fatal("empty diff")
		}
	}
}

func BenchmarkNodeTable(b *testing.B) {
	c, _ := loadedCompiler(b)
	for b.Loop() {
		c.NodeTable("node-07")
	}
}
