// Package pki creates and uses a cluster's certificate authority: the CA that
// signs controller API certificates, federation server and client
// certificates, agent certificates and the admission webhook certificate.
//
// Keys are ECDSA P-256. Everything is exchanged as PEM so a CA can live in
// the replicated store and a certificate in a file a user can inspect.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is the PEM encoding of Cert, as handed to clients.
	CertPEM []byte
}

// ErrNoPEM is returned when input holds no PEM block of the expected type.
var ErrNoPEM = errors.New("pki: no PEM block found")

// NewCA creates a self-signed CA valid for validity from now.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ca key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Palisade"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse ca certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodePEM("CERTIFICATE", der)}, nil
}

// MarshalCA returns the PEM encodings of the CA's certificate and key.
func MarshalCA(ca *CA) (certPEM, keyPEM []byte, err error) {
	keyPEM, err = MarshalKey(ca.Key)
	if err != nil {
		return nil, nil, err
	}
	return ca.CertPEM, keyPEM, nil
}

// ParseCA reads a CA from the PEM encodings of its certificate and key and
// checks that they belong together.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("pki: certificate is not a CA")
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("pki: ca key does not match ca certificate")
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// Fingerprint is the hex SHA-256 of the CA certificate's DER encoding: the
// value join tokens pin.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Fingerprint is the hex SHA-256 of a certificate's DER encoding.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Pool returns a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// LeafRequest describes a certificate to issue.
type LeafRequest struct {
	// CommonName is the subject CN; for client certificates it is the
	// identity the peer authenticates as.
	CommonName string
	// Organization is an optional subject O, used to carry a role
	// (for example "remote" or "agent") in client certificates.
	Organization string
	// DNSNames and IPs are the subject alternative names of a server
	// certificate.
	DNSNames []string
	IPs      []net.IP
	// Server and Client select the extended key usages.
	Server, Client bool
	// Validity is how long the certificate is valid from now.
	Validity time.Duration
	// PublicKey, when set, is certified instead of a freshly generated key
	// (the holder keeps its private key; Issue then returns no key).
	PublicKey crypto.PublicKey
}

// Leaf is an issued certificate with its key (when the CA generated it).
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	// KeyPEM is nil when the request carried its own public key.
	KeyPEM []byte
}

// Issue signs a certificate for req.
func (ca *CA) Issue(req LeafRequest) (*Leaf, error) {
	if req.CommonName == "" {
		return nil, errors.New("pki: common name is empty")
	}
	if !req.Server && !req.Client {
		return nil, errors.New("pki: certificate must be for a server, a client or both")
	}
	if req.Validity <= 0 {
		return nil, errors.New("pki: validity must be positive")
	}
	pub := req.PublicKey
	var keyPEM []byte
	if pub == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		pub = key.Public()
		if keyPEM, err = MarshalKey(key); err != nil {
			return nil, err
		}
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(req.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.CommonName},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
	}
	if req.Organization != "" {
		tmpl.Subject.Organization = []string{req.Organization}
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", req.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	return &Leaf{Cert: cert, CertPEM: encodePEM("CERTIFICATE", der), KeyPEM: keyPEM}, nil
}

// TLSCertificate turns an issued leaf (with its key) into a tls.Certificate
// whose chain includes the CA.
func (l *Leaf) TLSCertificate(ca *CA) (tls.Certificate, error) {
	if l.KeyPEM == nil {
		return tls.Certificate{}, errors.New("pki: leaf has no private key")
	}
	pair, err := tls.X509KeyPair(append(append([]byte{}, l.CertPEM...), ca.CertPEM...), l.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load key pair: %w", err)
	}
	return pair, nil
}

// NewKey generates a private key for a certificate request and returns it
// with its PEM encoding.
func NewKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	pemBytes, err := MarshalKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pemBytes, nil
}

// MarshalKey encodes a private key as PKCS#8 PEM.
func MarshalKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return encodePEM("PRIVATE KEY", der), nil
}

// ParseKey decodes a PKCS#8 (or SEC 1 EC) private key from PEM.
func ParseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("%w (want a private key)", ErrNoPEM)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("pki: unsupported private key type %T", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse ec private key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("pki: PEM block is %q, want a private key", block.Type)
	}
}

// ParseCert decodes the first certificate in PEM input.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, fmt.Errorf("%w (want a certificate)", ErrNoPEM)
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: PEM block is %q, want CERTIFICATE", block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// MarshalPublicKey encodes a public key as PKIX PEM (for certificate
// requests sent over the wire).
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return encodePEM("PUBLIC KEY", der), nil
}

// ParsePublicKey decodes a PKIX PEM public key.
func ParsePublicKey(pubPEM []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(pubPEM)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w (want PUBLIC KEY)", ErrNoPEM)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	return pub, nil
}

func encodePEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
