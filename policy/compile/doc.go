// Package compile turns policy and workloads into the tables an agent
// enforces: group identities, address-to-identity entries, and verdicts keyed
// by (source identity, destination identity, protocol, port), plus each
// identity's modes and process and file profiles.
//
// An identity stands for one set of groups: every workload that is a member
// of exactly the same groups shares it, so the datapath needs one lookup per
// packet whatever the number of rules. Verdicts are resolved at compile time:
// for each pair of identities the port space is painted by the rules in
// precedence order, so entries never overlap and the first rule that covers
// a port decides it. A lookup that misses means "no rule": Protect denies,
// Monitor alerts, Discover allows and learns.
//
// [Compile] is a pure function of its input. [Compiler] keeps the same state
// incrementally: a change to one rule, group or workload recomputes only the
// identity pairs it touches and returns the [Delta] for the cluster-wide
// table and for each node's table.
package compile
