package scanning

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/palisade-sec/palisade/shared/pki"
)

// Registry credentials are kept sealed in the replicated store under
// scan/credentials/NAME: AES-256-GCM with a key derived (HKDF-SHA256) from
// the cluster CA's private key, with the registry's name as additional
// data, so a sealed value cannot be moved to another registry.
//
// Threat model. Sealing keeps the credentials out of everything that
// shows or copies registry definitions and store values without the CA
// key: API responses (which never carry them; a registry only says
// "auth: basic"), logs, support dumps of scan/ keys, and the federation
// stream (registry definitions are never streamed). It does not protect
// against whoever holds a replica's whole store (its Raft data directory
// or a snapshot): the CA key lives in the same store, as it must for any
// replica to become leader and scan. Protect data directories as the
// cluster's secrets. A credential is decrypted only on the leader, when a
// pass of its registry starts, and handed to a remote scanner worker only
// inside the job that needs it, over the worker's TLS connection.

// ErrBadCredentials is returned for credentials that cannot be used.
var ErrBadCredentials = errors.New("scanning: bad registry credentials")

// Credentials authenticate to a registry: a username and password (basic),
// or a bearer token.
type Credentials struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
}

// Kind returns AuthBasic or AuthBearer.
func (c *Credentials) Kind() string {
	if c.Token != "" {
		return AuthBearer
	}
	return AuthBasic
}

// Validate checks that exactly one kind of credentials is given.
func (c *Credentials) Validate() error {
	switch {
	case c.Token != "" && (c.Username != "" || c.Password != ""):
		return fmt.Errorf("%w: give a username and password, or a token, not both", ErrBadCredentials)
	case c.Token == "" && (c.Username == "" || c.Password == ""):
		return fmt.Errorf("%w: basic credentials need a username and a password", ErrBadCredentials)
	case strings.ContainsAny(c.Username, ":\r\n"):
		return fmt.Errorf("%w: username must not contain ':' or line breaks", ErrBadCredentials)
	}
	return nil
}

// Authenticator returns the go-containerregistry authenticator.
func (c *Credentials) Authenticator() authn.Authenticator {
	if c == nil {
		return nil
	}
	if c.Token != "" {
		return authn.FromConfig(authn.AuthConfig{RegistryToken: c.Token})
	}
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password})
}

// sealed is the stored form of a registry's credentials.
type sealed struct {
	Version int    `json:"v"`
	Kind    string `json:"kind"`
	Nonce   []byte `json:"nonce"`
	Box     []byte `json:"box"`
}

const sealVersion = 1

// sealAEAD derives the credential-sealing cipher from the cluster CA.
func sealAEAD(ca *pki.CA) (cipher.AEAD, error) {
	if ca == nil || ca.Key == nil {
		return nil, errors.New("scanning: cluster CA not ready: credentials cannot be sealed")
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("scanning: seal key: %w", err)
	}
	salt := sha256.Sum256(ca.Cert.Raw)
	key, err := hkdf.Key(sha256.New, der, salt[:], "palisade registry credentials v1", 32)
	if err != nil {
		return nil, fmt.Errorf("scanning: seal key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func sealAD(registry string) []byte { return []byte("palisade/scan/credentials\x00" + registry) }

// sealCredentials encrypts c for registry.
func sealCredentials(ca *pki.CA, registry string, c Credentials) ([]byte, error) {
	aead, err := sealAEAD(ca)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("scanning: nonce: %w", err)
	}
	return json.Marshal(sealed{Version: sealVersion, Kind: c.Kind(), Nonce: nonce, Box: aead.Seal(nil, nonce, plain, sealAD(registry))})
}

// openCredentials decrypts what sealCredentials stored for registry.
func openCredentials(ca *pki.CA, registry string, b []byte) (*Credentials, error) {
	var s sealed
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("scanning: credentials of %s: %w", registry, err)
	}
	if s.Version != sealVersion {
		return nil, fmt.Errorf("scanning: credentials of %s: sealed with version %d, want %d", registry, s.Version, sealVersion)
	}
	aead, err := sealAEAD(ca)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("scanning: credentials of %s: nonce of %d bytes", registry, len(s.Nonce))
	}
	plain, err := aead.Open(nil, s.Nonce, s.Box, sealAD(registry))
	if err != nil {
		return nil, fmt.Errorf("scanning: credentials of %s cannot be opened (sealed for another registry or another cluster CA): %w", registry, err)
	}
	var c Credentials
	if err := json.Unmarshal(plain, &c); err != nil {
		return nil, fmt.Errorf("scanning: credentials of %s: %w", registry, err)
	}
	return &c, nil
}

// credentials returns the stored credentials of a registry; nil, nil
// when it has none.
func (m *Module) credentials(registry string) (*Credentials, error) {
	kv, ok, _ := m.st.Get(PrefixCredentials + registry)
	if !ok {
		return nil, nil
	}
	var ca *pki.CA
	if m.cfg.CA != nil {
		ca = m.cfg.CA()
	}
	return openCredentials(ca, registry, kv.Value)
}
