// Package rollout is the state machine of a staged federation rollout: which
// remotes may receive revisions above a base revision, in waves (canaries
// first, then every other remote once each canary applied the rolled-out
// revision and reported healthy), with pause, resume and rollback.
//
// A State is plain data that marshals to JSON, so the primary keeps it in
// its replicated store; the federation server consults it (Limit, Resync)
// before sending each revision and moves it forward (Advance) as acks come
// in. A new rollout is written in the same store transaction as the change
// it rolls out, with Revision 0: Bind then records the revision of that
// transaction, so the change never becomes visible without the rollout
// that gates it. Rolling back is two steps for the caller: write the
// previous objects as a new revision, then call Rollback with that revision.
package rollout

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Phase is where a rollout stands.
type Phase string

// Phases.
const (
	// PhaseCanary: only canaries receive revisions above Base.
	PhaseCanary Phase = "canary"
	// PhaseRest: every remote receives everything; waiting for all acks.
	PhaseRest Phase = "rest"
	// PhaseDone: every connected remote acked Revision.
	PhaseDone Phase = "done"
	// PhaseRolledBack: the caller wrote the previous objects back as
	// RollbackRevision; remotes that never got Revision skip it.
	PhaseRolledBack Phase = "rolled-back"
)

// Errors.
var (
	ErrNoCanaries  = errors.New("rollout: no canary remotes")
	ErrBadRevision = errors.New("rollout: bad revision")
	ErrFinished    = errors.New("rollout: rollout already finished")
)

// State is one rollout.
type State struct {
	ID string `json:"id"`
	// Base is the last revision every remote may receive during the canary
	// phase (the revision committed before the rollout's change).
	Base uint64 `json:"base"`
	// Revision is the revision being rolled out; 0 until SetRevision.
	Revision uint64 `json:"revision"`
	// Canaries are the remotes of the first wave.
	Canaries []string `json:"canaries"`
	Phase    Phase    `json:"phase"`
	// Paused stops the rollout from moving to the next wave.
	Paused bool `json:"paused"`
	// RollbackRevision is the revision that restored the previous objects.
	RollbackRevision uint64 `json:"rollbackRevision,omitempty"`
	// Message says why the rollout last changed (for example which canary
	// was unhealthy).
	Message string `json:"message,omitempty"`
	// Seq counts the changes made to the rollout: of two copies of the
	// same rollout, the one with the higher Seq is the newer.
	Seq       uint64    `json:"seq"`
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// New starts a rollout that holds every remote but the canaries at base.
func New(id string, base uint64, canaries []string, now time.Time) (*State, error) {
	if len(canaries) == 0 {
		return nil, ErrNoCanaries
	}
	c := slices.Clone(canaries)
	slices.Sort(c)
	c = slices.Compact(c)
	return &State{ID: id, Base: base, Canaries: c, Phase: PhaseCanary, Seq: 1, StartedAt: now, UpdatedAt: now,
		Message: fmt.Sprintf("canary wave: %d remote(s)", len(c))}, nil
}

// SetRevision records the revision that carries the rolled-out change.
func (s *State) SetRevision(rev uint64, now time.Time) error {
	if rev <= s.Base {
		return fmt.Errorf("%w: revision %d is not above base %d", ErrBadRevision, rev, s.Base)
	}
	s.Revision, s.UpdatedAt = rev, now
	s.Seq++
	return nil
}

// Bind records that the rollout was committed at revision rev together
// with its change, when no revision was set yet: rev is then the rolled-out
// revision. It reports whether it set the revision.
func (s *State) Bind(rev uint64) bool {
	if s.Revision != 0 || rev <= s.Base {
		return false
	}
	s.Revision = rev
	return true
}

// Newer reports whether s is a later copy of the same rollout than o, or
// another rollout (a different ID is never older: rollouts are stored in
// commit order).
func (s *State) Newer(o *State) bool {
	return o == nil || s.ID != o.ID || s.Seq > o.Seq
}

// IsCanary reports whether remote is in the first wave.
func (s *State) IsCanary(remote string) bool {
	_, ok := slices.BinarySearch(s.Canaries, remote)
	return ok
}

// Limit returns the highest revision remote may receive now and whether
// it is limited at all.
func (s *State) Limit(remote string) (maxRev uint64, limited bool) {
	if s == nil || s.Phase != PhaseCanary || s.IsCanary(remote) {
		return 0, false
	}
	return s.Base, true
}

// Resync reports whether a remote that applied up to applied and is about
// to receive rev should instead get a fresh snapshot: after a rollback, a
// remote that never received Revision skips the rolled-back revisions.
func (s *State) Resync(remote string, applied, rev uint64) bool {
	return s != nil && s.Phase == PhaseRolledBack && !s.IsCanary(remote) &&
		applied <= s.Base && rev > s.Base && rev <= s.RollbackRevision
}

// Remote is what Advance needs to know about one remote.
type Remote struct {
	Name      string
	Connected bool
	Acked     uint64
	Healthy   bool
	Error     string
}

// Advance moves the rollout forward given the remotes' acks and reports
// whether it changed. An unhealthy canary that acked Revision pauses the
// rollout.
func (s *State) Advance(remotes []Remote, now time.Time) bool {
	if s.Revision == 0 || s.Paused {
		return false
	}
	byName := make(map[string]Remote, len(remotes))
	for _, r := range remotes {
		byName[r.Name] = r
	}
	switch s.Phase {
	case PhaseCanary:
		for _, c := range s.Canaries {
			r, ok := byName[c]
			if !ok || r.Acked < s.Revision {
				return false
			}
			if !r.Healthy {
				s.Paused, s.UpdatedAt = true, now
				s.Seq++
				s.Message = fmt.Sprintf("paused: canary %s unhealthy at revision %d: %s", c, r.Acked, r.Error)
				return true
			}
		}
		s.Phase, s.UpdatedAt = PhaseRest, now
		s.Seq++
		s.Message = "every canary applied the revision and is healthy: released to every remote"
		return true
	case PhaseRest:
		for _, r := range remotes {
			if r.Connected && r.Acked < s.Revision {
				return false
			}
		}
		s.Phase, s.UpdatedAt = PhaseDone, now
		s.Seq++
		s.Message = "every connected remote applied the revision"
		return true
	}
	return false
}

// Pause stops the rollout from advancing.
func (s *State) Pause(now time.Time) error {
	if s.finished() {
		return fmt.Errorf("%w: %s", ErrFinished, s.Phase)
	}
	s.Paused, s.UpdatedAt, s.Message = true, now, "paused by operator"
	s.Seq++
	return nil
}

// Resume lets a paused rollout advance again.
func (s *State) Resume(now time.Time) error {
	if s.finished() {
		return fmt.Errorf("%w: %s", ErrFinished, s.Phase)
	}
	s.Paused, s.UpdatedAt, s.Message = false, now, "resumed by operator"
	s.Seq++
	return nil
}

// Rollback records that the caller wrote the objects of Base back as
// revision rev; held remotes are released and skip the rolled-back change.
func (s *State) Rollback(rev uint64, now time.Time) error {
	if s.Phase == PhaseRolledBack {
		return fmt.Errorf("%w: %s", ErrFinished, s.Phase)
	}
	if rev <= s.Revision || rev <= s.Base {
		return fmt.Errorf("%w: rollback revision %d must be above %d", ErrBadRevision, rev, max(s.Revision, s.Base))
	}
	s.Phase, s.RollbackRevision, s.Paused, s.UpdatedAt = PhaseRolledBack, rev, false, now
	s.Seq++
	s.Message = fmt.Sprintf("rolled back to the objects of revision %d as revision %d", s.Base, rev)
	return nil
}

func (s *State) finished() bool { return s.Phase == PhaseDone || s.Phase == PhaseRolledBack }
