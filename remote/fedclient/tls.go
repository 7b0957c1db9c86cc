package fedclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

// ALPN is the TLS application protocol of federation connections; it
// matches the primary's.
const ALPN = "palisade-fed/1"

// pinnedTLS returns a client TLS config that accepts only a server chain
// leading to a CA whose fingerprint the token pins. The standard name check
// is replaced by the pin: the CA belongs to the primary cluster alone, and
// remotes dial it by whatever address the token holds. pinErr receives the
// pin failure so the caller can report it whatever the transport makes of
// the handshake error.
func pinnedTLS(tok jointoken.Token, pinErr *error) *tls.Config {
	return &tls.Config{
		NextProtos:         []string{ALPN},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verification is VerifyConnection, below
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := verifyPinned(cs.PeerCertificates, tok)
			if err != nil {
				*pinErr = err
			}
			return err
		},
	}
}

func verifyPinned(chain []*x509.Certificate, tok jointoken.Token) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: primary presented no certificate", jointoken.ErrCAPinMismatch)
	}
	var seen []string
	for _, c := range chain[1:] {
		if !c.IsCA {
			continue
		}
		if err := tok.CheckCA(c); err != nil {
			seen = append(seen, pki.Fingerprint(c))
			continue
		}
		if err := pki.VerifyServer(chain, c, ""); err != nil {
			return fmt.Errorf("verify primary certificate: %w", err)
		}
		return nil
	}
	if len(seen) == 0 {
		return fmt.Errorf("%w: token pins %s, primary presented no CA certificate in its chain", jointoken.ErrCAPinMismatch, tok.CAFingerprint)
	}
	return fmt.Errorf("%w: token pins %s, primary presented %s", jointoken.ErrCAPinMismatch, tok.CAFingerprint, strings.Join(seen, ", "))
}

// memberTLS returns the TLS config of a joined remote: its client
// certificate, and the primary CA it received at join as the only root.
func memberTLS(id *Identity) (*tls.Config, error) {
	return pki.MemberTLS(id.CertPEM, id.KeyPEM, id.CAPEM, ALPN)
}
