//go:build linux

package bpf

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// TestPrivilegedVerifierExecguard loads the exec fallback through the
// kernel verifier, with its CO-RE relocations against the running kernel.
func TestPrivilegedVerifierExecguard(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load eBPF programs")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock: %v", err)
	}
	spec, err := LoadExecguard()
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	for name, m := range spec.Maps {
		if !strings.HasPrefix(name, ".") && m.Pinning != ebpf.PinByName {
			t.Errorf("map %s: pinning %v, want by name (the fallback outlives the agent)", name, m.Pinning)
		}
		m.Pinning = ebpf.PinNone
	}
	var objs ExecguardObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("verifier rejected execguard: %+v", ve)
		}
		t.Fatalf("load execguard: %v", err)
	}
	defer objs.Close()
	info, err := objs.PalisadeExecguard.Info()
	if err != nil {
		t.Fatalf("program info: %v", err)
	}
	if n, err := info.JitedSize(); err == nil && n == 0 {
		t.Errorf("jited size 0")
	}
}
