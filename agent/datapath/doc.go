// Package datapath owns Palisade's network enforcement in the kernel: it
// loads the eBPF programs of agent/bpf, keeps their maps pinned under bpffs,
// attaches the programs to workload veths (tcx) or cgroups (cgroup_skb),
// applies policy tables and diffs to the maps, reads flow events from the
// ring buffer and reports counters.
//
// The input is a table of endpoint entries (address prefix -> identity),
// verdict entries ((source identity, destination identity, protocol, port
// range, optional application) -> allow or deny, with a rule ID) and a mode
// per identity. Identity 0 is the unknown world.
//
// Connection tracking: an established flow passes on one lookup of an LRU
// map. Entries know the TCP state (SYN, established, half closed, closed
// by FIN from both sides or RST) and expire after an idle timeout per state
// (Config.Timeouts), checked by the programs on every lookup; a sweeper
// goroutine (Config.SweepInterval) removes expired entries nobody looks up.
// A SYN is always decided against the policy in force, so a new connection
// on the 5-tuple of a closed one is checked again. A policy change (the
// generation in the config map) makes every established flow be decided
// again on its next packet: in Protect, a flow whose rule was removed is cut.
//
// Application rules: a verdict entry with an App decides TCP flows of that
// application, and UDP flows of DNS. Where such an entry changes the
// outcome for a port, a new flow is admitted pending; the programs classify
// its first payload packet (either direction: a MySQL server speaks first)
// and then confirm the flow, or report it as a violation and, in Protect,
// drop it and every later packet of it until the entry expires
// (Timeouts.Denied) or a SYN starts over. The kernel names every
// application agent/appdetect does, with its signatures over the same
// first 128 payload bytes: HTTP/1, HTTP/2, gRPC, TLS, SSH, Redis, DNS (UDP,
// and TCP with its length prefix), PostgreSQL, MySQL (the server's
// greeting), MongoDB and Kafka. gRPC is HTTP/2 whose first request HEADERS
// carry content-type application/grpc: where the policy decides gRPC
// otherwise than HTTP/2, the flow stays pending past the preface and the
// client's frames are walked, by sequence number, across a few packets;
// only the preface and control frames pass before the HEADERS frame
// decides. Its header block is read as HPACK field representations, other
// fields' values skipped by their length: a content-type field whose
// value starts with application/grpc in any ASCII case (grpc-java
// lower-cases it before its check), raw or Huffman coded (the kernel
// decodes the code's first symbols), whichever of several it is (a
// grpc-go server takes any), is gRPC; a whole block without one, HTTP/2.
// What cannot be decided (DATA or an unknown frame first, too many frames
// or packets, a frame header cut by the packet, a block going on past the
// packet or in a CONTINUATION frame before a gRPC content-type, a name
// from the dynamic table, malformed HPACK) names no application: the
// port's own action decides it, so a client cannot pass gRPC off as
// HTTP/2, or the reverse, by the framing of its first request. The first
// request decides the connection: later streams on it are not read, so a
// client whose first request is plain HTTP/2 can follow it with gRPC
// calls (a grpc-go server answers the first with 415 and keeps the
// connection).
// Where no gRPC rule covers a port, gRPC follows the HTTP/2 rules. The
// check judges the bytes the server reads first: a payload whose sequence
// number is not the next to judge (out of order, or forged to be
// classified in their place) is dropped in Protect while the flow stays
// pending, and an IP-fragmented payload counts as no application. Callers
// give rules for other applications without App (agent/node does: an
// allow opens the port, a deny of one application is only reported). A
// flow whose entries were lost mid-stream (LRU eviction, expiry) is
// classified on its next payload packet, which for TLS application data
// does not name TLS: such a flow is cut on an application-restricted port.
//
// Local delivery (Config.LocalDelivery): a packet one guarded workload
// sends to another of this node is decided for both ends at the sender's
// tcx ingress hook: the sender's decision, then, when the destination
// address is one SetLocalEndpoint recorded, the receiver's (its endpoint,
// towards it: the decision, conntrack entries, events and counters its
// egress hook would make). If both pass, the program writes what routing
// through the host would (the workload's MAC as destination, the host-side
// veth's as source, TTL or hop limit less one) and hands the packet into
// the receiver's namespace with bpf_redirect_peer, past host routing,
// netfilter and the receiver's egress hook. Fragments, IPv4 options, IPv6
// extension headers, neighbour discovery, a TTL or hop limit routing would
// exhaust, and a packet to the sender's own interface take the routed
// path, where the receiver's egress hook decides as before. In the
// benchmark (agent/BENCH.md) this brings node-local request/response to
// the figure of no program at all. Local endpoints are
// recorded only by the caller, never learned from packets, and live in a
// pinned map: a restarted agent finds them, DetachInterface removes an
// interface's, and an Open with LocalDelivery off removes all.
//
// Enforcement outlives the process that set it up: maps and links are
// pinned, Close leaves them in place, and the next Open reuses them and
// swaps its freshly loaded programs into the pinned links. Only Destroy
// detaches and unpins. Maps pinned by a release with another map layout
// (entry shape, capacity, flags) are migrated by Open: set aside, their
// entries copied, or converted field by field by name where the value
// changed shape, or (policy) compiled afresh from the recorded verdicts,
// and the links swapped to the new programs only then (migrate_linux.go).
// An Open that fails removes the maps it created and keeps those it found.
package datapath
