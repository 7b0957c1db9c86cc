package fedserver

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/palisade-sec/palisade/primary/rollout"
	"github.com/palisade-sec/palisade/shared/fedproto"
	"github.com/palisade-sec/palisade/shared/jointoken"
	"github.com/palisade-sec/palisade/shared/pki"
)

// ALPN is the TLS application protocol of federation connections.
const ALPN = "palisade-fed/1"

// ErrCompacted is what a Log returns (wrapped or not) when a watch starts
// before the oldest revision it still holds. A Log may instead be matched
// by Config.IsCompacted.
var ErrCompacted = errors.New("fedserver: revision compacted")

// Log is the federation keyspace as the server reads it. Any primary
// replica whose store can be read serves remotes: it need not be the Raft
// leader, since the log only has to be readable there.
type Log interface {
	// Watch returns the changes after afterRev in revision order. It fails
	// with ErrCompacted (see Config.IsCompacted) when afterRev is older
	// than the retained history.
	Watch(ctx context.Context, afterRev uint64) (Watcher, error)
	// Snapshot returns the full keyspace and the revision it reflects.
	Snapshot(ctx context.Context) (rev uint64, objs []fedproto.Object, err error)
}

// A Log may also implement Revision() uint64 (its latest revision): a
// remote claiming a revision above it (the primary's store was restored
// from an older backup) then gets a snapshot instead of waiting for
// revisions it already has under other contents.

// RolloutLog is a Log that also holds the rollout in force, written in the
// same transaction as the change it rolls out. When the Log implements it,
// the server reads the stored rollout before it sends any revision (and
// installs it when its record is newer than the rollout in force), so a
// revision is never streamed under a rollout older than the one committed
// with it.
type RolloutLog interface {
	// RolloutRevision is the revision of the stored rollout record; 0 when
	// there is none. It is called for every revision streamed, so it
	// should read local state.
	RolloutRevision() uint64
	// StoredRollout returns the stored rollout (nil: none) and the
	// revision of its record. A rollout stored without a revision is bound
	// (rollout.State.Bind) to the revision of its record.
	StoredRollout() (r *rollout.State, rev uint64, err error)
}

// Watcher yields committed changes.
type Watcher interface {
	// Next blocks for the next revision and returns every change of that
	// revision together (one Raft entry may change several keys; a remote
	// must never apply half of one).
	Next(ctx context.Context) (fedproto.Delta, error)
	Close()
}

// Member is a joined remote cluster as the primary records it.
type Member struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// CertFingerprint is the SHA-256 of the client certificate issued at
	// join; only that certificate authenticates the member.
	CertFingerprint string    `json:"certFingerprint"`
	TokenID         string    `json:"tokenID"`
	JoinedAt        time.Time `json:"joinedAt"`
	// Kicked members are refused for good (until the record is removed).
	Kicked bool `json:"kicked,omitempty"`
}

// Members persists federation membership (in the primary's replicated
// store).
type Members interface {
	// Get returns a member by name. It is called on every connection and
	// every streamed revision, so it should read local state.
	Get(name string) (Member, bool)
	// Add records a new member; it fails if the name exists.
	Add(ctx context.Context, m Member) error
	// Kick marks a member kicked.
	Kick(ctx context.Context, name string) error
	// Remove forgets a member that left.
	Remove(ctx context.Context, name string) error
}

// TargetFunc reports whether a federated object is meant for remote. A put
// the function rejects reaches that remote as a delete, so an object whose
// selector stops matching is removed there.
type TargetFunc func(remote Member, key string, value []byte) bool

// Config configures a Server.
type Config struct {
	// Addr is the UDP address to listen on, for example ":7443".
	Addr string
	// Primary is the primary cluster's name, sent in Welcome.
	Primary string
	// CA is the primary's cluster CA: it signs remotes' client certificates
	// and, unless Certificate is set, the server certificate.
	CA *pki.CA
	// Certificate is the server's TLS certificate; its chain must include
	// the CA certificate (remotes pin it). Nil: issued from CA for
	// ServerNames.
	Certificate *tls.Certificate
	// ServerNames are the DNS names and IPs of an issued server certificate.
	ServerNames []string
	// TokenKey verifies join tokens.
	TokenKey ed25519.PublicKey
	// Tokens consumes single-use tokens.
	Tokens jointoken.Consumer
	// Members records membership.
	Members Members
	// Log is the federation keyspace.
	Log Log
	// IsCompacted recognises the Log's "history compacted" error; nil means
	// errors.Is(err, ErrCompacted).
	IsCompacted func(error) bool
	// Target filters objects per remote; nil sends everything everywhere.
	Target TargetFunc
	// ClientCertValidity is how long issued client certificates are valid.
	ClientCertValidity time.Duration
	// MaxFrame is the largest frame payload accepted from remotes.
	MaxFrame int
	// SnapshotChunk is the approximate payload size of a snapshot chunk.
	SnapshotChunk int
	// PingInterval is how often an idle remote is pinged.
	PingInterval time.Duration
	// HandshakeTimeout bounds the wait for a stream's first message.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a QUIC connection that has been silent this long.
	IdleTimeout time.Duration
	// Version is the protocol version served; zero means fedproto.Current().
	// Only a test of version skew sets it.
	Version fedproto.Version
	// OnRolloutChange is called (outside locks) with every rollout state
	// change the server makes, so the caller can persist it.
	OnRolloutChange func(rollout.State)
	// OnAck, if set, is called for every ack received.
	OnAck func(remote string, revision uint64)
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with defaults for everything but the
// identity, hooks and Log.
func DefaultConfig() Config {
	return Config{
		Addr:               ":7443",
		ClientCertValidity: 365 * 24 * time.Hour,
		MaxFrame:           fedproto.DefaultMaxFrame,
		SnapshotChunk:      1 << 20,
		PingInterval:       15 * time.Second,
		HandshakeTimeout:   10 * time.Second,
		IdleTimeout:        45 * time.Second,
	}
}

// Validate checks a Config.
func (c *Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("fedserver: config: addr is empty")
	case c.CA == nil:
		return errors.New("fedserver: config: ca is nil")
	case c.Certificate == nil && len(c.ServerNames) == 0:
		return errors.New("fedserver: config: need a certificate or server names")
	case len(c.TokenKey) != ed25519.PublicKeySize:
		return fmt.Errorf("fedserver: config: token key is %d bytes, want %d", len(c.TokenKey), ed25519.PublicKeySize)
	case c.Members == nil:
		return errors.New("fedserver: config: members is nil")
	case c.Log == nil:
		return errors.New("fedserver: config: log is nil")
	case c.ClientCertValidity <= 0:
		return fmt.Errorf("fedserver: config: client cert validity %s must be positive", c.ClientCertValidity)
	case c.MaxFrame <= 0:
		return fmt.Errorf("fedserver: config: max frame %d must be positive", c.MaxFrame)
	case c.SnapshotChunk <= 0 || c.SnapshotChunk > c.MaxFrame:
		return fmt.Errorf("fedserver: config: snapshot chunk %d must be in (0, max frame]", c.SnapshotChunk)
	case c.PingInterval <= 0 || c.HandshakeTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("fedserver: config: ping interval, handshake and idle timeouts must be positive")
	}
	return nil
}
