package fedclient_test

import (
	"context"
	"errors"
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/fedserver/fedservertest"
	"github.com/palisade-sec/palisade/remote/fedclient"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

// These tests run the real primary server (primary/fedserver) on loopback:
// the remote's client is only meaningful against it. The import is
// test-only; the packages themselves do not depend on each other.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	ca      *pki.CA
	key     *jointoken.Key
	log     *fedservertest.Log
	members *fedservertest.Members
	tokens  *fedservertest.Tokens
	srv     *fedserver.Server
	addr    string
	cfg     fedserver.Config
	stop    func()
}

func newFixture(t *testing.T, mod func(*fedserver.Config)) *fixture {
	t.Helper()
	ca, err := pki.NewCA("primary ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jointoken.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, key: key, log: fedservertest.NewLog(), members: fedservertest.NewMembers(), tokens: fedservertest.NewTokens()}
	cfg := fedserver.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Primary = "hub"
	cfg.CA = ca
	cfg.ServerNames = []string{"127.0.0.1"}
	cfg.TokenKey = key.Public()
	cfg.Tokens = f.tokens
	cfg.Members = f.members
	cfg.Log = f.log
	cfg.SnapshotChunk = 256 // several chunks even for small test states
	if mod != nil {
		mod(&cfg)
	}
	f.cfg = cfg
	f.start(t)
	return f
}

// start runs a server on f.cfg (on f.addr once known).
func (f *fixture) start(t *testing.T) {
	t.Helper()
	cfg := f.cfg
	if f.addr != "" {
		cfg.Addr = f.addr
	}
	srv, err := fedserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv, f.addr = srv, srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	f.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server run: %v", err)
		}
	}
	t.Cleanup(f.stop)
}

func (f *fixture) token(t *testing.T, o jointoken.Options, issued time.Time) string {
	t.Helper()
	if o.Addrs == nil {
		o.Addrs = []string{f.addr}
	}
	if o.CAFingerprint == "" {
		o.CAFingerprint = f.ca.Fingerprint()
	}
	if o.TTL == 0 {
		o.TTL = time.Hour
	}
	_, s, err := f.key.Issue(o, issued)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) join(t *testing.T, name string, labels map[string]string) *fedclient.Identity {
	t.Helper()
	id, err := fedclient.Join(context.Background(), fedclient.JoinConfig{
		Token: f.token(t, jointoken.Options{SingleUse: true}, time.Now()), Name: name, Labels: labels,
	})
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	return id
}

// remote is a running client with its in-memory applier.
type remote struct {
	c       *fedclient.Client
	a       *memApplier
	done    chan error
	cancel  context.CancelFunc
	dismiss chan fedproto.DismissReason
}

func startRemote(t *testing.T, id *fedclient.Identity, a *memApplier, mod func(*fedclient.Config)) *remote {
	t.Helper()
	if a == nil {
		a = newMemApplier()
	}
	r := &remote{a: a, done: make(chan error, 1), dismiss: make(chan fedproto.DismissReason, 1)}
	cfg := fedclient.DefaultConfig()
	cfg.Identity = id
	cfg.Applier = a
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	cfg.OnDismiss = func(reason fedproto.DismissReason) { r.dismiss <- reason }
	if mod != nil {
		mod(&cfg)
	}
	c, err := fedclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends the client and returns what Run returned (once).
func (r *remote) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

// memApplier is an in-memory Applier that records every value a key held.
type memApplier struct {
	mu        sync.Mutex
	state     map[string][]byte
	applied   uint64
	history   map[string][]string
	snapshots int
	fail      error
}

func newMemApplier() *memApplier {
	return &memApplier{state: map[string][]byte{}, history: map[string][]string{}}
}

func (a *memApplier) Apply(_ context.Context, d fedproto.Delta) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	if d.Revision <= a.applied {
		return nil
	}
	for _, op := range d.Ops {
		if op.Kind == fedproto.OpDelete {
			delete(a.state, op.Key)
			continue
		}
		a.state[op.Key] = op.Value
		a.history[op.Key] = append(a.history[op.Key], string(op.Value))
	}
	a.applied = d.Revision
	return nil
}

func (a *memApplier) ApplySnapshot(_ context.Context, s fedproto.Snapshot) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state = map[string][]byte{}
	for _, o := range s.Objects {
		a.state[o.Key] = o.Value
		a.history[o.Key] = append(a.history[o.Key], string(o.Value))
	}
	a.applied = s.Revision
	a.snapshots++
	return nil
}

func (a *memApplier) Applied() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

func (a *memApplier) snapshotCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.snapshots
}

func (a *memApplier) get(key string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.state[key]
	return string(v), ok
}

func (a *memApplier) snapshot() map[string][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.state)
}

func (a *memApplier) seen(key string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.history[key]...)
}

// waitFor polls cond until it holds; the deadline only bounds a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusOf(srv *fedserver.Server, name string) fedserver.RemoteStatus {
	for _, st := range srv.Status() {
		if st.Name == name {
			return st
		}
	}
	return fedserver.RemoteStatus{}
}

func ackedBy(srv *fedserver.Server, name string, rev uint64) func() bool {
	return func() bool { return statusOf(srv, name).AckedRevision >= rev }
}

// deadAddr is a loopback UDP address nobody answers on.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
