// Package jointoken creates and verifies federation join tokens.
//
// A token is signed with the primary's Ed25519 key and carries the
// primary's federation addresses (every replica), its expiry, a random ID
// (the nonce), whether it may be used once only, and the SHA-256 of the
// primary's CA certificate, which the joining remote pins when it dials.
//
// Text form: "pal1." + base64url(payload JSON) + "." + base64url(signature),
// without padding. The remote reads a token with Parse (it cannot check the
// signature; the CA pin protects it), the primary with Verify or Redeem.
package jointoken

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/palisade-sec/palisade/shared/pki"
)

// Prefix starts every token's text form and names its format version.
const Prefix = "pal1."

// Errors, one per way a token can fail.
var (
	ErrMalformed     = errors.New("jointoken: malformed token")
	ErrBadSignature  = errors.New("jointoken: bad signature (token forged or signed by another primary)")
	ErrExpired       = errors.New("jointoken: token expired")
	ErrUsed          = errors.New("jointoken: single-use token already used")
	ErrCAPinMismatch = errors.New("jointoken: CA pin mismatch (the primary presented a CA other than the one in the token)")
)

// Token is what a join token says.
type Token struct {
	// ID is a random nonce identifying the token (for single-use tracking).
	ID string `json:"id"`
	// Primary is the primary cluster's name (informational).
	Primary string `json:"primary,omitempty"`
	// Addrs are the primary replicas' federation addresses (host:port).
	Addrs []string `json:"addrs"`
	// CAFingerprint is the hex SHA-256 of the primary CA certificate's DER
	// (pki.Fingerprint).
	CAFingerprint string    `json:"ca"`
	IssuedAt      time.Time `json:"iat"`
	Expires       time.Time `json:"exp"`
	// SingleUse tokens are consumed by the first successful join.
	SingleUse bool `json:"single,omitempty"`
}

// Consumer records single-use tokens as used; the primary implements it
// through its replicated store so every replica agrees. Consume returns an
// error wrapping ErrUsed when tokenID was consumed before. expires lets the
// store forget the record once the token could no longer verify anyway.
type Consumer interface {
	Consume(ctx context.Context, tokenID string, expires time.Time) error
}

// Key is the primary's token signing key.
type Key struct {
	priv ed25519.PrivateKey
}

// NewKey generates a signing key.
func NewKey() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate token key: %w", err)
	}
	return &Key{priv: priv}, nil
}

// Marshal returns the key's bytes for the replicated store (the 32-byte
// Ed25519 seed: keep it secret).
func (k *Key) Marshal() []byte { return bytes.Clone(k.priv.Seed()) }

// ParseKey reads a key written by Marshal.
func ParseKey(b []byte) (*Key, error) {
	if len(b) != ed25519.SeedSize {
		return nil, fmt.Errorf("jointoken: key is %d bytes, want %d", len(b), ed25519.SeedSize)
	}
	return &Key{priv: ed25519.NewKeyFromSeed(b)}, nil
}

// Public returns the verification key.
func (k *Key) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// Options describe a token to issue.
type Options struct {
	Primary       string
	Addrs         []string
	CAFingerprint string
	// TTL is how long the token is valid from now.
	TTL       time.Duration
	SingleUse bool
}

// Issue creates a token with a fresh ID and returns it with its text form.
func (k *Key) Issue(o Options, now time.Time) (Token, string, error) {
	if len(o.Addrs) == 0 {
		return Token{}, "", errors.New("jointoken: no primary addresses")
	}
	for _, a := range o.Addrs {
		if a == "" || strings.ContainsAny(a, " \t\n") {
			return Token{}, "", fmt.Errorf("jointoken: bad primary address %q", a)
		}
	}
	if fp, err := hex.DecodeString(o.CAFingerprint); err != nil || len(fp) != 32 {
		return Token{}, "", fmt.Errorf("jointoken: CA fingerprint %q is not a hex SHA-256", o.CAFingerprint)
	}
	if o.TTL <= 0 {
		return Token{}, "", fmt.Errorf("jointoken: ttl %s must be positive", o.TTL)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, "", fmt.Errorf("token id: %w", err)
	}
	t := Token{
		ID:            hex.EncodeToString(id[:]),
		Primary:       o.Primary,
		Addrs:         append([]string(nil), o.Addrs...),
		CAFingerprint: strings.ToLower(o.CAFingerprint),
		IssuedAt:      now.UTC().Truncate(time.Second),
		Expires:       now.Add(o.TTL).UTC().Truncate(time.Second),
		SingleUse:     o.SingleUse,
	}
	s, err := k.Sign(t)
	return t, s, err
}

// Sign returns the text form of t signed with k.
func (k *Key) Sign(t Token) (string, error) {
	payload, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("marshal token: %w", err)
	}
	sig := ed25519.Sign(k.priv, signedBytes(payload))
	enc := base64.RawURLEncoding
	return Prefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(sig), nil
}

// signedBytes binds the signature to this format and use.
func signedBytes(payload []byte) []byte {
	return append([]byte("palisade join token v1\x00"), payload...)
}

// Parse decodes a token's text form without checking its signature or
// expiry: the remote uses it to learn where to dial and which CA to pin.
func Parse(s string) (Token, error) {
	t, _, _, err := split(s)
	return t, err
}

func split(s string) (Token, []byte, []byte, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, Prefix) {
		return Token{}, nil, nil, fmt.Errorf("%w: does not start with %q", ErrMalformed, Prefix)
	}
	body, sigText, ok := strings.Cut(strings.TrimPrefix(s, Prefix), ".")
	if !ok {
		return Token{}, nil, nil, fmt.Errorf("%w: no signature part", ErrMalformed)
	}
	enc := base64.RawURLEncoding
	payload, err := enc.DecodeString(body)
	if err != nil {
		return Token{}, nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	sig, err := enc.DecodeString(sigText)
	if err != nil {
		return Token{}, nil, nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return Token{}, nil, nil, fmt.Errorf("%w: signature is %d bytes, want %d", ErrMalformed, len(sig), ed25519.SignatureSize)
	}
	var t Token
	if err := json.Unmarshal(payload, &t); err != nil {
		return Token{}, nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	switch {
	case t.ID == "":
		return Token{}, nil, nil, fmt.Errorf("%w: no id", ErrMalformed)
	case len(t.Addrs) == 0:
		return Token{}, nil, nil, fmt.Errorf("%w: no primary addresses", ErrMalformed)
	case t.Expires.IsZero():
		return Token{}, nil, nil, fmt.Errorf("%w: no expiry", ErrMalformed)
	}
	if fp, err := hex.DecodeString(t.CAFingerprint); err != nil || len(fp) != 32 {
		return Token{}, nil, nil, fmt.Errorf("%w: CA fingerprint %q is not a hex SHA-256", ErrMalformed, t.CAFingerprint)
	}
	return t, payload, sig, nil
}

// Verify checks a token's form, signature and expiry, in that order. It
// does not consume single-use tokens: see Redeem.
func Verify(s string, pub ed25519.PublicKey, now time.Time) (Token, error) {
	t, payload, sig, err := split(s)
	if err != nil {
		return Token{}, err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, signedBytes(payload), sig) {
		return Token{}, ErrBadSignature
	}
	if !now.Before(t.Expires) {
		return Token{}, fmt.Errorf("%w: at %s (now %s)", ErrExpired, t.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// Redeem verifies a token and, when it is single-use, consumes it through c.
func Redeem(ctx context.Context, s string, pub ed25519.PublicKey, now time.Time, c Consumer) (Token, error) {
	t, err := Verify(s, pub, now)
	if err != nil {
		return Token{}, err
	}
	if t.SingleUse {
		if c == nil {
			return Token{}, errors.New("jointoken: single-use token but no consumer configured")
		}
		if err := c.Consume(ctx, t.ID, t.Expires); err != nil {
			if errors.Is(err, ErrUsed) {
				return Token{}, fmt.Errorf("%w: token %s", ErrUsed, t.ID)
			}
			return Token{}, fmt.Errorf("consume token %s: %w", t.ID, err)
		}
	}
	return t, nil
}

// CheckCA returns nil when ca is the CA the token pins, else an error
// wrapping ErrCAPinMismatch naming both fingerprints.
func (t Token) CheckCA(ca *x509.Certificate) error {
	if ca == nil {
		return fmt.Errorf("%w: no CA certificate presented", ErrCAPinMismatch)
	}
	if got := pki.Fingerprint(ca); got != strings.ToLower(t.CAFingerprint) {
		return fmt.Errorf("%w: token pins %s, primary presented %s", ErrCAPinMismatch, t.CAFingerprint, got)
	}
	return nil
}
