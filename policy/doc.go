// Package policy is the pure model of Palisade security policy: groups that
// select workloads or addresses, network, process, file, admission and
// response rules, and the per-group modes (Discover, Monitor, Protect).
//
// It says what each object is, how a whole [Set] is validated, which rule
// wins when several apply (federated, then policy-as-code, then user-created,
// then learned; within one source a deny beats an allow), and how group
// criteria match a [Workload]. It performs no I/O and keeps no state; the
// sub-packages compile (compile), learn (learn), decide admission (admit) and
// read and write policy as YAML (code).
package policy
