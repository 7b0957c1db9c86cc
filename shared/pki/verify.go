package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrNoPeerCert is returned when a server presented no certificate.
var ErrNoPeerCert = errors.New("pki: server presented no certificate")

// VerifyServer checks that chain[0] is a server certificate issued under ca,
// with chain[1:] as intermediates. A non-empty dnsName is checked against
// the certificate too; empty leaves names out, for peers dialled by an
// address that a CA of their own vouches for.
func VerifyServer(chain []*x509.Certificate, ca *x509.Certificate, dnsName string) error {
	if len(chain) == 0 {
		return ErrNoPeerCert
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: dnsName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// PinnedCA returns the CA certificate in chain whose fingerprint is pin,
// or nil when the chain holds none.
func PinnedCA(chain []*x509.Certificate, pin string) *x509.Certificate {
	for _, c := range chain {
		if c.IsCA && Fingerprint(c) == pin {
			return c
		}
	}
	return nil
}

// MemberTLS is the client TLS configuration of a member that enrolled
// with a cluster: it presents the member's certificate and trusts only the
// CA it received, whatever address it dials.
func MemberTLS(certPEM, keyPEM, caPEM []byte, alpn string) (*tls.Config, error) {
	ca, err := ParseCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("identity ca: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity key pair: %w", err)
	}
	return &tls.Config{
		Certificates:       []tls.Certificate{pair},
		NextProtos:         []string{alpn},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verification is VerifyConnection, below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return VerifyServer(cs.PeerCertificates, ca, "")
		},
	}, nil
}
