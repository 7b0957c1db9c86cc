// Package deptest holds the test that keeps Palisade's dependencies
// pointing one way: shared <- policy <- registryscan <- primary, remote,
// agent <- cmd/palisade, with primary, remote and agent never importing
// each other and policy free of raft, gin, quic-go and cilium/ebpf.
package deptest
