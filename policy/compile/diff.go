package compile

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// TableDiff is the change from one table to another, as an agent applies
// it: delete the keys listed, then upsert the entries listed.
type TableDiff struct {
	UpsertIdentities []Identity         `json:"upsertIdentities,omitempty"`
	DeleteIdentities []uint32           `json:"deleteIdentities,omitempty"`
	UpsertEndpoints  []Endpoint         `json:"upsertEndpoints,omitempty"`
	DeleteEndpoints  []netip.Prefix     `json:"deleteEndpoints,omitempty"`
	UpsertFQDNs      []FQDN             `json:"upsertFqdns,omitempty"`
	DeleteFQDNs      []string           `json:"deleteFqdns,omitempty"`
	UpsertVerdicts   []Verdict          `json:"upsertVerdicts,omitempty"`
	DeleteVerdicts   []VerdictKey       `json:"deleteVerdicts,omitempty"`
	UpsertProfiles   []Profile          `json:"upsertProfiles,omitempty"`
	DeleteProfiles   []uint32           `json:"deleteProfiles,omitempty"`
	UpsertWorkloads  []WorkloadIdentity `json:"upsertWorkloads,omitempty"`
	DeleteWorkloads  []string           `json:"deleteWorkloads,omitempty"`
	UpsertRules      []RuleName         `json:"upsertRules,omitempty"`
	DeleteRules      []uint32           `json:"deleteRules,omitempty"`
}

// Empty reports whether the diff changes nothing.
func (d *TableDiff) Empty() bool { return d.Len() == 0 }

// Len is the number of entries the diff upserts or deletes.
func (d *TableDiff) Len() int {
	return len(d.UpsertIdentities) + len(d.DeleteIdentities) + len(d.UpsertEndpoints) +
		len(d.DeleteEndpoints) + len(d.UpsertFQDNs) + len(d.DeleteFQDNs) +
		len(d.UpsertVerdicts) + len(d.DeleteVerdicts) + len(d.UpsertProfiles) +
		len(d.DeleteProfiles) + len(d.UpsertWorkloads) + len(d.DeleteWorkloads) +
		len(d.UpsertRules) + len(d.DeleteRules)
}

// diffSorted merges two sorted lists in one pass: keys only in old are
// deleted, entries new or changed are upserted.
func diffSorted[T any, K any](old, new []T, key func(T) K, cmpKey func(a, b K) int, equal func(a, b T) bool, del *[]K, up *[]T) {
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new):
			*del = append(*del, key(old[i]))
			i++
		case i == len(old):
			*up = append(*up, new[j])
			j++
		default:
			switch c := cmpKey(key(old[i]), key(new[j])); {
			case c < 0:
				*del = append(*del, key(old[i]))
				i++
			case c > 0:
				*up = append(*up, new[j])
				j++
			default:
				if !equal(old[i], new[j]) {
					*up = append(*up, new[j])
				}
				i++
				j++
			}
		}
	}
}

// Diff returns the change from old to new. Both tables must be sorted, as
// every table this package returns is; the cost is linear in their size.
func Diff(old, new *Table) TableDiff {
	var d TableDiff
	diffSorted(old.Identities, new.Identities, func(x Identity) uint32 { return x.ID }, cmp.Compare[uint32],
		func(a, b Identity) bool { return slices.Equal(a.Groups, b.Groups) }, &d.DeleteIdentities, &d.UpsertIdentities)
	diffSorted(old.Endpoints, new.Endpoints, func(x Endpoint) netip.Prefix { return x.Prefix }, comparePrefix,
		func(a, b Endpoint) bool { return a == b }, &d.DeleteEndpoints, &d.UpsertEndpoints)
	diffSorted(old.FQDNs, new.FQDNs, func(x FQDN) string { return x.Pattern }, strings.Compare,
		func(a, b FQDN) bool { return a == b }, &d.DeleteFQDNs, &d.UpsertFQDNs)
	diffSorted(old.Verdicts, new.Verdicts, Verdict.Key, compareVerdictKey,
		func(a, b Verdict) bool { return a == b }, &d.DeleteVerdicts, &d.UpsertVerdicts)
	diffSorted(old.Profiles, new.Profiles, func(x Profile) uint32 { return x.ID }, cmp.Compare[uint32],
		func(a, b Profile) bool { return reflect.DeepEqual(a, b) }, &d.DeleteProfiles, &d.UpsertProfiles)
	diffSorted(old.Workloads, new.Workloads, func(x WorkloadIdentity) string { return x.Workload }, strings.Compare,
		func(a, b WorkloadIdentity) bool { return a == b }, &d.DeleteWorkloads, &d.UpsertWorkloads)
	diffSorted(old.Rules, new.Rules, func(x RuleName) uint32 { return x.ID }, cmp.Compare[uint32],
		func(a, b RuleName) bool { return a == b }, &d.DeleteRules, &d.UpsertRules)
	return d
}

// Apply returns a new table: t with d applied.
func (d *TableDiff) Apply(t *Table) *Table {
	out := &Table{Node: t.Node}
	out.Identities = applyList(t.Identities, d.DeleteIdentities, d.UpsertIdentities, func(x Identity) uint32 { return x.ID })
	out.Endpoints = applyList(t.Endpoints, d.DeleteEndpoints, d.UpsertEndpoints, func(x Endpoint) netip.Prefix { return x.Prefix })
	out.FQDNs = applyList(t.FQDNs, d.DeleteFQDNs, d.UpsertFQDNs, func(x FQDN) string { return x.Pattern })
	out.Verdicts = applyList(t.Verdicts, d.DeleteVerdicts, d.UpsertVerdicts, Verdict.Key)
	out.Profiles = applyList(t.Profiles, d.DeleteProfiles, d.UpsertProfiles, func(x Profile) uint32 { return x.ID })
	out.Workloads = applyList(t.Workloads, d.DeleteWorkloads, d.UpsertWorkloads, func(x WorkloadIdentity) string { return x.Workload })
	out.Rules = applyList(t.Rules, d.DeleteRules, d.UpsertRules, func(x RuleName) uint32 { return x.ID })
	out.sort()
	return out
}

func applyList[T any, K comparable](list []T, del []K, up []T, key func(T) K) []T {
	m := make(map[K]T, len(list)+len(up))
	for _, x := range list {
		m[key(x)] = x
	}
	for _, k := range del {
		delete(m, k)
	}
	for _, x := range up {
		m[key(x)] = x
	}
	out := make([]T, 0, len(m))
	for _, x := range m {
		out = append(out, x)
	}
	return out
}

// merge appends the changes of o to d.
func (d *TableDiff) merge(o *TableDiff) {
	d.UpsertIdentities = append(d.UpsertIdentities, o.UpsertIdentities...)
	d.DeleteIdentities = append(d.DeleteIdentities, o.DeleteIdentities...)
	d.UpsertEndpoints = append(d.UpsertEndpoints, o.UpsertEndpoints...)
	d.DeleteEndpoints = append(d.DeleteEndpoints, o.DeleteEndpoints...)
	d.UpsertFQDNs = append(d.UpsertFQDNs, o.UpsertFQDNs...)
	d.DeleteFQDNs = append(d.DeleteFQDNs, o.DeleteFQDNs...)
	d.UpsertVerdicts = append(d.UpsertVerdicts, o.UpsertVerdicts...)
	d.DeleteVerdicts = append(d.DeleteVerdicts, o.DeleteVerdicts...)
	d.UpsertProfiles = append(d.UpsertProfiles, o.UpsertProfiles...)
	d.DeleteProfiles = append(d.DeleteProfiles, o.DeleteProfiles...)
	d.UpsertWorkloads = append(d.UpsertWorkloads, o.UpsertWorkloads...)
	d.DeleteWorkloads = append(d.DeleteWorkloads, o.DeleteWorkloads...)
	d.UpsertRules = append(d.UpsertRules, o.UpsertRules...)
	d.DeleteRules = append(d.DeleteRules, o.DeleteRules...)
}
