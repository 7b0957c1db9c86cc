// Package bpf holds Palisade's eBPF programs (C) and the Go bindings bpf2go
// generates for them. The generated files are committed; `make generate`
// rebuilds them and fails when they differ.
//
// datapath.c enforces network policy (tcx and cgroup_skb); exec.c observes
// process executions (sched_process_exec tracepoint).
// execguard.c is the pinned exec fallback that kills forbidden execs in
// protected cgroups while the agent's fanotify guard is not running.
package bpf

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type flow_event -type lpm_key -type policy_key -type policy_value -type endpoint -type mode_value -type dp_config -type ct_key -type ct_entry -type rule_counter -type counter -type mode -type action -type event_kind -type app -type ct_state -type local_key -type local_endpoint Datapath datapath.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type exec_event Exec exec.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type eg_record -type eg_exe_key -type eg_comm_key -type eg_beat -type eg_mode Execguard execguard.c
