// Package learn turns observed network flows into learned groups and
// learned allow rules, the way Discover mode builds a whitelist: repeats
// merge into one rule per pair of groups, a pair that uses many ports is
// widened to every port of the protocol, and nothing is learned that an
// existing rule already covers. It is pure and deterministic: the same
// policy and flows give the same result in any order.
package learn

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/palisade-sec/palisade/policy"
)

// ErrBadConfig is returned for an invalid Config.
var ErrBadConfig = errors.New("learn: bad config")

// Config tunes learning.
type Config struct {
	// PortThreshold is the most distinct ports of one protocol a learned
	// rule lists; one more and the rule covers every port of that protocol.
	PortThreshold int
	// GroupPrefix starts the name of every learned group and rule.
	GroupPrefix string
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config { return Config{PortThreshold: 16, GroupPrefix: "learned"} }

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.PortThreshold < 1 || c.PortThreshold > 1024 {
		return fmt.Errorf("%w: PortThreshold %d is not within 1..1024", ErrBadConfig, c.PortThreshold)
	}
	if err := policy.CheckName(c.GroupPrefix); err != nil {
		return fmt.Errorf("%w: GroupPrefix: %v", ErrBadConfig, err)
	}
	return nil
}

// Endpoint is one end of a flow: a workload, a node, or an address.
type Endpoint struct {
	// Workload is set when the end is a workload.
	Workload *policy.Workload
	// Node is true when the end is a cluster node (host network).
	Node bool
	// Addr is the address, used when the end is not a workload.
	Addr netip.Addr
}

// Flow is one observed connection.
type Flow struct {
	Src, Dst Endpoint
	Proto    uint8
	Port     uint16
	// App is the detected L7 protocol, empty when none was detected.
	App string
}

// Result is what learning adds: new learned groups, and learned rules that
// are new or that grew.
type Result struct {
	Groups []policy.Group
	Rules  []policy.NetworkRule
	// ProcessRules are new learned process rules (LearnProcesses).
	ProcessRules []policy.ProcessRule
}

// Learner learns rules from flows.
type Learner struct{ cfg Config }

// New returns a learner.
func New(cfg Config) (*Learner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Learner{cfg: cfg}, nil
}

// pairRule is what is learned for one (from, to) pair.
type pairRule struct {
	from, to string
	ports    map[uint8]map[uint16]bool // proto -> ports; nil map: every port
	allPorts map[uint8]bool
	apps     map[string]bool
	anyApp   bool
	existing *policy.NetworkRule
}

// Learn returns what flows add to current. current must be valid.
func (l *Learner) Learn(current *policy.Set, flows []Flow) (*Result, error) {
	sels := map[string]*policy.Selector{}
	var names []string
	for _, g := range current.Groups {
		sel, err := policy.CompileSelector(g.Criteria)
		if err != nil {
			return nil, fmt.Errorf("learn: group %q: %w", g.Name, err)
		}
		sels[g.Name] = sel
		names = append(names, g.Name)
	}
	slices.Sort(names)
	rules := policy.SortedNetworkRules(current.NetworkRules)
	parsed := make([][]policy.PortRange, len(rules))
	for i, r := range rules {
		p, err := policy.ParsePorts(r.Ports)
		if err != nil {
			return nil, fmt.Errorf("learn: network rule %q: %w", r.Name, err)
		}
		parsed[i] = p
	}
	member := func(e Endpoint, group string) bool {
		switch group {
		case policy.GroupNodes:
			return e.Node
		case policy.GroupExternal:
			return e.Workload == nil && !e.Node
		}
		sel := sels[group]
		if sel == nil {
			return false
		}
		if e.Workload != nil {
			return sel.MatchWorkload(e.Workload)
		}
		return !e.Node && sel.MatchAddress(e.Addr)
	}
	covered := func(f *Flow) bool {
		for i, r := range rules {
			if !member(f.Src, r.From) || !member(f.Dst, r.To) || !policy.Covers(parsed[i], f.Proto, f.Port) {
				continue
			}
			if len(r.Applications) == 0 {
				return true
			}
			for _, a := range r.Applications {
				if ca, _ := policy.CanonicalApplication(a); ca == f.App && f.App != "" {
					return true
				}
			}
		}
		return false
	}

	out := &Result{}
	newGroups := map[string]policy.Group{}
	groupOf := func(e Endpoint) string {
		if e.Node {
			return policy.GroupNodes
		}
		if e.Workload == nil {
			// The first address group holding the address, else external.
			for _, n := range names {
				if sels[n].IsAddress() && sels[n].MatchAddress(e.Addr) {
					return n
				}
			}
			return policy.GroupExternal
		}
		g := l.workloadGroup(e.Workload)
		if current.Group(g.Name) == nil {
			if _, ok := newGroups[g.Name]; !ok {
				newGroups[g.Name] = g
			}
		}
		return g.Name
	}

	pairs := map[[2]string]*pairRule{}
	existing := map[string]*policy.NetworkRule{}
	for i := range current.NetworkRules {
		existing[current.NetworkRules[i].Name] = &current.NetworkRules[i]
	}
	// Flows in a canonical order, so that the result does not depend on
	// the order they were observed in.
	sorted := slices.Clone(flows)
	slices.SortFunc(sorted, compareFlow)
	for i := range sorted {
		f := &sorted[i]
		switch f.Proto {
		case policy.ProtoTCP, policy.ProtoUDP:
			if f.Port == 0 {
				continue
			}
		case policy.ProtoICMP, policy.ProtoICMPv6:
		default:
			continue // rules cannot name other protocols
		}
		if covered(f) {
			continue
		}
		from, to := groupOf(f.Src), groupOf(f.Dst)
		if policy.IsReservedGroup(from) && policy.IsReservedGroup(to) {
			continue // nothing to learn between two reserved groups
		}
		k := [2]string{from, to}
		pr := pairs[k]
		if pr == nil {
			pr = &pairRule{from: from, to: to, ports: map[uint8]map[uint16]bool{}, allPorts: map[uint8]bool{}, apps: map[string]bool{}}
			if r := existing[l.ruleName(from, to)]; r != nil && r.Source == policy.SourceLearned {
				pr.existing = r
				pr.seed(r)
			}
			pairs[k] = pr
		}
		pr.add(f, l.cfg.PortThreshold)
	}
	for _, pr := range pairs {
		r := policy.NetworkRule{Meta: policy.Meta{Name: l.ruleName(pr.from, pr.to), Kind: policy.KindNetworkRule, Source: policy.SourceLearned},
			From: pr.from, To: pr.to, Ports: pr.portSpec(), Action: policy.ActionAllow}
		if !pr.anyApp {
			for a := range pr.apps {
				r.Applications = append(r.Applications, a)
			}
			slices.Sort(r.Applications)
		}
		if pr.existing != nil && pr.existing.Ports == r.Ports && slices.Equal(pr.existing.Applications, r.Applications) {
			continue
		}
		if pr.existing != nil {
			r.Comment = pr.existing.Comment
		}
		out.Rules = append(out.Rules, r)
	}
	for _, r := range out.Rules {
		for _, g := range []string{r.From, r.To} {
			if ng, ok := newGroups[g]; ok {
				out.Groups = append(out.Groups, ng)
				delete(newGroups, g)
			}
		}
	}
	slices.SortFunc(out.Groups, func(a, b policy.Group) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Rules, func(a, b policy.NetworkRule) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// workloadGroup returns the learned group a workload is learned into: one
// per service and namespace.
func (l *Learner) workloadGroup(w *policy.Workload) policy.Group {
	svc := w.Service
	crit := []policy.Criterion{{Key: policy.KeyService, Op: policy.OpEqual, Value: svc}, {Key: policy.KeyNamespace, Op: policy.OpEqual, Value: w.Namespace}}
	if svc == "" {
		svc = w.Name
		if svc == "" {
			svc = w.ID
		}
		crit[0] = policy.Criterion{Key: policy.KeyContainer, Op: policy.OpEqual, Value: firstContainer(w)}
	}
	name := fmt.Sprintf("%s.%s.%s", l.cfg.GroupPrefix, sanitize(svc), sanitize(w.Namespace))
	return policy.Group{Meta: policy.Meta{Name: name, Kind: policy.KindGroup, Source: policy.SourceLearned}, Criteria: crit}
}

func (l *Learner) ruleName(from, to string) string {
	return fmt.Sprintf("%s:%s->%s", l.cfg.GroupPrefix, from, to)
}

func firstContainer(w *policy.Workload) string {
	if len(w.Containers) > 0 {
		return w.Containers[0].Name
	}
	return "*"
}

// sanitize keeps a name part free of spaces and control characters.
func sanitize(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

func compareFlow(a, b Flow) int {
	key := func(f Flow) string {
		var s, d string
		if f.Src.Workload != nil {
			s = "w" + f.Src.Workload.ID
		} else {
			s = fmt.Sprintf("a%v%v", f.Src.Node, f.Src.Addr)
		}
		if f.Dst.Workload != nil {
			d = "w" + f.Dst.Workload.ID
		} else {
			d = fmt.Sprintf("a%v%v", f.Dst.Node, f.Dst.Addr)
		}
		return fmt.Sprintf("%s\x00%s\x00%03d\x00%05d\x00%s", s, d, f.Proto, f.Port, f.App)
	}
	return strings.Compare(key(a), key(b))
}

// seed loads the ports and applications of an existing learned rule.
func (p *pairRule) seed(r *policy.NetworkRule) {
	rs, err := policy.ParsePorts(r.Ports)
	if err != nil {
		return
	}
	for _, x := range rs {
		if x.AllPorts() {
			p.allPorts[x.Proto] = true
			continue
		}
		for port := int(x.Lo); port <= int(x.Hi) && port-int(x.Lo) < 4096; port++ {
			if p.ports[x.Proto] == nil {
				p.ports[x.Proto] = map[uint16]bool{}
			}
			p.ports[x.Proto][uint16(port)] = true
		}
	}
	if len(r.Applications) == 0 {
		p.anyApp = true
	}
	for _, a := range r.Applications {
		p.apps[a] = true
	}
}

func (p *pairRule) add(f *Flow, threshold int) {
	if app, ok := policy.CanonicalApplication(f.App); ok {
		p.apps[app] = true
	} else {
		p.anyApp = true
	}
	if p.allPorts[f.Proto] || p.allPorts[policy.ProtoAny] {
		return
	}
	if f.Proto == policy.ProtoICMP || f.Proto == policy.ProtoICMPv6 {
		p.allPorts[f.Proto] = true
		return
	}
	if p.ports[f.Proto] == nil {
		p.ports[f.Proto] = map[uint16]bool{}
	}
	p.ports[f.Proto][f.Port] = true
	if len(p.ports[f.Proto]) > threshold {
		delete(p.ports, f.Proto)
		p.allPorts[f.Proto] = true
	}
}

func (p *pairRule) portSpec() string {
	var rs []policy.PortRange
	for proto := range p.allPorts {
		rs = append(rs, policy.PortRange{Proto: proto, Lo: 0, Hi: 65535})
	}
	for proto, ports := range p.ports {
		for port := range ports {
			rs = append(rs, policy.PortRange{Proto: proto, Lo: port, Hi: port})
		}
	}
	return policy.FormatPorts(rs)
}
