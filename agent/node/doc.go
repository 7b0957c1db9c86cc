// Package node is a node agent's main loop: it enrolls with the controller
// using an agent token, keeps a QUIC stream (mutual TLS) to it with
// reconnection and backoff, turns the compiled policy it receives (a table,
// then diffs) into the datapath's table, attaches the datapath to the
// workloads the workload source finds with the identities the policy gives
// them, and reports the workloads, the flows and the violations the datapath
// sees. Process control (process_linux.go) finds each workload's cgroup,
// gives it the process profile of its identity, learns the executables it
// runs in Discover (sent to the controller as Processes), reports
// executables outside the profile in Monitor, and in Protect denies them
// with fanotify before they run; violations go up with the other events.
//
// Enforcement outlives the agent and the link: the datapath's maps are
// pinned, so a restarted agent or one that cannot reach its controller keeps
// enforcing the last policy applied. The last table is also kept in the data
// directory, so a restarted agent knows the identities before it reconnects.
package node
