package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

func TestVerifyServerAndPinnedCA(t *testing.T) {
	ca, err := NewCA("cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("impostor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *CA, server bool) *x509.Certificate {
		l, err := ca.Issue(LeafRequest{CommonName: "c", DNSNames: []string{"controller.example"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
			Server: server, Client: !server, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return l.Cert
	}
	server, client, foreign := issue(ca, true), issue(ca, false), issue(other, true)
	tests := []struct {
		name  string
		chain []*x509.Certificate
		dns   string
		ok    bool
	}{
		{"server under the CA", []*x509.Certificate{server, ca.Cert}, "", true},
		{"name checked", []*x509.Certificate{server, ca.Cert}, "controller.example", true},
		{"wrong name", []*x509.Certificate{server, ca.Cert}, "elsewhere.example", false},
		{"client certificate", []*x509.Certificate{client, ca.Cert}, "", false},
		{"another CA's server", []*x509.Certificate{foreign, other.Cert}, "", false},
		{"no certificate", nil, "", false},
	}
	for _, tt := range tests {
		err := VerifyServer(tt.chain, ca.Cert, tt.dns)
		if (err == nil) != tt.ok {
			t.Errorf("%s: VerifyServer = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	if err := VerifyServer(nil, ca.Cert, ""); !errors.Is(err, ErrNoPeerCert) {
		t.Errorf("empty chain: %v, want ErrNoPeerCert", err)
	}
	chain := []*x509.Certificate{server, ca.Cert}
	if got := PinnedCA(chain, ca.Fingerprint()); got != ca.Cert {
		t.Errorf("PinnedCA(cluster pin) = %v, want the cluster CA", got)
	}
	if got := PinnedCA(chain, other.Fingerprint()); got != nil {
		t.Errorf("PinnedCA(impostor pin) = %v, want nil", got)
	}
	// A leaf whose fingerprint is pinned is not a CA.
	if got := PinnedCA(chain, Fingerprint(server)); got != nil {
		t.Errorf("PinnedCA(leaf pin) = %v, want nil", got)
	}
}

func TestMemberTLSTrustsOnlyItsCA(t *testing.T) {
	ca, err := NewCA("cluster", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("impostor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	member, err := ca.Issue(LeafRequest{CommonName: "node-1", Client: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MemberTLS(member.CertPEM, member.KeyPEM, []byte("not pem"), "x"); err == nil {
		t.Error("MemberTLS with a bad CA: no error")
	}
	cfg, err := MemberTLS(member.CertPEM, member.KeyPEM, ca.CertPEM, "palisade-test/1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || cfg.NextProtos[0] != "palisade-test/1" {
		t.Fatalf("config: %d certificates, protocols %v", len(cfg.Certificates), cfg.NextProtos)
	}
	for _, tt := range []struct {
		name string
		by   *CA
		ok   bool
	}{{"own CA", ca, true}, {"another CA", other, false}} {
		l, err := tt.by.Issue(LeafRequest{CommonName: "srv", IPs: []net.IP{net.ParseIP("192.0.2.1")}, Server: true, Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{l.Cert, tt.by.Cert}})
		if (err == nil) != tt.ok {
			t.Errorf("%s: VerifyConnection = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
