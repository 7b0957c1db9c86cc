package datapath

import (
	"slices"
	"sort"
)

// policyKey is one entry of the policy LPM map: the identities and protocol
// match exactly, the top Bits bits of Port match (Bits 16: one port, 0: any
// port).
type policyKey struct {
	Src, Dst Identity
	Proto    uint8
	Port     uint16
	Bits     uint8
}

type policyValue struct {
	RuleID uint32
	Action Action
}

// compileVerdicts turns the verdict entries of st into policy map entries.
// Only the (source, destination) pairs in pairs are compiled; nil means all.
//
// Port ranges become port prefixes, so the per-packet cost is at most two
// longest-prefix lookups ((src, dst, proto, port), then (src, dst, any,
// port)) whatever the number of rules or the shape of their ranges; a range
// costs at most 30 map entries. Overlaps are resolved here, once: within
// each (src, dst, proto) the port space is painted by entries in order of
// specificity, so the map holds disjoint prefixes and the kernel's
// longest-prefix match returns the winning entry. Entries for any protocol
// are painted into every specific protocol of the same pair as well, so a
// specific protocol's prefixes already account for them.
func compileVerdicts(st *state, pairs map[pairKey]bool) map[policyKey]policyValue {
	type group struct {
		specific map[uint8][]VerdictEntry
		any      []VerdictEntry
	}
	out := map[policyKey]policyValue{}
	for pair := range pairList(pairs, st) {
		g := &group{specific: map[uint8][]VerdictEntry{}}
		for _, v := range st.verdicts[pair] {
			if v.Proto == 0 {
				g.any = append(g.any, v)
			} else {
				g.specific[v.Proto] = append(g.specific[v.Proto], v)
			}
		}
		if len(g.any) > 0 {
			paint(pair, 0, g.any, out)
		}
		for proto, es := range g.specific {
			all := make([]VerdictEntry, 0, len(es)+len(g.any))
			all = append(all, es...)
			all = append(all, g.any...)
			paint(pair, proto, all, out)
		}
	}
	return out
}

// moreSpecific orders entries: narrower range, then specific protocol, then
// deny, then lower rule ID, then lower port.
func moreSpecific(a, b VerdictEntry) int {
	alo, ahi := a.ports()
	blo, bhi := b.ports()
	if wa, wb := int(ahi)-int(alo), int(bhi)-int(blo); wa != wb {
		return wa - wb
	}
	if (a.Proto == 0) != (b.Proto == 0) {
		if a.Proto != 0 {
			return -1
		}
		return 1
	}
	if a.Action != b.Action {
		if a.Action == ActionDeny {
			return -1
		}
		return 1
	}
	if a.RuleID != b.RuleID {
		if a.RuleID < b.RuleID {
			return -1
		}
		return 1
	}
	return int(alo) - int(blo)
}

// paint resolves the entries of one (pair, proto) into disjoint port
// prefixes and adds them to out.
func paint(pair [2]Identity, proto uint8, es []VerdictEntry, out map[policyKey]policyValue) {
	slices.SortFunc(es, moreSpecific)
	points := make([]uint32, 0, 2*len(es))
	for _, e := range es {
		lo, hi := e.ports()
		points = append(points, uint32(lo), uint32(hi)+1)
	}
	slices.Sort(points)
	points = slices.Compact(points)
	nseg := len(points) - 1
	owner := make([]int, nseg)
	next := make([]int, nseg+1) // next unpainted segment at or after i
	for i := range owner {
		owner[i] = -1
		next[i] = i
	}
	next[nseg] = nseg
	var find func(int) int
	find = func(i int) int {
		for next[i] != i {
			next[i] = next[next[i]]
			i = next[i]
		}
		return i
	}
	for idx, e := range es {
		lo, hi := e.ports()
		first := sort.Search(len(points), func(i int) bool { return points[i] >= uint32(lo) })
		end := sort.Search(len(points), func(i int) bool { return points[i] >= uint32(hi)+1 })
		for i := find(first); i < end; i = find(i) {
			owner[i] = idx
			next[i] = i + 1
		}
	}
	for i := 0; i < nseg; {
		if owner[i] < 0 {
			i++
			continue
		}
		e := es[owner[i]]
		val := policyValue{RuleID: e.RuleID, Action: e.Action}
		j := i + 1
		for j < nseg && owner[j] >= 0 && es[owner[j]].RuleID == val.RuleID && es[owner[j]].Action == val.Action {
			j++
		}
		for _, p := range portPrefixes(points[i], points[j]-1) {
			out[policyKey{Src: pair[0], Dst: pair[1], Proto: proto, Port: p.port, Bits: p.bits}] = val
		}
		i = j
	}
}

type portPrefix struct {
	port uint16
	bits uint8
}

// portPrefixes covers lo..hi (inclusive, both <= 65535) with the fewest
// aligned power-of-two blocks.
func portPrefixes(lo, hi uint32) []portPrefix {
	var out []portPrefix
	for lo <= hi {
		size := uint32(1)
		bits := uint8(16)
		for bits > 0 {
			bigger := size << 1
			if lo%bigger != 0 || lo+bigger-1 > hi {
				break
			}
			size = bigger
			bits--
		}
		out = append(out, portPrefix{port: uint16(lo), bits: bits})
		lo += size
	}
	return out
}
