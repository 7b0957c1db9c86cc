package agents

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
)

// Token errors; a refused enrolment names one.
var (
	ErrTokenMalformed = errors.New("agents: malformed agent token")
	ErrTokenUnknown   = errors.New("agents: unknown agent token")
	ErrTokenSecret    = errors.New("agents: wrong agent token secret")
	ErrTokenExpired   = errors.New("agents: agent token expired")
)

const tokenPrefix = "pat1"

// Token is an agent token's parts: "pat1.<id>.<secret>.<ca fingerprint>".
// The controller keeps only the SHA-256 of the secret; the agent pins the
// cluster CA by the fingerprint.
type Token struct {
	ID            string
	Secret        string
	CAFingerprint string
}

// String is the token's text form.
func (t Token) String() string {
	return strings.Join([]string{tokenPrefix, t.ID, t.Secret, t.CAFingerprint}, ".")
}

// ParseToken reads a token's text form.
func ParseToken(s string) (Token, error) {
	p := strings.Split(strings.TrimSpace(s), ".")
	if len(p) != 4 || p[0] != tokenPrefix {
		return Token{}, fmt.Errorf("%w: want %s.<id>.<secret>.<ca>", ErrTokenMalformed, tokenPrefix)
	}
	t := Token{ID: p[1], Secret: p[2], CAFingerprint: p[3]}
	for _, f := range []struct {
		name, v string
		n       int
	}{{"id", t.ID, 16}, {"secret", t.Secret, 64}, {"ca", t.CAFingerprint, 64}} {
		if len(f.v) != f.n {
			return Token{}, fmt.Errorf("%w: %s has %d characters, want %d", ErrTokenMalformed, f.name, len(f.v), f.n)
		}
		if _, err := hex.DecodeString(f.v); err != nil {
			return Token{}, fmt.Errorf("%w: %s is not hex", ErrTokenMalformed, f.name)
		}
	}
	return t, nil
}

// TokenRecord is what the store keeps of a token.
type TokenRecord struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secretHash"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	User       string    `json:"user,omitempty"`
}

// CreatedToken is the body of POST /v1/agents/tokens.
type CreatedToken struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// CreateToken stores a new agent token valid for ttl.
func (m *Module) CreateToken(ctx context.Context, ttl time.Duration, user string) (*CreatedToken, error) {
	ca := m.cfg.CA()
	if ca == nil {
		return nil, errors.New("agents: cluster CA not ready")
	}
	id, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(32)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rec := TokenRecord{ID: id, SecretHash: hashSecret(secret), Created: now, Expires: now.Add(ttl), User: user}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if _, err := m.st.Create(ctx, PrefixTokens+id, b); err != nil {
		return nil, fmt.Errorf("store token: %w", err)
	}
	tok := Token{ID: id, Secret: secret, CAFingerprint: ca.Fingerprint()}
	return &CreatedToken{Token: tok.String(), ID: id, Expires: rec.Expires}, nil
}

// checkToken verifies a token's text form against the store.
func (m *Module) checkToken(s string, now time.Time) error {
	tok, err := ParseToken(s)
	if err != nil {
		return err
	}
	kv, ok, _ := m.st.Get(PrefixTokens + tok.ID)
	if !ok {
		return fmt.Errorf("%w: id %s", ErrTokenUnknown, tok.ID)
	}
	var rec TokenRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return fmt.Errorf("%w: stored record %s: %v", ErrTokenUnknown, tok.ID, err)
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(tok.Secret)), []byte(rec.SecretHash)) != 1 {
		return fmt.Errorf("%w: id %s", ErrTokenSecret, tok.ID)
	}
	if !now.Before(rec.Expires) {
		return fmt.Errorf("%w: id %s expired at %s", ErrTokenExpired, tok.ID, rec.Expires.Format(time.RFC3339))
	}
	return nil
}
