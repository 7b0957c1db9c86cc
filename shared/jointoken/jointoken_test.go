package jointoken

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/shared/pki"
)

// usedSet is an in-memory Consumer.
type usedSet struct {
	mu   sync.Mutex
	used map[string]time.Time
}

func (u *usedSet) Consume(_ context.Context, id string, exp time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.used[id]; ok {
		return ErrUsed
	}
	if u.used == nil {
		u.used = map[string]time.Time{}
	}
	u.used[id] = exp
	return nil
}

func mustCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssueVerifyRedeem(t *testing.T) {
	ca := mustCA(t)
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	opts := Options{Primary: "hub", Addrs: []string{"10.0.0.1:7443", "10.0.0.2:7443"}, CAFingerprint: ca.Fingerprint(), TTL: time.Hour, SingleUse: true}
	tok, text, err := key.Issue(opts, now)
	if err != nil {
		t.Fatal(err)
	}
	reusable, reusableText, err := key.Issue(Options{Addrs: opts.Addrs, CAFingerprint: opts.CAFingerprint, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID == reusable.ID {
		t.Fatalf("two tokens share id %s", tok.ID)
	}
	forged, _ := other.Sign(tok)
	body, sig, _ := strings.Cut(strings.TrimPrefix(text, Prefix), ".")
	tampered := tok
	tampered.Addrs = []string{"203.0.113.9:7443"}
	swapped := Prefix + mustPayload(t, tampered) + "." + sig

	tests := []struct {
		name string
		in   string
		at   time.Time
		want error
	}{
		{"valid", text, now, nil},
		{"valid with whitespace", "  " + text + "\n", now, nil},
		{"empty", "", now, ErrMalformed},
		{"wrong prefix", "pal2." + body + "." + sig, now, ErrMalformed},
		{"no signature", Prefix + body, now, ErrMalformed},
		{"bad base64", Prefix + "!!!." + sig, now, ErrMalformed},
		{"short signature", Prefix + body + ".AAAA", now, ErrMalformed},
		{"signed by another key", forged, now, ErrBadSignature},
		{"payload swapped under a valid signature", swapped, now, ErrBadSignature},
		{"expired", text, now.Add(time.Hour), ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Verify(tt.in, key.Public(), tt.at)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Verify: got %v, want %v", err, tt.want)
			}
			if err == nil && got.ID != tok.ID {
				t.Fatalf("Verify: id %s, want %s", got.ID, tok.ID)
			}
		})
	}

	used := &usedSet{}
	ctx := context.Background()
	if _, err := Redeem(ctx, text, key.Public(), now, used); err != nil {
		t.Fatalf("first redeem: %v", err)
	}
	if _, err := Redeem(ctx, text, key.Public(), now, used); !errors.Is(err, ErrUsed) {
		t.Fatalf("second redeem of single-use token: got %v, want ErrUsed", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := Redeem(ctx, reusableText, key.Public(), now, used); err != nil {
			t.Fatalf("redeem %d of reusable token: %v", i, err)
		}
	}
	if _, err := Redeem(ctx, forged, key.Public(), now, used); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("redeem forged: got %v, want ErrBadSignature", err)
	}
	if len(used.used) != 1 {
		t.Fatalf("consumer recorded %d tokens, want 1", len(used.used))
	}
}

func mustPayload(t *testing.T, tok Token) string {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.Sign(tok)
	if err != nil {
		t.Fatal(err)
	}
	body, _, _ := strings.Cut(strings.TrimPrefix(s, Prefix), ".")
	return body
}

func TestIssueRejectsBadOptions(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	fp := mustCA(t).Fingerprint()
	tests := []struct {
		name string
		o    Options
	}{
		{"no addrs", Options{CAFingerprint: fp, TTL: time.Hour}},
		{"empty addr", Options{Addrs: []string{""}, CAFingerprint: fp, TTL: time.Hour}},
		{"bad fingerprint", Options{Addrs: []string{"a:1"}, CAFingerprint: "abc", TTL: time.Hour}},
		{"zero ttl", Options{Addrs: []string{"a:1"}, CAFingerprint: fp}},
	}
	for _, tt := range tests {
		if _, _, err := key.Issue(tt.o, time.Now()); err == nil {
			t.Errorf("%s: Issue succeeded, want an error", tt.name)
		}
	}
}

func TestKeyRoundTrip(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKey(key.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !back.Public().Equal(key.Public()) {
		t.Fatal("parsed key has another public key")
	}
	if _, err := ParseKey([]byte("short")); err == nil {
		t.Fatal("ParseKey accepted 5 bytes")
	}
}

func TestCheckCA(t *testing.T) {
	ca, other := mustCA(t), mustCA(t)
	tok := Token{CAFingerprint: ca.Fingerprint()}
	if err := tok.CheckCA(ca.Cert); err != nil {
		t.Fatalf("matching CA: %v", err)
	}
	err := tok.CheckCA(other.Cert)
	if !errors.Is(err, ErrCAPinMismatch) || !strings.Contains(err.Error(), other.Fingerprint()) {
		t.Fatalf("other CA: got %v, want ErrCAPinMismatch naming %s", err, other.Fingerprint())
	}
}

func FuzzParse(f *testing.F) {
	key, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	_, text, err := key.Issue(Options{Addrs: []string{"127.0.0.1:1"}, CAFingerprint: strings.Repeat("ab", 32), TTL: time.Hour}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(text)
	f.Add(Prefix + base64.RawURLEncoding.EncodeToString([]byte(`{"id":"x"}`)) + ".AAAA")
	f.Add("pal1..")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err == nil && (tok.ID == "" || len(tok.Addrs) == 0) {
			t.Fatalf("Parse accepted a token without id or addrs: %+v", tok)
		}
		if _, err := Verify(s, key.Public(), time.Now()); err == nil && s != text && strings.TrimSpace(s) != text {
			t.Fatalf("Verify accepted a token this key did not sign: %q", s)
		}
	})
}
