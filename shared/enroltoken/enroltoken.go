// Package enroltoken issues and checks a controller's enrolment tokens.
//
// A token's text form is "<prefix>.<id>.<secret>.<ca fingerprint>": a
// 16-hex-digit ID, a 64-hex-digit secret and the hex SHA-256 of the
// cluster CA certificate, which the enrolling process pins when it dials.
// The store keeps, under the kind's key prefix and the ID, a Record with
// only the SHA-256 of the secret and the token's expiry. Each kind of token
// (node agents, scanner workers) has its own text prefix and key prefix.
package enroltoken

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/palisade-sec/palisade/shared/store"
)

// Errors, one per way a token can fail.
var (
	ErrMalformed = errors.New("enroltoken: malformed token")
	ErrUnknown   = errors.New("enroltoken: unknown token")
	ErrSecret    = errors.New("enroltoken: wrong secret")
	ErrExpired   = errors.New("enroltoken: token expired")
)

// Token is a token's parts.
type Token struct {
	Prefix        string
	ID            string
	Secret        string
	CAFingerprint string
}

// String is the token's text form.
func (t Token) String() string {
	return strings.Join([]string{t.Prefix, t.ID, t.Secret, t.CAFingerprint}, ".")
}

// Record is what the store keeps of a token.
type Record struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secretHash"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	User       string    `json:"user,omitempty"`
}

// Kind is one kind of token: its text prefix and where the store keeps it.
type Kind struct {
	// Prefix starts the text form ("pat1").
	Prefix string
	// KeyPrefix is the store key the ID is appended to ("agents/tokens/").
	KeyPrefix string
}

// Parse reads a token's text form.
func (k Kind) Parse(s string) (Token, error) {
	p := strings.Split(strings.TrimSpace(s), ".")
	if len(p) != 4 || p[0] != k.Prefix {
		return Token{}, fmt.Errorf("%w: want %s.<id>.<secret>.<ca>", ErrMalformed, k.Prefix)
	}
	t := Token{Prefix: p[0], ID: p[1], Secret: p[2], CAFingerprint: p[3]}
	for _, f := range []struct {
		name, v string
		n       int
	}{{"id", t.ID, 16}, {"secret", t.Secret, 64}, {"ca", t.CAFingerprint, 64}} {
		if err := CheckHex(f.name, f.v, f.n); err != nil {
			return Token{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	return t, nil
}

// Creator stores a key that must not exist yet.
type Creator interface {
	Create(ctx context.Context, key string, value []byte) (uint64, error)
}

// Issue makes a token pinning caFingerprint, valid for ttl from now, and
// stores its record.
func (k Kind) Issue(ctx context.Context, st Creator, caFingerprint string, ttl time.Duration, user string, now time.Time) (Token, Record, error) {
	id, err := RandomHex(8)
	if err != nil {
		return Token{}, Record{}, err
	}
	secret, err := RandomHex(32)
	if err != nil {
		return Token{}, Record{}, err
	}
	now = now.UTC()
	rec := Record{ID: id, SecretHash: HashSecret(secret), Created: now, Expires: now.Add(ttl), User: user}
	b, err := json.Marshal(rec)
	if err != nil {
		return Token{}, Record{}, fmt.Errorf("encode token: %w", err)
	}
	if _, err := st.Create(ctx, k.KeyPrefix+id, b); err != nil {
		return Token{}, Record{}, fmt.Errorf("store token: %w", err)
	}
	return Token{Prefix: k.Prefix, ID: id, Secret: secret, CAFingerprint: caFingerprint}, rec, nil
}

// Getter reads a key.
type Getter interface {
	Get(key string) (store.KV, bool, uint64)
}

// Check reads a token's text form and checks it against its stored
// record: known, the right secret, not expired at now.
func (k Kind) Check(st Getter, s string, now time.Time) (Token, error) {
	tok, err := k.Parse(s)
	if err != nil {
		return Token{}, err
	}
	kv, ok, _ := st.Get(k.KeyPrefix + tok.ID)
	if !ok {
		return Token{}, fmt.Errorf("%w: id %s", ErrUnknown, tok.ID)
	}
	var rec Record
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return Token{}, fmt.Errorf("%w: stored record %s: %v", ErrUnknown, tok.ID, err)
	}
	if subtle.ConstantTimeCompare([]byte(HashSecret(tok.Secret)), []byte(rec.SecretHash)) != 1 {
		return Token{}, fmt.Errorf("%w: id %s", ErrSecret, tok.ID)
	}
	if !now.Before(rec.Expires) {
		return Token{}, fmt.Errorf("%w: id %s expired at %s", ErrExpired, tok.ID, rec.Expires.Format(time.RFC3339))
	}
	return tok, nil
}

// HashSecret is the hex SHA-256 a secret is stored as.
func HashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// RandomHex returns n random bytes in hex.
func RandomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// CheckHex checks that a token field holds n hex digits.
func CheckHex(field, v string, n int) error {
	if len(v) != n {
		return fmt.Errorf("%s has %d characters, want %d", field, len(v), n)
	}
	if _, err := hex.DecodeString(v); err != nil {
		return fmt.Errorf("%s is not hex", field)
	}
	return nil
}
