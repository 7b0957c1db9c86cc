package policy

import (
	"cmp"
	"slices"
	"strings"
)

// compareMeta orders objects by source precedence, then by name.
func compareMeta(a, b *Meta) int {
	if c := cmp.Compare(a.Source.Rank(), b.Source.Rank()); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// compareRanked orders rules by source precedence, then the action first
// before the other, then by name.
func compareRanked(a, b *Meta, actA, actB, first Action) int {
	if c := cmp.Compare(a.Source.Rank(), b.Source.Rank()); c != 0 {
		return c
	}
	if actA != actB {
		if actA == first {
			return -1
		}
		if actB == first {
			return 1
		}
	}
	return strings.Compare(a.Name, b.Name)
}

// sortedEnabled returns pointers to the elements of rs that are not
// disabled, sorted by compare.
func sortedEnabled[T any](rs []T, disabled func(*T) bool, compare func(a, b *T) int) []*T {
	out := make([]*T, 0, len(rs))
	for i := range rs {
		if !disabled(&rs[i]) {
			out = append(out, &rs[i])
		}
	}
	slices.SortFunc(out, compare)
	return out
}

// CompareNetworkRules orders network rules by precedence: federated, code,
// user, then learned; within one source a deny comes before an allow (so a
// deny wins over an allow it overlaps); then by name. The order does not
// depend on the order rules were written in.
func CompareNetworkRules(a, b *NetworkRule) int {
	return compareRanked(&a.Meta, &b.Meta, a.Action, b.Action, ActionDeny)
}

// SortedNetworkRules returns pointers to the enabled rules of rs in
// precedence order (see [CompareNetworkRules]).
func SortedNetworkRules(rs []NetworkRule) []*NetworkRule {
	return sortedEnabled(rs, func(r *NetworkRule) bool { return r.Disabled }, CompareNetworkRules)
}

// CompareAdmissionRules orders admission rules for evaluation: federated
// allow, federated deny, then code, user and learned the same way (allow
// exceptions before deny rules within each source); then by name.
func CompareAdmissionRules(a, b *AdmissionRule) int {
	return compareRanked(&a.Meta, &b.Meta, a.Action, b.Action, ActionAllow)
}

// SortedAdmissionRules returns pointers to the enabled rules of rs in
// evaluation order (see [CompareAdmissionRules]).
func SortedAdmissionRules(rs []AdmissionRule) []*AdmissionRule {
	return sortedEnabled(rs, func(r *AdmissionRule) bool { return r.Disabled }, CompareAdmissionRules)
}

// CompareProcessRules orders process rules by source precedence, deny
// before allow, then by name.
func CompareProcessRules(a, b *ProcessRule) int {
	return compareRanked(&a.Meta, &b.Meta, a.Action, b.Action, ActionDeny)
}
