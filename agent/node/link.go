package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/palisade-sec/palisade/shared/agentproto"
	"github.com/palisade-sec/palisade/shared/pki"
)

// ALPN is the TLS application protocol of agent connections; it matches the
// controller's.
const ALPN = "palisade-agent/1"

// ErrRefused is wrapped by every refusal from the controller.
var ErrRefused = errors.New("node: refused by the controller")

// Identity is what an enrolled agent keeps in its data directory.
type Identity struct {
	Node    string `json:"node"`
	CertPEM []byte `json:"certPEM"`
	KeyPEM  []byte `json:"keyPEM"`
	CAPEM   []byte `json:"caPEM"`
}

const identityFile = "identity.json"

// LoadIdentity reads the identity in dir; ok is false when there is none.
func LoadIdentity(dir string) (*Identity, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, false, fmt.Errorf("read identity %s: %w", filepath.Join(dir, identityFile), err)
	}
	return &id, true, nil
}

// Save writes the identity into dir, readable by its owner only.
func (id *Identity) Save(dir string) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, identityFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, identityFile))
}

// tokenCA returns the CA fingerprint an agent token pins
// ("pat1.<id>.<secret>.<ca>").
func tokenCA(token string) (string, error) {
	p := strings.Split(strings.TrimSpace(token), ".")
	if len(p) != 4 || p[0] != "pat1" || len(p[3]) != 64 {
		return "", errors.New("node: malformed agent token: want pat1.<id>.<secret>.<ca>")
	}
	return p[3], nil
}

// pinnedTLS accepts a controller whose chain holds a CA with the pinned
// fingerprint, and that signs the controller's certificate.
func pinnedTLS(fingerprint string) *tls.Config {
	return &tls.Config{
		NextProtos:         []string{ALPN},
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verification is VerifyConnection, below
		VerifyConnection: func(cs tls.ConnectionState) error {
			ca := pki.PinnedCA(cs.PeerCertificates, fingerprint)
			if ca == nil {
				return fmt.Errorf("node: controller CA does not match the token's %s", fingerprint)
			}
			if err := pki.VerifyServer(cs.PeerCertificates, ca, ""); err != nil {
				return fmt.Errorf("verify controller certificate: %w", err)
			}
			return nil
		},
	}
}

// memberTLS presents the agent's certificate and trusts only its CA.
func memberTLS(id *Identity) (*tls.Config, error) {
	return pki.MemberTLS(id.CertPEM, id.KeyPEM, id.CAPEM, ALPN)
}

// conn is one QUIC connection with its stream.
type conn struct {
	udp *net.UDPConn
	tr  *quic.Transport
	qc  *quic.Conn
	str *quic.Stream
	enc *agentproto.Encoder
	dec *agentproto.Decoder
}

func (c *conn) close() {
	_ = c.qc.CloseWithError(0, "closing")
	_ = c.tr.Close()
	_ = c.udp.Close()
}

func dial(ctx context.Context, addr string, tc *tls.Config, timeout, idle time.Duration) (*conn, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("open udp socket: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	qc, err := tr.Dial(dctx, raddr, tc, &quic.Config{HandshakeIdleTimeout: timeout, MaxIdleTimeout: idle, KeepAlivePeriod: idle / 3})
	if err != nil {
		_ = tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	str, err := qc.OpenStreamSync(dctx)
	if err != nil {
		_ = qc.CloseWithError(0, "")
		_ = tr.Close()
		_ = udp.Close()
		return nil, fmt.Errorf("open stream to %s: %w", addr, err)
	}
	return &conn{udp: udp, tr: tr, qc: qc, str: str, enc: agentproto.NewEncoder(str), dec: agentproto.NewDecoder(str, 0)}, nil
}

// Enroll gets a client certificate for node from the controller at one of
// addrs with an agent token, pinning the cluster CA the token names.
func Enroll(ctx context.Context, addrs []string, token, node string, timeout time.Duration) (*Identity, error) {
	fp, err := tokenCA(token)
	if err != nil {
		return nil, err
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	pub, err := pki.MarshalPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range addrs {
		c, err := dial(ctx, addr, pinnedTLS(fp), timeout, timeout)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_ = c.str.SetDeadline(time.Now().Add(timeout))
		err = c.enc.Encode(&agentproto.Enroll{Version: agentproto.Version, Token: token, Node: node, PublicKeyPEM: pub})
		var msg agentproto.Message
		if err == nil {
			msg, err = c.dec.Decode()
		}
		c.close()
		if err != nil {
			errs = append(errs, fmt.Errorf("enroll at %s: %w", addr, err))
			continue
		}
		switch msg := msg.(type) {
		case *agentproto.Enrolled:
			cert, err := pki.ParseCert(msg.CertPEM)
			if err != nil {
				return nil, fmt.Errorf("enrolled certificate: %w", err)
			}
			ca, err := pki.ParseCert(msg.CAPEM)
			if err != nil {
				return nil, fmt.Errorf("enrolled ca: %w", err)
			}
			if pki.Fingerprint(ca) != fp || cert.CheckSignatureFrom(ca) != nil {
				return nil, errors.New("node: enrolled certificate is not from the token's CA")
			}
			return &Identity{Node: node, CertPEM: msg.CertPEM, KeyPEM: keyPEM, CAPEM: msg.CAPEM}, nil
		case *agentproto.Refuse:
			return nil, fmt.Errorf("%w (%s): %s", ErrRefused, msg.Code, msg.Reason)
		default:
			errs = append(errs, fmt.Errorf("enroll at %s: unexpected %s", addr, msg.Type()))
		}
	}
	return nil, fmt.Errorf("enroll: no controller answered: %w", errors.Join(errs...))
}
