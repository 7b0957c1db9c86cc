//go:build linux

package datapath

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The generation decides whether established flows are judged again, so
// it must move with every change and only then: a restarted agent
// applying the table in force must not send every flow of the node back
// through the policy.
func TestPrivilegedGenerationMovesOnlyOnChange(t *testing.T) {
	skipUnlessRoot(t)
	cfg := testConfig(t)
	d := openDatapath(t, cfg)
	defer func() {
		if err := d.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	if err := d.ApplyTable(baseTable(ModeProtect)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	base := d.Generation()
	extra := VerdictEntry{SrcID: idA, DstID: idB, Proto: unix.IPPROTO_TCP, PortLo: 9090, PortHi: 9090, Action: ActionAllow, RuleID: 9}
	steps := []struct {
		name    string
		apply   func() error
		changed bool
	}{
		{"same table again", func() error { return d.ApplyTable(baseTable(ModeProtect)) }, false},
		{"empty diff", func() error { return d.ApplyDiff(Diff{}) }, false},
		{"reopen, same table", func() error {
			if err := d.Close(); err != nil {
				return err
			}
			d = openDatapath(t, cfg)
			return d.ApplyTable(baseTable(ModeProtect))
		}, false},
		{"re-add a verdict in force", func() error { return d.ApplyDiff(Diff{AddVerdicts: baseTable(ModeProtect).Verdicts[:1]}) }, false},
		{"add a verdict", func() error { return d.ApplyDiff(Diff{AddVerdicts: []VerdictEntry{extra}}) }, true},
		{"remove it", func() error { return d.ApplyDiff(Diff{RemoveVerdicts: []VerdictEntry{extra}}) }, true},
		{"mode change", func() error { return d.ApplyTable(baseTable(ModeMonitor)) }, true},
		{"same table after a change", func() error { return d.ApplyTable(baseTable(ModeMonitor)) }, false},
	}
	for _, s := range steps {
		before := d.Generation()
		if err := s.apply(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if moved := d.Generation() != before; moved != s.changed {
			t.Errorf("%s: generation %d -> %d, want moved=%v", s.name, before, d.Generation(), s.changed)
		}
	}
	if d.Generation() == base {
		t.Errorf("generation never moved")
	}
}
