// Package storetest opens real single-replica stores on loopback for the
// tests of packages built on the replicated store.
package storetest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/shared/store"
)

// Open starts a single-replica store in a temporary directory, waits until
// it leads, and closes it when the test ends.
func Open(t testing.TB, name string) *store.Store {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Name = name
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr = FreeAddr(t)
	cfg.GossipAddr = FreeAddr(t)
	cfg.APIAddr = "127.0.0.1:1"
	cfg.BootstrapExpect = 1
	st, err := store.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	deadline := time.Now().Add(20 * time.Second)
	for !st.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("store: no leader after 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return st
}

// FreeAddr returns a loopback address free for TCP and UDP.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatal(fmt.Errorf("no loopback port free for TCP and UDP"))
	return ""
}
