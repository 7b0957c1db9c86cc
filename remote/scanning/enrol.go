package scanning

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/palisade-sec/palisade/shared/enroltoken"
	"github.com/palisade-sec/palisade/shared/pki"
	"github.com/palisade-sec/palisade/shared/store"
)

// Scanner workers enrol like agents: an admin makes a token (`palisade
// scanner token create`), "pst1.<id>.<secret>.<ca fingerprint>"; the worker
// pins the cluster CA by the fingerprint, presents the token once, and gets
// its own credential "psw1.<id>.<secret>", which it keeps in its data dir
// and sends as a bearer token on every later request. The store keeps only
// SHA-256 hashes of both secrets. Deleting a worker revokes its credential.

// Enrolment errors.
var (
	ErrWorkerToken      = errors.New("scanning: bad scanner token")
	ErrWorkerCredential = errors.New("scanning: bad scanner worker credential")
)

const workerCredPrefix = "psw1"

// workerTokens is the kind of token a scanner worker enrols with.
func workerTokens() enroltoken.Kind {
	return enroltoken.Kind{Prefix: "pst1", KeyPrefix: PrefixWorkerTokens}
}

// WorkerToken is a scanner enrolment token's parts.
type WorkerToken = enroltoken.Token

// ParseWorkerToken reads a token's text form.
func ParseWorkerToken(s string) (WorkerToken, error) {
	t, err := workerTokens().Parse(s)
	if err != nil {
		return WorkerToken{}, fmt.Errorf("%w: %w", ErrWorkerToken, err)
	}
	return t, nil
}

// WorkerRecord is what the store keeps of an enrolled worker.
type WorkerRecord struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	SecretHash string    `json:"secretHash"`
	Enrolled   time.Time `json:"enrolled"`
	Token      string    `json:"token"`
}

// CreatedWorkerToken is the body of POST /v1/scanners/tokens.
type CreatedWorkerToken struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

// EnrollRequest is the body of POST /v1/scanners/enroll.
type EnrollRequest struct {
	Token string `json:"token"`
	// Name names the worker in the cluster (unique; a worker enrolling
	// again under its name replaces its previous credential).
	Name string `json:"name"`
}

// Enrolled is the answer to an enrolment.
type Enrolled struct {
	ID string `json:"id"`
	// Credential authenticates the worker from now on.
	Credential string `json:"credential"`
	// CAPEM is the cluster CA the worker trusts from now on.
	CAPEM string `json:"caPEM"`
}

func (m *Module) ca() *pki.CA {
	if m.cfg.CA == nil {
		return nil
	}
	return m.cfg.CA()
}

// CreateWorkerToken stores a new enrolment token valid for ttl.
func (m *Module) CreateWorkerToken(ctx context.Context, ttl time.Duration, user string) (*CreatedWorkerToken, error) {
	ca := m.ca()
	if ca == nil {
		return nil, errors.New("scanning: cluster CA not ready")
	}
	t, rec, err := workerTokens().Issue(ctx, m.st, ca.Fingerprint(), ttl, user, time.Now())
	if err != nil {
		return nil, fmt.Errorf("scanner token: %w", err)
	}
	return &CreatedWorkerToken{Token: t.String(), ID: t.ID, Expires: rec.Expires}, nil
}

// Enroll checks a token and enrols a worker.
func (m *Module) Enroll(ctx context.Context, req EnrollRequest, now time.Time) (*Enrolled, error) {
	if !nameRE.MatchString(req.Name) {
		return nil, fmt.Errorf("%w: name %q: want 1-63 lower-case letters, digits, '.', '_' or '-'", ErrWorkerToken, req.Name)
	}
	tok, err := workerTokens().Check(m.st, req.Token, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWorkerToken, err)
	}
	ca := m.ca()
	if ca == nil {
		return nil, errors.New("scanning: cluster CA not ready")
	}
	id, secret := randomID(8), randomID(32)
	w := WorkerRecord{ID: id, Name: req.Name, SecretHash: enroltoken.HashSecret(secret), Enrolled: now.UTC(), Token: tok.ID}
	b, _ := json.Marshal(w)
	ops := []store.Op{{Type: store.OpPut, Key: PrefixWorkers + id, Value: b}}
	for _, old := range m.workerRecords() {
		if old.Name == req.Name {
			ops = append(ops, store.Op{Type: store.OpDelete, Key: PrefixWorkers + old.ID})
		}
	}
	if _, err := m.st.Txn(ctx, store.Txn{Ops: ops}); err != nil {
		return nil, fmt.Errorf("store scanner worker: %w", err)
	}
	m.log.Info("scanner worker enrolled", logWorker, req.Name)
	return &Enrolled{ID: id, Credential: strings.Join([]string{workerCredPrefix, id, secret}, "."), CAPEM: string(ca.CertPEM)}, nil
}

// workerRecords returns the enrolled workers.
func (m *Module) workerRecords() []WorkerRecord {
	kvs, _ := m.st.List(PrefixWorkers)
	out := make([]WorkerRecord, 0, len(kvs))
	for _, kv := range kvs {
		var w WorkerRecord
		if json.Unmarshal(kv.Value, &w) == nil {
			out = append(out, w)
		}
	}
	return out
}

// authenticateWorker checks a worker credential and returns its record.
func (m *Module) authenticateWorker(cred string) (WorkerRecord, error) {
	p := strings.Split(strings.TrimSpace(cred), ".")
	if len(p) != 3 || p[0] != workerCredPrefix || enroltoken.CheckHex("id", p[1], 16) != nil || enroltoken.CheckHex("secret", p[2], 64) != nil {
		return WorkerRecord{}, fmt.Errorf("%w: want %s.<id>.<secret>", ErrWorkerCredential, workerCredPrefix)
	}
	kv, ok, _ := m.st.Get(PrefixWorkers + p[1])
	if !ok {
		return WorkerRecord{}, fmt.Errorf("%w: worker %s is not enrolled (deleted, or replaced by a later enrolment)", ErrWorkerCredential, p[1])
	}
	var w WorkerRecord
	if err := json.Unmarshal(kv.Value, &w); err != nil {
		return WorkerRecord{}, fmt.Errorf("%w: stored worker %s: %v", ErrWorkerCredential, p[1], err)
	}
	if subtle.ConstantTimeCompare([]byte(enroltoken.HashSecret(p[2])), []byte(w.SecretHash)) != 1 {
		return WorkerRecord{}, fmt.Errorf("%w: wrong secret for worker %s", ErrWorkerCredential, p[1])
	}
	return w, nil
}
