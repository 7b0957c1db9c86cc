package compile

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/palisade-sec/palisade/policy"
)

// mirror keeps the input an incremental compiler has seen, to compare it
// with a full compile.
type mirror struct {
	in Input
}

func (m *mirror) setWorkload(w policy.Workload) {
	for i := range m.in.Workloads {
		if m.in.Workloads[i].ID == w.ID {
			m.in.Workloads[i] = w
			return
		}
	}
	m.in.Workloads = append(m.in.Workloads, w)
}

func (m *mirror) nodes() []string {
	var out []string
	for _, w := range m.in.Workloads {
		out = append(out, w.Node)
	}
	for _, n := range m.in.Nodes {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestIncrementalMatchesFullCompile(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	in := synthetic(r, 80, 60, 16)
	c := NewCompiler()
	if _, err := c.Load(in); err != nil {
		t.Fatal(err)
	}
	m := &mirror{in: in}
	p := *in.Policy
	m.in.Policy = &p
	steps := 150
	if testing.Short() {
		steps = 60
	}
	for step := range steps {
		before := c.Table()
		nodesBefore := map[string]*Table{}
		allNodes := m.nodes()
		for _, n := range allNodes {
			nodesBefore[n] = c.NodeTable(n)
		}
		desc, d := randomChange(t, r, c, m, step)
		got := c.Table()
		want := mustCompile(t, m.in)
		if !reflect.DeepEqual(got, want) {
			dd := Diff(want, got)
			t.Fatalf("step %d (%s): incremental table differs from a full compile: %+v", step, desc, dd)
		}
		if applied := d.Cluster.Apply(before); !reflect.DeepEqual(applied, got) {
			t.Fatalf("step %d (%s): cluster delta does not turn the old table into the new one: missing %+v", step, desc, Diff(applied, got))
		}
		for n := range union(toSet(allNodes), toSet(m.nodes())) {
			// A node the cluster did not know starts from the shared part.
			old := before.ForNode(n)
			if nb := nodesBefore[n]; nb != nil && !reflect.DeepEqual(nb, old) {
				t.Fatalf("step %d: NodeTable(%s) before differs from Table().ForNode", step, n)
			}
			nd := d.ForNode(n)
			applied := nd.Apply(old)
			nt := c.NodeTable(n)
			if !reflect.DeepEqual(nt, got.ForNode(n)) {
				t.Fatalf("step %d (%s): NodeTable(%s) differs from Table().ForNode: %+v", step, desc, n, Diff(got.ForNode(n), nt))
			}
			if !reflect.DeepEqual(applied, nt) {
				t.Fatalf("step %d (%s): node %s delta wrong: %+v", step, desc, n, Diff(applied, nt))
			}
		}
	}
}

func toSet(s []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}

func randomChange(t *testing.T, r *rand.Rand, c *Compiler, m *mirror, step int) (string, *Delta) {
	t.Helper()
	set := m.in.Policy
	must := func(d *Delta, err error) *Delta {
		t.Helper()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		return d
	}
	switch k := r.IntN(11); k {
	case 0, 1: // change a workload's labels, node or addresses
		if len(m.in.Workloads) == 0 {
			return "noop", c.SetDefaults(set.Defaults)
		}
		w := m.in.Workloads[r.IntN(len(m.in.Workloads))]
		w.Labels = map[string]string{"tier": []string{"front", "back", "none"}[r.IntN(3)]}
		if r.IntN(2) == 0 {
			w.Node = fmt.Sprintf("node%d", r.IntN(4))
		}
		if r.IntN(3) == 0 {
			w.Addresses = addrs(fmt.Sprintf("10.200.%d.%d", r.IntN(4), r.IntN(250)))
		}
		m.setWorkload(w)
		return "change workload " + w.ID, must(c.UpsertWorkload(w))
	case 2: // new workload
		w := policy.Workload{ID: fmt.Sprintf("new%d", step), Namespace: fmt.Sprintf("ns%d", r.IntN(5)), Service: fmt.Sprintf("svc%d", r.IntN(18)),
			Node: fmt.Sprintf("node%d", r.IntN(4)), Addresses: addrs(fmt.Sprintf("10.201.%d.%d", step/250, step%250))}
		m.setWorkload(w)
		return "new workload", must(c.UpsertWorkload(w))
	case 3: // delete a workload
		if len(m.in.Workloads) == 0 {
			return "noop", c.SetDefaults(set.Defaults)
		}
		i := r.IntN(len(m.in.Workloads))
		id := m.in.Workloads[i].ID
		m.in.Workloads = slices.Delete(m.in.Workloads, i, i+1)
		return "delete workload " + id, c.DeleteWorkload(id)
	case 4, 5: // change or add a rule
		ports := []string{"tcp/80", "tcp/81-90", "udp/53", "any", "tcp/443"}[r.IntN(5)]
		groups := append([]string{"external", "nodes"}, groupNames(set)...)
		nr := rule(fmt.Sprintf("r%d", r.IntN(80)), []policy.Source{policy.SourceCode, policy.SourceUser, policy.SourceLearned}[r.IntN(3)],
			groups[r.IntN(len(groups))], groups[r.IntN(len(groups))], ports, []policy.Action{policy.ActionAllow, policy.ActionDeny}[r.IntN(2)])
		if r.IntN(4) == 0 {
			nr.Applications = []string{"HTTP"}
		}
		set.NetworkRules = slices.DeleteFunc(set.NetworkRules, func(x policy.NetworkRule) bool { return x.Name == nr.Name })
		// Keep the set valid: no opposite-action duplicate of another rule.
		trial := *set
		trial.NetworkRules = append(slices.Clone(set.NetworkRules), nr)
		if trial.Validate() != nil {
			nr.Disabled = true
		}
		set.NetworkRules = append(set.NetworkRules, nr)
		return "upsert rule " + nr.Name, must(c.UpsertNetworkRule(nr))
	case 6: // delete a rule
		if len(set.NetworkRules) == 0 {
			return "noop", c.SetDefaults(set.Defaults)
		}
		i := r.IntN(len(set.NetworkRules))
		name := set.NetworkRules[i].Name
		set.NetworkRules = slices.Delete(set.NetworkRules, i, i+1)
		return "delete rule " + name, c.DeleteNetworkRule(name)
	case 7: // change a group's criteria or mode
		i := r.IntN(len(set.Groups))
		g := set.Groups[i]
		g.Criteria = slices.Clone(g.Criteria)
		switch {
		case g.Criteria[0].Key == policy.KeyAddress:
			g.Criteria = []policy.Criterion{crit(policy.KeyAddress, []string{"203.0.113.0/24", "203.0.113.64/26", "10.200.0.0/16", "*.x.example"}[r.IntN(4)])}
		case r.IntN(2) == 0:
			g.Criteria = []policy.Criterion{label("tier", []string{"front", "back", "none"}[r.IntN(3)])}
		default:
			g.NetworkMode = []policy.Mode{"", policy.ModeMonitor, policy.ModeProtect}[r.IntN(3)]
			g.Baseline = []policy.Baseline{"", policy.BaselineZeroDrift}[r.IntN(2)]
		}
		set.Groups[i] = g
		return "change group " + g.Name, must(c.UpsertGroup(g))
	case 8: // defaults
		set.Defaults.NetworkMode = []policy.Mode{policy.ModeDiscover, policy.ModeMonitor, policy.ModeProtect}[r.IntN(3)]
		return "defaults", c.SetDefaults(set.Defaults)
	case 9: // process rule
		groups := groupNames(set)
		pr := policy.ProcessRule{Meta: policy.Meta{Name: fmt.Sprintf("p%d", r.IntN(10)), Source: policy.SourceUser}, Group: groups[r.IntN(len(groups))],
			Process: "sh", Path: []string{"/bin/sh", "/bin/bash"}[r.IntN(2)], Action: policy.ActionAllow}
		set.ProcessRules = slices.DeleteFunc(set.ProcessRules, func(x policy.ProcessRule) bool { return x.Name == pr.Name })
		set.ProcessRules = append(set.ProcessRules, pr)
		return "process rule " + pr.Name, c.UpsertProcessRule(pr)
	default: // node addresses
		n := Node{Name: fmt.Sprintf("node%d", r.IntN(4)), Addresses: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("192.168.2.%d", r.IntN(4)+1))}}
		m.in.Nodes = slices.DeleteFunc(m.in.Nodes, func(x Node) bool { return x.Name == n.Name })
		if r.IntN(3) == 0 {
			return "delete node " + n.Name, c.DeleteNode(n.Name)
		}
		m.in.Nodes = append(m.in.Nodes, n)
		return "upsert node " + n.Name, must(c.UpsertNode(n))
	}
}

func groupNames(s *policy.Set) []string {
	var out []string
	for _, g := range s.Groups {
		out = append(out, g.Name)
	}
	return out
}
