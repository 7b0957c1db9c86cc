package enroltoken

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/shared/store/storetest"
)

var kind = Kind{Prefix: "pat1", KeyPrefix: "test/tokens/"}

func TestParse(t *testing.T) {
	id, sec, ca := strings.Repeat("a", 16), strings.Repeat("b", 64), strings.Repeat("c", 64)
	tests := []struct {
		in   string
		want error
	}{
		{"pat1." + id + "." + sec + "." + ca, nil},
		{"pat2." + id + "." + sec + "." + ca, ErrMalformed},
		{"pat1." + id + "." + sec, ErrMalformed},
		{"pat1." + id[:15] + "." + sec + "." + ca, ErrMalformed},
		{"pat1." + id + "." + strings.Repeat("z", 64) + "." + ca, ErrMalformed},
		{"", ErrMalformed},
	}
	for _, tc := range tests {
		tok, err := kind.Parse(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("Parse(%q): got %v, want %v", tc.in, err, tc.want)
		}
		if err == nil && tok.String() != tc.in {
			t.Errorf("String: got %q, want %q", tok.String(), tc.in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("pat1." + strings.Repeat("a", 16) + "." + strings.Repeat("b", 64) + "." + strings.Repeat("c", 64))
	f.Add("pat1...")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := kind.Parse(s)
		if err != nil {
			return
		}
		if again, err := kind.Parse(tok.String()); err != nil || again != tok {
			t.Fatalf("round trip of %q: %v %v", s, again, err)
		}
	})
}

func TestIssueCheck(t *testing.T) {
	st := storetest.Open(t, "r1")
	ca := strings.Repeat("c", 64)
	now := time.Now()
	good, rec, err := kind.Issue(context.Background(), st, ca, time.Hour, "admin", now)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if rec.ID != good.ID || rec.SecretHash != HashSecret(good.Secret) || rec.User != "admin" || !rec.Expires.Equal(now.Add(time.Hour).UTC()) {
		t.Fatalf("record: got %+v for token %+v", rec, good)
	}
	if good.CAFingerprint != ca || good.Prefix != kind.Prefix {
		t.Fatalf("token: got %+v, want CA %s and prefix %s", good, ca, kind.Prefix)
	}
	wrong := good
	wrong.Secret = strings.Repeat("0", 64)
	unknown := good
	unknown.ID = strings.Repeat("0", 16)
	other := Kind{Prefix: "pst1", KeyPrefix: "other/tokens/"}
	tests := []struct {
		name string
		kind Kind
		tok  string
		now  time.Time
		want error
	}{
		{"good", kind, good.String(), now, nil},
		{"wrong secret", kind, wrong.String(), now, ErrSecret},
		{"unknown", kind, unknown.String(), now, ErrUnknown},
		{"expired", kind, good.String(), now.Add(2 * time.Hour), ErrExpired},
		{"malformed", kind, "pat1.x", now, ErrMalformed},
		{"another kind's prefix", other, good.String(), now, ErrMalformed},
	}
	for _, tc := range tests {
		got, err := tc.kind.Check(st, tc.tok, tc.now)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if err == nil && got != good {
			t.Errorf("%s: got token %+v, want %+v", tc.name, got, good)
		}
	}
}
