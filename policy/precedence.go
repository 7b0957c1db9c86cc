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

// CompareNetworkRules orders network rules by precedence: federated, code,
// user, then learned; within one source a deny comes before an allow (so a
// deny wins over an allow it overlaps); then by name. The order does not
// depend on the order rules were written in.
func CompareNetworkRules(a, b *NetworkRule) int {
	if c := cmp.Compare(a.Source.Rank(), b.Source.Rank()); c != 0 {
		return c
	}
	if a.Action != b.Action {
		if a.Action == ActionDeny {
			return -1
		}
		if b.Action == ActionDeny {
			return 1
		}
	}
	return strings.Compare(a.Name, b.Name)
}

// SortedNetworkRules returns pointers to the enabled rules of rs in
// precedence order (see [CompareNetworkRules]).
func SortedNetworkRules(rs []NetworkRule) []*NetworkRule {
	out := make([]*NetworkRule, 0, len(rs))
	for i := range rs {
		if !rs[i].Disabled {
			out = append(out, &rs[i])
		}
	}
	slices.SortFunc(out, CompareNetworkRules)
	return out
}

// CompareAdmissionRules orders admission rules for evaluation: federated
// allow, federated deny, then code, user and learned the same way (allow
// exceptions before deny rules within each source); then by name.
func CompareAdmissionRules(a, b *AdmissionRule) int {
	if c := cmp.Compare(a.Source.Rank(), b.Source.Rank()); c != 0 {
		return c
	}
	if a.Action != b.Action {
		if a.Action == ActionAllow {
			return -1
		}
		if b.Action == ActionAllow {
			return 1
		}
	}
	return strings.Compare(a.Name, b.Name)
}

// SortedAdmissionRules returns pointers to the enabled rules of rs in
// evaluation order (see [CompareAdmissionRules]).
func SortedAdmissionRules(rs []AdmissionRule) []*AdmissionRule {
	out := make([]*AdmissionRule, 0, len(rs))
	for i := range rs {
		if !rs[i].Disabled {
			out = append(out, &rs[i])
		}
	}
	slices.SortFunc(out, CompareAdmissionRules)
	return out
}

// CompareProcessRules orders process rules by source precedence, deny
// before allow, then by name.
func CompareProcessRules(a, b *ProcessRule) int {
	if c := cmp.Compare(a.Source.Rank(), b.Source.Rank()); c != 0 {
		return c
	}
	if a.Action != b.Action {
		if a.Action == ActionDeny {
			return -1
		}
		if b.Action == ActionDeny {
			return 1
		}
	}
	return strings.Compare(a.Name, b.Name)
}
