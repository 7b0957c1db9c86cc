// Package agents is a controller's side of its node agents: enrolment with
// agent tokens, the QUIC listener (mutual TLS) agents keep a stream to,
// the cluster policy compiled with policy/compile and pushed to each node as
// a table and then diffs, and the flows and security events agents report,
// stored bounded and served under /v1. The Raft leader learns rules from the
// flows reported in Discover mode; the executables agents report in Discover
// become learned process rules, compiled into the profiles of the nodes'
// tables.
//
// Every replica runs the listener and compiles the whole cluster's policy;
// agents may connect to any replica. What a replica writes goes through the
// replicated store, which forwards writes to the leader.
//
// # Keys
//
//	agents/tokens/<id>    an agent token: SHA-256 of its secret and expiry
//	agents/nodes/<node>   a node: its addresses and workloads, as its agent reports them
//	flows/<hash>          one aggregated conversation (JSON of FlowRecord)
//	events/<time>-<node>-<n>  one security event (JSON of EventRecord)
package agents

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// Keys and prefixes.
const (
	PrefixTokens = "agents/tokens/"
	PrefixNodes  = "agents/nodes/"
	PrefixFlows  = "flows/"
	PrefixEvents = "events/"
)

// ALPN is the TLS application protocol of agent connections.
const ALPN = "palisade-agent/1"

// OrgAgent is the subject organisation of agent client certificates.
const OrgAgent = "agent"

// Log field names.
const (
	logNode = "node"
	logErr  = "err"
)

// Config configures the module.
type Config struct {
	// Store is the replica's store.
	Store *store.Store
	// Policy reads the cluster's policy and stores learned rules.
	Policy *policystore.Store
	// CA returns the cluster CA, nil until it exists.
	CA func() *pki.CA
	// Addr is the QUIC (UDP) listen address for agents.
	Addr string
	// ServerNames are the DNS names and IPs of the listener's certificate.
	ServerNames []string
	// CertValidity is how long an agent's client certificate is valid.
	CertValidity time.Duration
	// MaxFlows bounds the stored conversations; the least recently seen go
	// first.
	MaxFlows int
	// MaxEvents bounds the stored events; the oldest go first.
	MaxEvents int
	// LearnDelay gathers flows for this long before the leader learns from
	// them.
	LearnDelay time.Duration
	// IdleTimeout ends an agent connection that has been silent this long.
	IdleTimeout time.Duration
	// DefaultLimit and MaxLimit are the page sizes of listings.
	DefaultLimit, MaxLimit int
	// Logger receives the module's logs.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Store, Policy and CA must be set.
func DefaultConfig() Config {
	return Config{
		Addr:         "0.0.0.0:18400",
		CertValidity: 365 * 24 * time.Hour,
		MaxFlows:     10000,
		MaxEvents:    10000,
		LearnDelay:   300 * time.Millisecond,
		IdleTimeout:  15 * time.Second,
		DefaultLimit: 100,
		MaxLimit:     1000,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("agents: config: Store is required")
	case c.Policy == nil:
		return errors.New("agents: config: Policy is required")
	case c.CA == nil:
		return errors.New("agents: config: CA is required")
	case c.CertValidity <= 0:
		return fmt.Errorf("agents: config: CertValidity %s is not positive", c.CertValidity)
	case c.MaxFlows <= 0 || c.MaxEvents <= 0:
		return fmt.Errorf("agents: config: MaxFlows %d and MaxEvents %d must be positive", c.MaxFlows, c.MaxEvents)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("agents: config: IdleTimeout %s is not positive", c.IdleTimeout)
	case c.DefaultLimit <= 0 || c.MaxLimit < c.DefaultLimit:
		return fmt.Errorf("agents: config: DefaultLimit %d and MaxLimit %d", c.DefaultLimit, c.MaxLimit)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("agents: config: Addr %q: %w", c.Addr, err)
	}
	return nil
}
