// Package datapath owns Palisade's network enforcement in the kernel: it
// loads the eBPF programs of agent/bpf, keeps their maps pinned under bpffs,
// attaches the programs to workload veths (tcx) or cgroups (cgroup_skb),
// applies policy tables and diffs to the maps, reads flow events from the
// ring buffer and reports counters.
//
// The input is a table of endpoint entries (address prefix -> identity),
// verdict entries ((source identity, destination identity, protocol, port
// range) -> allow or deny, with a rule ID) and a mode per identity. Identity
// 0 is the unknown world.
//
// Enforcement outlives the process that set it up: maps and links are
// pinned, Close leaves them in place, and the next Open reuses them and
// swaps its freshly loaded programs into the pinned links. Only Destroy
// detaches and unpins.
package datapath
