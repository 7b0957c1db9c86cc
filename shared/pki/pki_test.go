package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCARoundTripAndIssue(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := MarshalCA(ca)
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("ParseCA: %v", err)
	}
	if ca2.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("fingerprint changed across round trip")
	}
	leaf, err := ca2.Issue(LeafRequest{CommonName: "api", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err != nil {
		t.Fatalf("issued server certificate does not verify: %v", err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatalf("server-only certificate verified as a client certificate")
	}
	if leaf.Cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Fatalf("leaf outlives its CA")
	}
	if _, err := leaf.TLSCertificate(ca); err != nil {
		t.Fatalf("TLSCertificate: %v", err)
	}
}

func TestIssueWithOwnKey(t *testing.T) {
	ca, _ := NewCA("ca", time.Hour)
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(LeafRequest{CommonName: "remote-1", Organization: "remote", Client: true, Validity: time.Hour, PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	if leaf.KeyPEM != nil {
		t.Fatalf("CA returned a key for a request that carried its own")
	}
	keyPEM, _ := MarshalKey(key)
	if _, err := tls.X509KeyPair(leaf.CertPEM, keyPEM); err != nil {
		t.Fatalf("certificate does not match the requester's key: %v", err)
	}
	if got := leaf.Cert.Subject.Organization; len(got) != 1 || got[0] != "remote" {
		t.Fatalf("organization = %v, want [remote]", got)
	}
}

func TestParseErrors(t *testing.T) {
	ca, _ := NewCA("ca", time.Hour)
	other, _ := NewCA("other", time.Hour)
	_, otherKey, _ := MarshalCA(other)
	tests := []struct {
		name     string
		cert     []byte
		key      []byte
		wantText string
	}{
		{"empty cert", nil, otherKey, "no PEM block"},
		{"garbage cert", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), otherKey, "parse certificate"},
		{"key as cert", otherKey, otherKey, `"PRIVATE KEY", want CERTIFICATE`},
		{"mismatched key", ca.CertPEM, otherKey, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCA(tt.cert, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("ParseCA error = %v, want it to contain %q", err, tt.wantText)
			}
		})
	}
	if _, err := ca.Issue(LeafRequest{CommonName: "x", Validity: time.Hour}); err == nil {
		t.Fatalf("Issue without server or client usage succeeded")
	}
}
