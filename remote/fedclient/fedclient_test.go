package fedclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/primary/fedserver"
	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/remote/fedclient"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

func TestJoinStreamAndDrillIn(t *testing.T) {
	f := newFixture(t, nil)
	f.log.Put("fed/rules/early", []byte("v0"))
	east := f.join(t, "east", map[string]string{"env": "prod"})
	west := f.join(t, "west", nil)

	m, ok := f.members.Get("east")
	if !ok || m.Labels["env"] != "prod" || m.CertFingerprint == "" {
		t.Fatalf("member east = %+v, %v; want recorded with labels and certificate", m, ok)
	}
	cert, err := pki.ParseCert(east.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "east" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "remote" {
		t.Fatalf("certificate subject %v, want CN=east O=remote", cert.Subject)
	}
	if f.tokens.Used() != 2 {
		t.Fatalf("tokens used %d, want 2", f.tokens.Used())
	}

	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Cluster", name)
			w.WriteHeader(http.StatusTeapot)
			fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.RequestURI(), body)
		})
	}
	re := startRemote(t, east, nil, func(c *fedclient.Config) { c.Handler = handler("east") })
	rw := startRemote(t, west, nil, func(c *fedclient.Config) { c.Handler = handler("west") })

	rev := f.log.Commit(
		fedproto.Op{Kind: fedproto.OpPut, Key: "fed/rules/a", Value: []byte("A")},
		fedproto.Op{Kind: fedproto.OpDelete, Key: "fed/rules/early"},
	)
	for _, r := range []*remote{re, rw} {
		waitFor(t, "remote applied the commit", func() bool { return r.a.Applied() >= rev })
		if v, _ := r.a.get("fed/rules/a"); v != "A" {
			t.Fatalf("fed/rules/a = %q, want A", v)
		}
		if _, ok := r.a.get("fed/rules/early"); ok {
			t.Fatal("deleted key still present")
		}
	}
	for _, name := range []string{"east", "west"} {
		waitFor(t, name+" acked", ackedBy(f.srv, name, rev))
		st := statusOf(f.srv, name)
		if !st.Connected || !st.Healthy || st.Version != fedproto.Current() || st.LastContact.IsZero() {
			t.Fatalf("status %+v, want connected, healthy, current version", st)
		}
	}
	if st := re.c.Status(); !st.Connected || st.Applied != rev || st.Primary != f.addr {
		t.Fatalf("client status %+v, want connected at %s with revision %d", st, f.addr, rev)
	}

	// Console drill-in over the same connection.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://ignored/v1/echo?x=1", strings.NewReader("hi"))
	resp, err := (&http.Client{Transport: f.srv.RoundTripper("west")}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(body) != "west POST /v1/echo?x=1 hi" || resp.Header.Get("X-Cluster") != "west" {
		t.Fatalf("drill-in: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if _, err := f.srv.Do(ctx, "nobody", &fedproto.Request{Method: "GET", Path: "/"}); !errors.Is(err, fedserver.ErrNotConnected) {
		t.Fatalf("Do to an unknown remote: got %v, want ErrNotConnected", err)
	}
}

func TestJoinErrors(t *testing.T) {
	f := newFixture(t, nil)
	other, err := jointoken.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.NewCA("impostor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	used := f.token(t, jointoken.Options{SingleUse: true}, time.Now())
	f.join(t, "first", nil) // the fixture's own token, to have a member
	if _, err := fedclient.Join(context.Background(), fedclient.JoinConfig{Token: used, Name: "second"}); err != nil {
		t.Fatalf("join with fresh single-use token: %v", err)
	}
	_, forgedText, err := other.Issue(jointoken.Options{Addrs: []string{f.addr}, CAFingerprint: f.ca.Fingerprint(), TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good := f.token(t, jointoken.Options{}, time.Now())
	body, _, _ := strings.Cut(strings.TrimPrefix(good, jointoken.Prefix), ".")
	_, otherSig, _ := strings.Cut(strings.TrimPrefix(forgedText, jointoken.Prefix), ".")
	wrongSig := jointoken.Prefix + body + "." + otherSig

	tests := []struct {
		name  string
		token string
		as    string
		want  error
	}{
		{"forged", forgedText, "x1", jointoken.ErrBadSignature},
		{"wrong signature", wrongSig, "x2", jointoken.ErrBadSignature},
		{"expired", f.token(t, jointoken.Options{TTL: time.Minute}, time.Now().Add(-time.Hour)), "x3", jointoken.ErrExpired},
		{"reused single-use", used, "x4", jointoken.ErrUsed},
		{"CA pin mismatch", f.token(t, jointoken.Options{CAFingerprint: otherCA.Fingerprint()}, time.Now()), "x5", jointoken.ErrCAPinMismatch},
		{"malformed", "pal1.garbage", "x6", jointoken.ErrMalformed},
		{"name taken", good, "first", fedclient.ErrNameTaken},
		{"bad name", good, "Not_A_Label", fedclient.ErrRefused},
	}
	all := []error{jointoken.ErrBadSignature, jointoken.ErrExpired, jointoken.ErrUsed, jointoken.ErrCAPinMismatch, jointoken.ErrMalformed, fedclient.ErrNameTaken, fedclient.ErrRefused}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			membersBefore, usedBefore := f.members.Names(), f.tokens.Used()
			_, err := fedclient.Join(context.Background(), fedclient.JoinConfig{Token: tt.token, Name: tt.as, Timeout: 5 * time.Second})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			for _, other := range all {
				if other != tt.want && errors.Is(err, other) {
					t.Fatalf("error %v also matches %v; want distinct errors", err, other)
				}
			}
			if got := f.members.Names(); len(got) != len(membersBefore) {
				t.Fatalf("members %v after a refused join, want %v", got, membersBefore)
			}
			if f.tokens.Used() != usedBefore {
				t.Fatalf("a refused join consumed a token")
			}
		})
	}
	// The pin mismatch is detected before anything is sent: the message
	// names both CAs.
	_, err = fedclient.Join(context.Background(), fedclient.JoinConfig{Token: f.token(t, jointoken.Options{CAFingerprint: otherCA.Fingerprint()}, time.Now()), Name: "x7"})
	if err == nil || !strings.Contains(err.Error(), f.ca.Fingerprint()) || !strings.Contains(err.Error(), otherCA.Fingerprint()) {
		t.Fatalf("pin mismatch error %v, want both fingerprints", err)
	}
}

func TestResumeAfterReconnectSendsNoSnapshot(t *testing.T) {
	f := newFixture(t, nil)
	id := f.join(t, "east", nil)
	id.Addrs = append([]string{deadAddr(t)}, id.Addrs...) // a replica that is down
	a := newMemApplier()
	r := startRemote(t, id, a, func(c *fedclient.Config) { c.DialTimeout = 300 * time.Millisecond })
	var rev uint64
	for i := range 3 {
		rev = f.log.Put(fmt.Sprintf("k%d", i), []byte("v"))
	}
	waitFor(t, "first three revisions", func() bool { return a.Applied() == rev })
	if err := r.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	waitFor(t, "server saw the disconnect", func() bool { return !statusOf(f.srv, "east").Connected })
	f.log.Put("k1", []byte("changed"))
	rev = f.log.Delete("k0")

	r2 := startRemote(t, id, a, func(c *fedclient.Config) { c.DialTimeout = 300 * time.Millisecond })
	waitFor(t, "resumed revisions", func() bool { return a.Applied() == rev })
	if v, _ := a.get("k1"); v != "changed" {
		t.Fatalf("k1 = %q, want changed", v)
	}
	if _, ok := a.get("k0"); ok {
		t.Fatal("k0 still present")
	}
	st := statusOf(f.srv, "east")
	if a.snapshotCount() != 0 || st.Snapshots != 0 || r2.c.Status().Snapshots != 0 {
		t.Fatalf("snapshots: applier %d, server %d, client %d; want none on resume", a.snapshotCount(), st.Snapshots, r2.c.Status().Snapshots)
	}
	if st.Sessions != 2 || st.Deltas != 5 {
		t.Fatalf("server sessions %d deltas %d, want 2 and 5", st.Sessions, st.Deltas)
	}
}

func TestCompactedHistorySendsSnapshot(t *testing.T) {
	f := newFixture(t, nil)
	id := f.join(t, "east", nil)
	a := newMemApplier()
	r := startRemote(t, id, a, nil)
	rev := f.log.Put("gone", []byte("x"))
	waitFor(t, "first revision", func() bool { return a.Applied() == rev })
	_ = r.stop()
	waitFor(t, "server saw the disconnect", func() bool { return !statusOf(f.srv, "east").Connected })
	for i := range 40 {
		f.log.Put(fmt.Sprintf("key-%02d", i), []byte(strings.Repeat("v", 20)))
	}
	f.log.Delete("gone")
	rev = f.log.Put("last", []byte("1"))
	f.log.Compact(rev - 1)

	r2 := startRemote(t, id, a, nil)
	waitFor(t, "snapshot applied", func() bool { return a.Applied() >= rev })
	_, want, _ := f.log.Snapshot(context.Background())
	got := a.snapshot()
	if len(got) != len(want) {
		t.Fatalf("remote holds %d keys, primary %d", len(got), len(want))
	}
	for _, o := range want {
		if string(got[o.Key]) != string(o.Value) {
			t.Fatalf("key %s = %q, want %q", o.Key, got[o.Key], o.Value)
		}
	}
	if a.snapshotCount() != 1 || r2.c.Status().Snapshots != 1 || statusOf(f.srv, "east").Snapshots != 1 {
		t.Fatalf("snapshots: applier %d client %d server %d, want 1", a.snapshotCount(), r2.c.Status().Snapshots, statusOf(f.srv, "east").Snapshots)
	}
	// Later commits arrive as deltas again.
	rev = f.log.Put("after", []byte("1"))
	waitFor(t, "delta after snapshot", func() bool { return a.Applied() == rev })
}

func TestKick(t *testing.T) {
	f := newFixture(t, nil)
	id := f.join(t, "east", nil)
	r := startRemote(t, id, nil, nil)
	rev := f.log.Put("k", []byte("v"))
	waitFor(t, "applied", func() bool { return r.a.Applied() == rev })
	if err := f.srv.Kick(context.Background(), "east"); err != nil {
		t.Fatal(err)
	}
	if reason := <-r.dismiss; reason != fedproto.DismissKicked {
		t.Fatalf("dismiss reason %q, want kicked", reason)
	}
	if err := <-r.done; !errors.Is(err, fedclient.ErrDismissed) {
		t.Fatalf("run after kick: got %v, want ErrDismissed", err)
	}
	close(r.done)
	if st := r.c.Status(); st.Dismissed != fedproto.DismissKicked || st.Connected {
		t.Fatalf("client status %+v, want dismissed and disconnected", st)
	}
	// The same identity is refused from now on, and Run stops.
	r2 := startRemote(t, id, nil, nil)
	if err := <-r2.done; !errors.Is(err, fedclient.ErrKicked) {
		t.Fatalf("run of a kicked remote: got %v, want ErrKicked", err)
	}
	close(r2.done)
	if reason := <-r2.dismiss; reason != fedproto.DismissKicked {
		t.Fatalf("second dismiss reason %q", reason)
	}
	// And it cannot join again under that name.
	_, err := fedclient.Join(context.Background(), fedclient.JoinConfig{Token: f.token(t, jointoken.Options{}, time.Now()), Name: "east"})
	if !errors.Is(err, fedclient.ErrKicked) {
		t.Fatalf("rejoin after kick: got %v, want ErrKicked", err)
	}
}

func TestDemoteDismissesEveryone(t *testing.T) {
	f := newFixture(t, nil)
	rs := []*remote{startRemote(t, f.join(t, "a", nil), nil, nil), startRemote(t, f.join(t, "b", nil), nil, nil)}
	waitFor(t, "both connected", func() bool { return statusOf(f.srv, "a").Connected && statusOf(f.srv, "b").Connected })
	f.srv.DismissAll(fedproto.DismissDemoted)
	for _, r := range rs {
		if reason := <-r.dismiss; reason != fedproto.DismissDemoted {
			t.Fatalf("reason %q, want demoted", reason)
		}
	}
}

func TestVersionSkewFromClient(t *testing.T) {
	f := newFixture(t, func(c *fedserver.Config) { c.Version = fedproto.Version{Major: 1, Minor: 1} })
	tests := []struct {
		v  fedproto.Version
		ok bool
	}{
		{fedproto.Version{Major: 1, Minor: 1}, true},
		{fedproto.Version{Major: 1, Minor: 0}, true},
		{fedproto.Version{Major: 1, Minor: 2}, false},
		{fedproto.Version{Major: 2, Minor: 1}, false},
	}
	for i, tt := range tests {
		name := fmt.Sprintf("v%d", i)
		r := startRemote(t, f.join(t, name, nil), nil, func(c *fedclient.Config) { c.Version = tt.v })
		if tt.ok {
			waitFor(t, name+" connected", func() bool { return r.c.Status().Connected })
			if got := statusOf(f.srv, name).Version; got != tt.v {
				t.Fatalf("server recorded version %s, want %s", got, tt.v)
			}
			continue
		}
		waitFor(t, name+" refused", func() bool { return r.c.Status().LastError != "" })
		msg := r.c.Status().LastError
		if !strings.Contains(msg, tt.v.String()) || !strings.Contains(msg, "1.1") {
			t.Fatalf("refusal %q, want both versions named", msg)
		}
		if r.c.Status().Connected {
			t.Fatalf("%s connected with version %s", name, tt.v)
		}
	}
}

// targetByLabel treats an object's value "k=v" as a label selector.
func targetByLabel(m fedserver.Member, _ string, value []byte) bool {
	k, v, ok := strings.Cut(string(value), "=")
	return !ok || m.Labels[k] == v
}

func TestTargeting(t *testing.T) {
	f := newFixture(t, func(c *fedserver.Config) { c.Target = targetByLabel })
	prod := startRemote(t, f.join(t, "prod", map[string]string{"env": "prod"}), nil, nil)
	dev := startRemote(t, f.join(t, "dev", map[string]string{"env": "dev"}), nil, nil)
	f.log.Put("everyone", []byte("all"))
	rev := f.log.Put("rule", []byte("env=prod"))
	for _, r := range []*remote{prod, dev} {
		waitFor(t, "applied", func() bool { return r.a.Applied() == rev })
	}
	if _, ok := prod.a.get("rule"); !ok {
		t.Fatal("prod lacks the rule targeting env=prod")
	}
	if _, ok := dev.a.get("rule"); ok {
		t.Fatal("dev received a rule targeting env=prod")
	}
	for _, r := range []*remote{prod, dev} {
		if v, _ := r.a.get("everyone"); v != "all" {
			t.Fatal("untargeted object missing")
		}
	}
	// Retarget: the rule leaves prod and reaches dev.
	rev = f.log.Put("rule", []byte("env=dev"))
	for _, r := range []*remote{prod, dev} {
		waitFor(t, "applied", func() bool { return r.a.Applied() == rev })
	}
	if _, ok := prod.a.get("rule"); ok {
		t.Fatal("prod kept a rule no longer targeting it")
	}
	if v, _ := dev.a.get("rule"); v != "env=dev" {
		t.Fatalf("dev rule = %q", v)
	}
	// A fresh remote's snapshot is filtered too.
	f.log.Compact(f.log.Revision())
	late := startRemote(t, f.join(t, "late", map[string]string{"env": "prod"}), nil, nil)
	waitFor(t, "late snapshot", func() bool { return late.a.Applied() == f.log.Revision() })
	if _, ok := late.a.get("rule"); ok {
		t.Fatal("snapshot carried an object not targeting the remote")
	}
}

func TestRolloutCanaryThenRest(t *testing.T) {
	var (
		mu      sync.Mutex
		changes []rollout.State
	)
	f := newFixture(t, func(c *fedserver.Config) {
		c.OnRolloutChange = func(s rollout.State) { mu.Lock(); changes = append(changes, s); mu.Unlock() }
	})
	rs := map[string]*remote{}
	for _, n := range []string{"canary", "a", "b"} {
		rs[n] = startRemote(t, f.join(t, n, nil), nil, nil)
	}
	base := f.log.Put("rule", []byte("v1"))
	for n, r := range rs {
		waitFor(t, n+" at base", func() bool { return r.a.Applied() == base })
		waitFor(t, n+" acked base", ackedBy(f.srv, n, base))
	}

	st, err := rollout.New("r1", base, []string{"canary"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Pause(time.Now()); err != nil {
		t.Fatal(err)
	}
	// The change and the rollout that gates it are one commit, as the
	// hub writes them.
	rev := f.log.CommitRollout(st, fedproto.Op{Kind: fedproto.OpPut, Key: "rule", Value: []byte("v2")})
	f.srv.SyncRollout()
	waitFor(t, "canary acked", ackedBy(f.srv, "canary", rev))
	for _, n := range []string{"a", "b"} {
		waitFor(t, n+" held", func() bool { return statusOf(f.srv, n).HeldAt == base })
		if got := rs[n].a.Applied(); got != base {
			t.Fatalf("%s applied %d during the canary wave, want %d", n, got, base)
		}
	}
	if cur, _ := f.srv.Rollout(); cur.Phase != rollout.PhaseCanary {
		t.Fatalf("paused rollout moved to %s", cur.Phase)
	}
	if _, err := f.srv.UpdateRollout(func(s *rollout.State) error { return s.Resume(time.Now()) }); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		waitFor(t, n+" released", func() bool { return rs[n].a.Applied() == rev })
	}
	waitFor(t, "rollout done", func() bool { cur, _ := f.srv.Rollout(); return cur.Phase == rollout.PhaseDone })
	waitFor(t, "done reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(changes) > 0 && changes[len(changes)-1].Phase == rollout.PhaseDone
	})
	if statusOf(f.srv, "a").HeldAt != 0 {
		t.Fatal("a still marked held")
	}
}

func TestRolloutRollback(t *testing.T) {
	f := newFixture(t, nil)
	canary := startRemote(t, f.join(t, "canary", nil), nil, nil)
	rest := startRemote(t, f.join(t, "rest", nil), nil, nil)
	base := f.log.Put("rule", []byte("good"))
	waitFor(t, "rest at base", func() bool { return rest.a.Applied() == base })

	st, _ := rollout.New("r", base, []string{"canary"}, time.Now())
	if err := st.Pause(time.Now()); err != nil { // the operator looks at the canary first
		t.Fatal(err)
	}
	bad := f.log.CommitRollout(st, fedproto.Op{Kind: fedproto.OpPut, Key: "rule", Value: []byte("bad")})
	f.srv.SyncRollout()
	waitFor(t, "canary got the bad revision", func() bool { return canary.a.Applied() == bad })
	waitFor(t, "rest held", func() bool { return statusOf(f.srv, "rest").HeldAt == base })

	// Roll back: write the old objects as a new revision, then tell the
	// rollout.
	back := f.log.Put("rule", []byte("good"))
	if _, err := f.srv.UpdateRollout(func(s *rollout.State) error { return s.Rollback(back, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*remote{canary, rest} {
		waitFor(t, "rollback applied", func() bool { return r.a.Applied() >= back })
		if v, _ := r.a.get("rule"); v != "good" {
			t.Fatalf("rule = %q after rollback", v)
		}
	}
	for _, v := range rest.a.seen("rule") {
		if v == "bad" {
			t.Fatalf("held remote saw the rolled-back value: history %v", rest.a.seen("rule"))
		}
	}
}

func TestApplyErrorIsReported(t *testing.T) {
	f := newFixture(t, nil)
	a := newMemApplier()
	a.fail = errors.New("store: disk full")
	startRemote(t, f.join(t, "east", nil), a, nil)
	f.log.Put("k", []byte("v"))
	waitFor(t, "unhealthy ack", func() bool { return strings.Contains(statusOf(f.srv, "east").LastError, "disk full") })
	if statusOf(f.srv, "east").Healthy {
		t.Fatal("remote reported healthy after an apply error")
	}
	a.mu.Lock()
	a.fail = nil
	a.mu.Unlock()
	rev := f.log.Put("k2", []byte("v"))
	waitFor(t, "recovered", func() bool { return statusOf(f.srv, "east").AckedRevision == rev && statusOf(f.srv, "east").Healthy })
}

func TestPrimaryRestartResumes(t *testing.T) {
	f := newFixture(t, nil)
	a := newMemApplier()
	r := startRemote(t, f.join(t, "east", nil), a, nil)
	rev := f.log.Put("k", []byte("1"))
	waitFor(t, "applied", func() bool { return a.Applied() == rev })

	f.stop() // the primary replica goes away...
	waitFor(t, "client saw the loss", func() bool { return !r.c.Status().Connected })
	if st := r.c.Status(); st.DisconnectedSince.IsZero() || st.Applied != rev {
		t.Fatalf("status while down %+v, want disconnected since a time, still at %d", st, rev)
	}
	rev = f.log.Put("k", []byte("2")) // ...while the keyspace moves on
	f.start(t)                        // another replica on the same address
	waitFor(t, "resumed", func() bool { return a.Applied() == rev })
	if v, _ := a.get("k"); v != "2" {
		t.Fatalf("k = %q, want 2", v)
	}
	if a.snapshotCount() != 0 || r.c.Status().Sessions != 2 {
		t.Fatalf("snapshots %d sessions %d, want 0 and 2", a.snapshotCount(), r.c.Status().Sessions)
	}
}

func TestLeave(t *testing.T) {
	f := newFixture(t, nil)
	id := f.join(t, "east", nil)
	r := startRemote(t, id, nil, nil)
	waitFor(t, "connected", func() bool { return r.c.Status().Connected })
	if err := fedclient.Leave(context.Background(), id, 5*time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if _, ok := f.members.Get("east"); ok {
		t.Fatal("member still recorded after leaving")
	}
	if reason := <-r.dismiss; reason != fedproto.DismissLeft {
		t.Fatalf("running client dismissed with %q, want left", reason)
	}
	// Leaving twice: no longer a member.
	if err := fedclient.Leave(context.Background(), id, 5*time.Second); !errors.Is(err, fedclient.ErrNotMember) {
		t.Fatalf("second leave: got %v, want ErrNotMember", err)
	}
	// The name is free again.
	f.join(t, "east", nil)
}
