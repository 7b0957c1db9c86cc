//go:build linux

package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// TestPrivilegedVerifier loads every program through the kernel verifier.
func TestPrivilegedVerifier(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load eBPF programs")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatalf("remove memlock: %v", err)
	}
	loaders := []struct {
		name string
		spec func() (*ebpf.CollectionSpec, error)
	}{
		{"datapath", LoadDatapath},
		{"exec", LoadExec},
	}
	for _, l := range loaders {
		t.Run(l.name, func(t *testing.T) {
			spec, err := l.spec()
			if err != nil {
				t.Fatalf("load spec: %v", err)
			}
			// Pinning is exercised by the datapath package; here every
			// map is private to the test.
			for _, m := range spec.Maps {
				m.Pinning = ebpf.PinNone
			}
			if len(spec.Programs) == 0 {
				t.Fatalf("spec has no programs")
			}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Fatalf("verifier rejected %s: %+v", l.name, ve)
				}
				t.Fatalf("load %s: %v", l.name, err)
			}
			defer coll.Close()
			for name, p := range coll.Programs {
				info, err := p.Info()
				if err != nil {
					t.Fatalf("program %s info: %v", name, err)
				}
				if n, err := info.JitedSize(); err == nil && n == 0 {
					t.Errorf("program %s: jited size 0", name)
				}
			}
			if got, want := len(coll.Programs), len(spec.Programs); got != want {
				t.Errorf("loaded %d programs, want %d", got, want)
			}
		})
	}
}
