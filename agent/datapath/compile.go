package datapath

import (
	"maps"
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

// policyValue is the value of a policy map entry: 76 bytes in the kernel
// (struct policy_value).
type policyValue struct {
	RuleID uint32
	Action Action
	// AppMask bit a: flows of application a are decided otherwise, allowed
	// when bit a of AppAllow is set, by rule AppRule[a].
	AppMask  uint16
	AppAllow uint16
	AppRule  [appMax + 1]uint32
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
//
// Each application's entries are painted the same way in a space of their
// own; a prefix's value then carries, beside the decision without
// application, the applications whose decision differs in allowing. gRPC
// is HTTP/2: where no gRPC entry covers a port, gRPC flows follow the
// HTTP/2 entries (a rule learned as HTTP/2 from a gRPC client's first
// packet, the preface, keeps allowing it).
func compileVerdicts(st *state, pairs map[pairKey]bool) map[policyKey]policyValue {
	out := map[policyKey]policyValue{}
	for pair := range pairList(pairs, st) {
		if !hasApps(st.verdicts[pair]) {
			compilePlain(pair, st.verdicts[pair], out)
			continue
		}
		// byApp[app][proto]: entries of one application space.
		byApp := map[App]map[uint8][]VerdictEntry{}
		protos := map[uint8]bool{}
		for _, v := range st.verdicts[pair] {
			if byApp[v.App] == nil {
				byApp[v.App] = map[uint8][]VerdictEntry{}
			}
			byApp[v.App][v.Proto] = append(byApp[v.App][v.Proto], v)
			protos[v.Proto] = true
		}
		for proto := range protos {
			spaces := map[App][]segment{}
			for app, es := range byApp {
				all := append([]VerdictEntry(nil), es[0]...)
				if proto != 0 {
					all = append(all, es[proto]...)
				}
				if len(all) > 0 {
					spaces[app] = paintSegments(all)
				}
			}
			if h2 := spaces[AppHTTP2]; h2 != nil {
				spaces[AppGRPC] = fallBack(spaces[AppGRPC], h2)
			}
			segs := spaces[AppNone]
			if len(spaces) > 1 || (len(spaces) == 1 && segs == nil) {
				segs = overlay(spaces)
			}
			emitSegments(pair, proto, segs, out)
		}
	}
	return out
}

func hasApps(vs map[verdictID]VerdictEntry) bool {
	for id := range vs {
		if id.App != AppNone {
			return true
		}
	}
	return false
}

// compilePlain compiles the entries of a pair that has no application
// entries.
func compilePlain(pair pairKey, vs map[verdictID]VerdictEntry, out map[policyKey]policyValue) {
	var anyProto []VerdictEntry
	specific := map[uint8][]VerdictEntry{}
	for _, v := range vs {
		if v.Proto == 0 {
			anyProto = append(anyProto, v)
		} else {
			specific[v.Proto] = append(specific[v.Proto], v)
		}
	}
	if len(anyProto) > 0 {
		emitSegments(pair, 0, paintSegments(anyProto), out)
	}
	for proto, es := range specific {
		emitSegments(pair, proto, paintSegments(append(es, anyProto...)), out)
	}
}

// segment is a port range and its decision.
type segment struct {
	lo, hi uint32
	val    policyValue
}

// paintSegments resolves overlapping entries into sorted disjoint segments,
// neighbours with the same decision merged.
func paintSegments(es []VerdictEntry) []segment {
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
	var out []segment
	for i := 0; i < nseg; {
		if owner[i] < 0 {
			i++
			continue
		}
		e := es[owner[i]]
		j := i + 1
		for j < nseg && owner[j] >= 0 && es[owner[j]].RuleID == e.RuleID && es[owner[j]].Action == e.Action {
			j++
		}
		out = append(out, segment{lo: points[i], hi: points[j] - 1, val: policyValue{RuleID: e.RuleID, Action: e.Action}})
		i = j
	}
	return out
}

// overlay combines the segments of the space without application and of
// each application into segments whose values carry both.
func overlay(spaces map[App][]segment) []segment {
	points := boundaries(slices.Collect(maps.Values(spaces))...)
	apps := make([]App, 0, len(spaces))
	for app := range spaces {
		if app != AppNone {
			apps = append(apps, app)
		}
	}
	slices.Sort(apps)
	idx := map[App]*int{AppNone: new(int)}
	for app := range spaces {
		idx[app] = new(int)
	}
	var out []segment
	for k := 0; k+1 < len(points); k++ {
		lo, hi := points[k], points[k+1]-1
		plain, plainOK := valueAt(spaces[AppNone], idx[AppNone], lo)
		v := policyValue{RuleID: plain.RuleID, Action: plain.Action}
		for _, app := range apps {
			d, ok := valueAt(spaces[app], idx[app], lo)
			if !ok {
				continue
			}
			if (d.Action == ActionAllow) != (plain.Action == ActionAllow) {
				v.AppMask |= 1 << app
				if d.Action == ActionAllow {
					v.AppAllow |= 1 << app
				}
				v.AppRule[app] = d.RuleID
			}
		}
		if !plainOK && v.AppMask == 0 {
			continue
		}
		out = appendSegment(out, lo, hi, v)
	}
	return out
}

// appendSegment adds ports lo..hi with v after out, extending the last
// segment when it ends at lo-1 with the same value.
func appendSegment(out []segment, lo, hi uint32, v policyValue) []segment {
	if n := len(out); n > 0 && out[n-1].hi+1 == lo && out[n-1].val == v {
		out[n-1].hi = hi
		return out
	}
	return append(out, segment{lo: lo, hi: hi, val: v})
}

// fallBack returns the segments of primary, with those of fallback where
// primary covers no port.
func fallBack(primary, fallback []segment) []segment {
	points := boundaries(primary, fallback)
	var out []segment
	i, j := 0, 0
	for k := 0; k+1 < len(points); k++ {
		lo, hi := points[k], points[k+1]-1
		v, ok := valueAt(primary, &i, lo)
		if !ok {
			v, ok = valueAt(fallback, &j, lo)
		}
		if ok {
			out = appendSegment(out, lo, hi, v)
		}
	}
	return out
}

// boundaries returns, sorted and once each, the first port of every
// segment of spaces and the port after its last.
func boundaries(spaces ...[]segment) []uint32 {
	var points []uint32
	for _, segs := range spaces {
		for _, s := range segs {
			points = append(points, s.lo, s.hi+1)
		}
	}
	slices.Sort(points)
	return slices.Compact(points)
}

// valueAt returns the value of segs at port p, advancing *i past the
// segments that end before p (p grows from call to call).
func valueAt(segs []segment, i *int, p uint32) (policyValue, bool) {
	for *i < len(segs) && segs[*i].hi < p {
		*i++
	}
	if *i < len(segs) && segs[*i].lo <= p {
		return segs[*i].val, true
	}
	return policyValue{}, false
}

// emitSegments adds the port prefixes of segs to out.
func emitSegments(pair [2]Identity, proto uint8, segs []segment, out map[policyKey]policyValue) {
	for _, s := range segs {
		for _, p := range portPrefixes(s.lo, s.hi) {
			out[policyKey{Src: pair[0], Dst: pair[1], Proto: proto, Port: p.port, Bits: p.bits}] = s.val
		}
	}
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
