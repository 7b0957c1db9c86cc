package fedserver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

// recordLog is a Log whose only content is a stored rollout record; the
// tests drive the order of commits, installs and acks by hand.
type recordLog struct {
	mu  sync.Mutex
	r   *rollout.State
	rev uint64
}

func (l *recordLog) store(r *rollout.State, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cp := *r
	l.r, l.rev = &cp, rev
}

func (l *recordLog) RolloutRevision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

func (l *recordLog) StoredRollout() (*rollout.State, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.r == nil {
		return nil, 0, nil
	}
	cp := *l.r
	cp.Bind(l.rev)
	return &cp, l.rev, nil
}

func (l *recordLog) Watch(context.Context, uint64) (Watcher, error) {
	return nil, errors.New("recordLog: no watch")
}

func (l *recordLog) Snapshot(context.Context) (uint64, []fedproto.Object, error) {
	return l.rev, nil, nil
}

type noMembers struct{}

func (noMembers) Get(string) (Member, bool)            { return Member{}, false }
func (noMembers) Add(context.Context, Member) error    { return nil }
func (noMembers) Kick(context.Context, string) error   { return nil }
func (noMembers) Remove(context.Context, string) error { return nil }

type noTokens struct{}

func (noTokens) Consume(context.Context, string, time.Time) error { return nil }

var _ jointoken.Consumer = noTokens{}

// gateServer is a Server that never serves: its listener is closed at once
// and remotes appear as status records.
type gateServer struct {
	*Server
	log     *recordLog
	mu      sync.Mutex
	reports []rollout.State
}

func newGateServer(t *testing.T, remotes ...string) *gateServer {
	t.Helper()
	ca, err := pki.NewCA("gate ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jointoken.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	g := &gateServer{log: &recordLog{}}
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.CA = ca
	cfg.ServerNames = []string{"127.0.0.1"}
	cfg.TokenKey = key.Public()
	cfg.Tokens = noTokens{}
	cfg.Members = noMembers{}
	cfg.Log = g.log
	cfg.OnRolloutChange = func(r rollout.State) {
		g.mu.Lock()
		g.reports = append(g.reports, r)
		g.mu.Unlock()
	}
	if g.Server, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Run(ctx); err != nil { // releases the listener
		t.Fatal(err)
	}
	g.Server.mu.Lock()
	for _, name := range remotes {
		g.remoteLocked(name, Member{}).st.Connected = true
	}
	g.Server.mu.Unlock()
	return g
}

func (g *gateServer) lastReport() (rollout.State, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reports) == 0 {
		return rollout.State{}, false
	}
	return g.reports[len(g.reports)-1], true
}

func (g *gateServer) phase(t *testing.T) rollout.Phase {
	t.Helper()
	r, ok := g.Rollout()
	if !ok {
		t.Fatal("no rollout in force")
	}
	return r.Phase
}

var gateNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// A rollout installed after its canary already acked the rolled-out
// revision must move on: no further ack will come to move it.
func TestRolloutInstalledAfterAcksAdvances(t *testing.T) {
	installs := []struct {
		name    string
		install func(g *gateServer, r *rollout.State)
	}{
		{"stored record", func(g *gateServer, r *rollout.State) {
			g.log.store(r, 11)
			g.SyncRollout()
		}},
	}
	for _, tc := range installs {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateServer(t, "east", "west")
			g.noteAck("east", &fedproto.Ack{Revision: 11, Healthy: true})
			g.noteAck("west", &fedproto.Ack{Revision: 10, Healthy: true})
			r, err := rollout.New("r1", 10, []string{"east"}, gateNow)
			if err != nil {
				t.Fatal(err)
			}
			tc.install(g, r)
			if got := g.phase(t); got != rollout.PhaseRest {
				t.Fatalf("phase after install = %s, want %s (east acked 11 before the install)", got, rollout.PhaseRest)
			}
			if rep, ok := g.lastReport(); !ok || rep.Phase != rollout.PhaseRest {
				t.Fatalf("reported %+v (%v), want phase %s persisted", rep, ok, rollout.PhaseRest)
			}
			g.noteAck("west", &fedproto.Ack{Revision: 11, Healthy: true})
			if got := g.phase(t); got != rollout.PhaseDone {
				t.Fatalf("phase after west acked = %s, want %s", got, rollout.PhaseDone)
			}
		})
	}
}

// A revision committed together with the rollout that holds it back is
// held for non-canaries even though nothing installed that rollout yet:
// the push loop reads the rollout of the revision it is about to send.
func TestRevisionGatedByRolloutCommittedWithIt(t *testing.T) {
	g := newGateServer(t, "east", "west")
	r, err := rollout.New("r1", 10, []string{"east"}, gateNow)
	if err != nil {
		t.Fatal(err)
	}
	g.log.store(r, 11) // objects and rollout at revision 11, Revision bound on read
	done, cancel := context.WithCancel(context.Background())
	cancel() // waitGate returns ctx.Err() instead of blocking when it holds

	cases := []struct {
		remote string
		rev    uint64
		held   bool
	}{
		{"west", 11, true},
		{"west", 10, false},
		{"east", 11, false},
	}
	for _, c := range cases {
		err := g.waitGate(done, c.remote, c.rev)
		if held := err != nil; held != c.held {
			t.Errorf("waitGate(%s, %d): held = %v (err %v), want %v", c.remote, c.rev, held, err, c.held)
		}
	}
	var west RemoteStatus
	for _, st := range g.Status() {
		if st.Name == "west" {
			west = st
		}
	}
	if west.HeldAt != 10 {
		t.Errorf("west HeldAt = %d, want 10", west.HeldAt)
	}
	if got, ok := g.Rollout(); !ok || got.Revision != 11 || got.Base != 10 {
		t.Errorf("rollout in force = %+v (%v), want revision 11 over base 10", got, ok)
	}
}

// A record older than the state in force never replaces it: neither a
// record at or below the installed one, nor a later record of an older copy
// of the same rollout. A record of another rollout does.
func TestStaleRolloutRecordIgnored(t *testing.T) {
	g := newGateServer(t, "east", "west")
	r, err := rollout.New("r1", 10, []string{"east"}, gateNow)
	if err != nil {
		t.Fatal(err)
	}
	g.log.store(r, 11)
	g.SyncRollout()
	g.noteAck("east", &fedproto.Ack{Revision: 11, Healthy: true})
	if got := g.phase(t); got != rollout.PhaseRest {
		t.Fatalf("phase = %s, want %s", got, rollout.PhaseRest)
	}
	// The first copy of r1, written again later (a report that lost a race).
	g.log.store(r, 12)
	g.SyncRollout()
	if got := g.phase(t); got != rollout.PhaseRest {
		t.Fatalf("phase after an older copy was stored = %s, want %s", got, rollout.PhaseRest)
	}
	if _, limited := g.Server.gate.Load().roll.Limit("west"); limited {
		t.Fatal("west held again by an older copy of the rollout")
	}
	r2, err := rollout.New("r2", 12, []string{"west"}, gateNow)
	if err != nil {
		t.Fatal(err)
	}
	g.log.store(r2, 13)
	g.SyncRollout()
	if got, _ := g.Rollout(); got.ID != "r2" || got.Revision != 13 || got.Phase != rollout.PhaseCanary {
		t.Fatalf("rollout in force = %s rev %d phase %s, want r2 rev 13 canary", got.ID, got.Revision, got.Phase)
	}
}
