package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
	"github.com/palisade-sec/palisade/shared/store/storetest"
)

// testHub is a hub on a real single-replica store with a federation server
// that reads that store but serves no connections.
func testHub(t *testing.T, remotes ...string) *Hub {
	t.Helper()
	st := storetest.Open(t, "hq")
	ctx := context.Background()
	for _, name := range remotes {
		if err := (members{st}).Add(ctx, fedserver.Member{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.NewCA("hq ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jointoken.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	h := &Hub{st: st, log: slog.New(slog.DiscardHandler)}
	scfg := fedserver.DefaultConfig()
	scfg.Addr = "127.0.0.1:0"
	scfg.CA = ca
	scfg.ServerNames = []string{"127.0.0.1"}
	scfg.TokenKey = key.Public()
	scfg.Tokens = tokenConsumer{st}
	scfg.Members = members{st}
	scfg.Log = storeLog{st}
	scfg.IsCompacted = func(err error) bool { return errors.Is(err, store.ErrCompacted) }
	scfg.OnRolloutChange = func(r rollout.State) {
		if err := persistRollout(ctx, st, r); err != nil {
			t.Errorf("persist rollout: %v", err)
		}
	}
	if h.server, err = fedserver.New(scfg); err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := h.server.Run(stopped); err != nil { // releases the listener
		t.Fatal(err)
	}
	return h
}

func testContext() *gin.Context {
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest(http.MethodPost, "/v1/fed/policy/apply", nil)
	return c
}

// A canary apply writes the objects and the rollout that gates them in one
// transaction: a watcher of the federation keyspace sees the objects'
// revision only once the rollout of that revision is stored.
func TestCanaryApplyCommitsRolloutWithObjects(t *testing.T) {
	h := testHub(t, "east", "west")
	ctx := context.Background()
	first := map[string][]byte{PrefixObjects + "GroupDefinition/a": []byte(`{"kind":"GroupDefinition"}`)}
	res, err := h.writeObjects(testContext(), nil, first, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := res.(ApplyResponse).Revision
	w, err := (storeLog{h.st}).Watch(ctx, base)
	if err != nil {
		t.Fatal(err)
	}

	second := map[string][]byte{PrefixObjects + "GroupDefinition/b": []byte(`{"kind":"GroupDefinition"}`)}
	for k, v := range first {
		second[k] = v
	}
	res, err = h.writeObjects(testContext(), first, second, false, []string{"east"})
	if err != nil {
		t.Fatal(err)
	}
	resp := res.(ApplyResponse)
	if resp.Rollout == "" {
		t.Fatal("no rollout started")
	}
	d, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Revision != resp.Revision {
		t.Fatalf("first change after %d at revision %d, want the apply's %d", base, d.Revision, resp.Revision)
	}
	if got := (storeLog{h.st}).RolloutRevision(); got != d.Revision {
		t.Fatalf("rollout record at revision %d, objects at %d: not one transaction", got, d.Revision)
	}
	stored, _, err := storedRollout(h.st)
	if err != nil || stored == nil {
		t.Fatalf("stored rollout: %v, %v", stored, err)
	}
	if stored.ID != resp.Rollout || stored.Revision != resp.Revision || stored.Base >= resp.Revision || stored.Phase != rollout.PhaseCanary {
		t.Fatalf("stored rollout %s base %d revision %d phase %s; want %s, base below %d, revision %d, canary",
			stored.ID, stored.Base, stored.Revision, stored.Phase, resp.Rollout, resp.Revision, resp.Revision)
	}
	inForce, ok := h.Server().Rollout()
	if !ok || inForce.ID != resp.Rollout || inForce.Revision != resp.Revision {
		t.Fatalf("rollout in force %+v (%v), want %s at revision %d", inForce, ok, resp.Rollout, resp.Revision)
	}
	if max, limited := inForce.Limit("west"); !limited || max >= resp.Revision {
		t.Fatalf("west limited to %d (%v), want held below %d", max, limited, resp.Revision)
	}

	third := map[string][]byte{PrefixObjects + "GroupDefinition/c": []byte(`{"kind":"GroupDefinition"}`)}
	for k, v := range second {
		third[k] = v
	}
	if _, err := h.writeObjects(testContext(), second, third, false, []string{"west"}); err == nil {
		t.Fatal("a second rollout started while the first is in its canary wave")
	}
}

// The rollout record only moves forward: a report of an older copy of the
// rollout, or of a rollout that a newer one replaced, is not written.
func TestPersistRolloutOnlyMovesForward(t *testing.T) {
	st := storetest.Open(t, "hq")
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r1, err := rollout.New("r1", 10, []string{"east"}, now)
	if err != nil {
		t.Fatal(err)
	}
	old := *r1
	if err := r1.SetRevision(11, now); err != nil {
		t.Fatal(err)
	}
	r1done := *r1
	r1done.Phase, r1done.Seq = rollout.PhaseDone, r1.Seq+5
	r2, err := rollout.New("r2", st.Revision(), []string{"west"}, now)
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name    string
		write   rollout.State
		put     bool // written as a new rollout is (plain put), not reported
		wantID  string
		wantSeq uint64
	}{
		{"first report", *r1, false, "r1", r1.Seq},
		{"older copy", old, false, "r1", r1.Seq},
		{"later copy", r1done, false, "r1", r1done.Seq},
		{"new rollout", *r2, true, "r2", r2.Seq},
		{"report of the replaced rollout", r1done, false, "r2", r2.Seq},
	}
	for _, s := range steps {
		if s.put {
			b, _ := json.Marshal(s.write)
			if _, err := st.Put(ctx, KeyRollout, b); err != nil {
				t.Fatal(err)
			}
		} else if err := persistRollout(ctx, st, s.write); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, _, err := storedRollout(st)
		if err != nil || got == nil {
			t.Fatalf("%s: stored rollout %v, %v", s.name, got, err)
		}
		if got.ID != s.wantID || got.Seq != s.wantSeq {
			t.Fatalf("%s: stored %s seq %d, want %s seq %d", s.name, got.ID, got.Seq, s.wantID, s.wantSeq)
		}
	}
	// r2 was stored without a revision: it is bound to its record's.
	got, rev, _ := storedRollout(st)
	if got.Revision != rev {
		t.Fatalf("r2 revision %d, want its record's %d", got.Revision, rev)
	}
}
