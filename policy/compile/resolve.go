package compile

import (
	"slices"

	"github.com/palisade-sec/palisade/policy"
)

// seg is one painted port interval.
type seg struct {
	lo, hi int
	action policy.Action
	rule   uint32
}

// resolve computes the verdicts of one identity pair: the rules from any
// group of src to any group of dst, in precedence order, paint the port
// space of each protocol; the first rule to cover a port decides it.
func (c *Compiler) resolve(src, dst *identity) []Verdict {
	var rules []*netRule
	for _, g1 := range src.groups {
		for _, g2 := range dst.groups {
			rules = append(rules, c.byPair[groupPair{g1, g2}]...)
		}
	}
	if len(rules) == 0 {
		return nil
	}
	slices.SortFunc(rules, func(a, b *netRule) int { return policy.CompareNetworkRules(&a.r, &b.r) })
	var apps []string
	for _, r := range rules {
		apps = append(apps, r.apps...)
	}
	slices.Sort(apps)
	apps = slices.Compact(apps)

	var out []Verdict
	out = c.paintSpace(out, src.id, dst.id, "", rules)
	for _, app := range apps {
		out = c.paintSpace(out, src.id, dst.id, app, rules)
	}
	slices.SortFunc(out, compareVerdict)
	return out
}

// paintSpace emits the verdicts of one application space: "" holds the
// rules without applications, an application's space holds those and the
// rules naming it.
func (c *Compiler) paintSpace(out []Verdict, src, dst uint32, app string, all []*netRule) []Verdict {
	rules := make([]*netRule, 0, len(all))
	for _, r := range all {
		if len(r.apps) == 0 || (app != "" && slices.Contains(r.apps, app)) {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return out
	}
	protos := []uint8{policy.ProtoAny}
	for _, r := range rules {
		for _, pr := range r.ports {
			if pr.Proto != policy.ProtoAny && !slices.Contains(protos, pr.Proto) {
				protos = append(protos, pr.Proto)
			}
		}
	}
	slices.Sort(protos)
	var segs []seg
	for _, p := range protos {
		segs = segs[:0]
		for _, r := range rules {
			id, _ := c.ruleIDs.get(ruleKey(policy.KindNetworkRule, r.r.Name))
			for _, pr := range r.ports {
				if !applies(pr, p) {
					continue
				}
				segs = paint(segs, int(pr.Lo), int(pr.Hi), r.r.Action, id)
			}
		}
		for i := 0; i < len(segs); i++ {
			s := segs[i]
			// Merge neighbours decided by the same rule.
			for i+1 < len(segs) && segs[i+1].lo == s.hi+1 && segs[i+1].rule == s.rule {
				s.hi = segs[i+1].hi
				i++
			}
			v := Verdict{SrcID: src, DstID: dst, Proto: p, PortLo: uint16(s.lo), PortHi: uint16(s.hi), App: app, Action: s.action, RuleID: s.rule}
			if s.lo == 0 && s.hi == 65535 {
				v.PortLo, v.PortHi = 0, 0
			}
			out = append(out, v)
		}
	}
	return out
}

// applies reports whether a port range of a rule applies to protocol p. A
// range for any protocol applies to every protocol, except that one with
// specific ports does not apply to ICMP, which has none.
func applies(pr policy.PortRange, p uint8) bool {
	if p == policy.ProtoAny {
		return pr.Proto == policy.ProtoAny
	}
	if pr.Proto == p {
		return true
	}
	if pr.Proto != policy.ProtoAny {
		return false
	}
	if p == policy.ProtoICMP || p == policy.ProtoICMPv6 {
		return pr.AllPorts()
	}
	return true
}

// paint adds to the sorted, disjoint segs the parts of [lo, hi] not yet
// covered.
func paint(segs []seg, lo, hi int, a policy.Action, rule uint32) []seg {
	var add []seg
	cur := lo
	for _, s := range segs {
		if s.hi < cur {
			continue
		}
		if s.lo > hi {
			break
		}
		if s.lo > cur {
			add = append(add, seg{cur, s.lo - 1, a, rule})
		}
		cur = s.hi + 1
		if cur > hi {
			break
		}
	}
	if cur <= hi {
		add = append(add, seg{cur, hi, a, rule})
	}
	if len(add) == 0 {
		return segs
	}
	segs = append(segs, add...)
	slices.SortFunc(segs, func(x, y seg) int { return x.lo - y.lo })
	return segs
}

// profile computes an identity's modes and process and file profile.
func (c *Compiler) profile(id *identity) Profile {
	p := Profile{ID: id.id, Baseline: policy.BaselineBasic}
	def := policy.Set{Defaults: c.defaults}
	if len(id.groups) == 0 {
		p.NetworkMode, p.ProcessMode = def.GroupModes(&policy.Group{})
	}
	var procs []*policy.ProcessRule
	var files []*policy.FileRule
	for _, name := range id.groups {
		gs := c.groups[name]
		if gs == nil {
			continue
		}
		n, pm := def.GroupModes(&gs.g)
		p.NetworkMode = policy.Stricter(p.NetworkMode, n)
		p.ProcessMode = policy.Stricter(p.ProcessMode, pm)
		if gs.g.Baseline == policy.BaselineZeroDrift {
			p.Baseline = policy.BaselineZeroDrift
		}
		for _, r := range c.procByGroup[name] {
			procs = append(procs, r)
		}
		for _, r := range c.fileByGroup[name] {
			files = append(files, r)
		}
	}
	slices.SortFunc(procs, policy.CompareProcessRules)
	seen := map[[2]string]bool{}
	for _, r := range procs {
		k := [2]string{r.Process, r.Path}
		if seen[k] {
			continue
		}
		seen[k] = true
		id, _ := c.ruleIDs.get(ruleKey(policy.KindProcessRule, r.Name))
		p.Processes = append(p.Processes, ProcessEntry{Process: r.Process, Path: r.Path, Action: r.Action, RuleID: id})
	}
	slices.SortFunc(files, func(a, b *policy.FileRule) int {
		if a.Filter != b.Filter {
			if a.Filter < b.Filter {
				return -1
			}
			return 1
		}
		if ra, rb := a.Source.Rank(), b.Source.Rank(); ra != rb {
			return ra - rb
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	for i, r := range files {
		if i > 0 && files[i-1].Filter == r.Filter {
			continue
		}
		id, _ := c.ruleIDs.get(ruleKey(policy.KindFileRule, r.Name))
		p.Files = append(p.Files, FileEntry{Filter: r.Filter, Recursive: r.Recursive, Behavior: r.Behavior, Applications: slices.Clone(r.Applications), RuleID: id})
	}
	return p
}
