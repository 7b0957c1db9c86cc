package agents

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/palisade-sec/palisade/shared/enroltoken"
)

// agentTokens is the kind of token an agent enrols with:
// "pat1.<id>.<secret>.<ca fingerprint>". The controller keeps only the
// SHA-256 of the secret; the agent pins the cluster CA by the fingerprint.
func agentTokens() enroltoken.Kind {
	return enroltoken.Kind{Prefix: "pat1", KeyPrefix: PrefixTokens}
}

// CreatedToken is the body of POST /v1/agents/tokens.
type CreatedToken struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// CreateToken stores a new agent token valid for ttl.
func (m *Module) CreateToken(ctx context.Context, ttl time.Duration, user string) (*CreatedToken, error) {
	ca := m.cfg.CA()
	if ca == nil {
		return nil, errors.New("agents: cluster CA not ready")
	}
	tok, rec, err := agentTokens().Issue(ctx, m.st, ca.Fingerprint(), ttl, user, time.Now())
	if err != nil {
		return nil, fmt.Errorf("agent token: %w", err)
	}
	return &CreatedToken{Token: tok.String(), ID: tok.ID, Expires: rec.Expires}, nil
}

// checkToken verifies a token's text form against the store.
func (m *Module) checkToken(s string, now time.Time) error {
	if _, err := agentTokens().Check(m.st, s, now); err != nil {
		return fmt.Errorf("agent token: %w", err)
	}
	return nil
}
