package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/shared/store"
)

// memKV is an in-memory KV with the store's transaction semantics, enough
// for this package's unit tests.
type memKV struct {
	mu  sync.Mutex
	m   map[string]store.KV
	rev uint64
}

func newMemKV() *memKV { return &memKV{m: map[string]store.KV{}} }

func (k *memKV) Get(key string) (store.KV, bool, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return v, ok, k.rev
}

func (k *memKV) List(prefix string) ([]store.KV, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []store.KV
	for key, v := range k.m {
		if strings.HasPrefix(key, prefix) {
			out = append(out, v)
		}
	}
	return out, k.rev
}

func (k *memKV) Txn(_ context.Context, txn store.Txn) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rev++
	for _, c := range txn.Conds {
		v, ok := k.m[c.Key]
		if (c.Kind == store.CondAbsent && ok) || (c.Kind == store.CondExists && !ok) ||
			(c.Kind == store.CondModRevision && (!ok || v.ModRevision != c.ModRevision)) {
			return k.rev, &store.ConflictError{Key: c.Key, Reason: "test"}
		}
	}
	for _, op := range txn.Ops {
		switch op.Type {
		case store.OpPut:
			k.m[op.Key] = store.KV{Key: op.Key, Value: op.Value, ModRevision: k.rev}
		case store.OpDelete:
			delete(k.m, op.Key)
		}
	}
	return k.rev, nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newAuth(t *testing.T) (*Authenticator, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.Now = c.now
	a, err := New(newMemKV(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

var ctx = context.Background()

func TestBootstrapCreatesAdminOnce(t *testing.T) {
	a, _ := newAuth(t)
	pw, gen, err := a.Bootstrap(ctx, "")
	if err != nil || !gen || len(pw) < 16 {
		t.Fatalf("Bootstrap = %q %v %v", pw, gen, err)
	}
	if _, _, err := a.Login(ctx, "admin", pw, "c"); err != nil {
		t.Fatalf("login with generated password: %v", err)
	}
	pw2, gen2, err := a.Bootstrap(ctx, "something-else")
	if err != nil || gen2 || pw2 != "" {
		t.Fatalf("second Bootstrap = %q %v %v, want no-op", pw2, gen2, err)
	}
	users, _ := a.ListUsers()
	if len(users) != 1 || users[0].PasswordHash != "" {
		t.Fatalf("ListUsers = %+v, want one admin without hash", users)
	}
}

func TestLoginAndSessions(t *testing.T) {
	a, c := newAuth(t)
	if err := a.CreateUser(ctx, "alice", RoleReader, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Login(ctx, "alice", "wrong password", "c1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, _, err := a.Login(ctx, "nobody", "whatever1", "c1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	tok, sess, err := a.Login(ctx, "alice", "correct horse", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if sess.Role != RoleReader {
		t.Fatalf("role = %s", sess.Role)
	}
	got, err := a.Authenticate(ctx, tok)
	if err != nil || got.User != "alice" {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	if _, err := a.Authenticate(ctx, tok+"x"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := a.Authenticate(ctx, ""); !errors.Is(err, ErrNoSession) {
		t.Fatalf("empty token: %v", err)
	}
	// Use keeps the session alive past the idle timeout...
	for i := 0; i < 4; i++ {
		c.add(20 * time.Minute)
		if _, err := a.Authenticate(ctx, tok); err != nil {
			t.Fatalf("active session expired after %d uses: %v", i, err)
		}
	}
	// ...idleness ends it.
	c.add(31 * time.Minute)
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("idle session: %v", err)
	}
	if n, err := a.PruneSessions(ctx); err != nil || n != 1 {
		t.Fatalf("PruneSessions = %d, %v", n, err)
	}
	// Logout and user deletion end sessions.
	tok2, _, _ := a.Login(ctx, "alice", "correct horse", "c1")
	if err := a.Logout(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, tok2); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after logout: %v", err)
	}
	tok3, _, _ := a.Login(ctx, "alice", "correct horse", "c1")
	a.CreateUser(ctx, "root2", RoleAdmin, "password!")
	if err := a.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, tok3); !errors.Is(err, ErrNoSession) {
		t.Fatalf("after user deletion: %v", err)
	}
	// The session's absolute lifetime is enforced too.
	tok4, _, _ := a.Login(ctx, "root2", "password!", "c1")
	for i := 0; i < 60; i++ {
		c.add(15 * time.Minute)
		if _, err := a.Authenticate(ctx, tok4); err != nil {
			if !errors.Is(err, ErrSessionExpired) || i < 47 {
				t.Fatalf("after %d quarter hours: %v", i+1, err)
			}
			return
		}
	}
	t.Fatal("session outlived its TTL")
}

func TestLoginRateLimit(t *testing.T) {
	a, c := newAuth(t)
	a.CreateUser(ctx, "bob", RoleAdmin, "bobs password")
	for i := 1; i < 5; i++ {
		if _, _, err := a.Login(ctx, "bob", "nope nope", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	var rl *RateLimitedError
	if _, _, err := a.Login(ctx, "bob", "nope nope", "10.0.0.1"); !errors.As(err, &rl) || rl.RetryAfter != 30*time.Second {
		t.Fatalf("5th failure: %v, want a 30s lockout", err)
	}
	// Even the right password is refused while locked out...
	if _, _, err := a.Login(ctx, "bob", "bobs password", "10.0.0.1"); !errors.As(err, &rl) {
		t.Fatalf("locked out correct login: %v", err)
	}
	// ...but another client is not affected.
	if _, _, err := a.Login(ctx, "bob", "bobs password", "10.0.0.2"); err != nil {
		t.Fatalf("other client: %v", err)
	}
	c.add(31 * time.Second)
	if _, _, err := a.Login(ctx, "bob", "nope nope", "10.0.0.1"); !errors.As(err, &rl) || rl.RetryAfter != time.Minute {
		t.Fatalf("failure after lockout: %v, want a doubled 1m lockout", err)
	}
	c.add(61 * time.Second)
	if _, _, err := a.Login(ctx, "bob", "bobs password", "10.0.0.1"); err != nil {
		t.Fatalf("after lockout: %v", err)
	}
}

func TestUserValidation(t *testing.T) {
	a, _ := newAuth(t)
	tests := []struct {
		name, role, pw, field string
	}{
		{"bad name!", "admin", "longenough", "name"},
		{"", "admin", "longenough", "name"},
		{"ok", "root", "longenough", "role"},
		{"ok", "reader", "short", "password"},
	}
	for _, tt := range tests {
		err := a.CreateUser(ctx, tt.name, Role(tt.role), tt.pw)
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Field != tt.field {
			t.Errorf("CreateUser(%q,%q): %v, want invalid %s", tt.name, tt.role, err, tt.field)
		}
	}
	a.CreateUser(ctx, "dup", RoleReader, "longenough")
	if err := a.CreateUser(ctx, "dup", RoleReader, "longenough"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate: %v", err)
	}
	a.Bootstrap(ctx, "adminpass")
	if err := a.DeleteUser(ctx, "admin"); !errors.Is(err, ErrLastAdmin) {
		t.Fatalf("delete last admin: %v", err)
	}
	if err := a.DeleteUser(ctx, "ghost"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func TestVerifyPasswordRejectsMalformedHashes(t *testing.T) {
	for _, h := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=1,p=1$AA$AA", "$argon2id$v=19$m=8,t=1,p=1$!!$AA"} {
		if ok, err := VerifyPassword(h, "x"); ok || err == nil {
			t.Errorf("VerifyPassword(%q) = %v, %v; want an error", h, ok, err)
		}
	}
	h, _ := HashPassword("secret-pw")
	if ok, _ := VerifyPassword(h, "secret-pw"); !ok {
		t.Fatal("correct password rejected")
	}
	if ok, _ := VerifyPassword(h, "secret-pX"); ok {
		t.Fatal("wrong password accepted")
	}
}
