package scanning

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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

const (
	workerTokenPrefix = "pst1"
	workerCredPrefix  = "psw1"
)

// WorkerToken is a scanner enrolment token's parts.
type WorkerToken struct {
	ID            string
	Secret        string
	CAFingerprint string
}

// String is the token's text form.
func (t WorkerToken) String() string {
	return strings.Join([]string{workerTokenPrefix, t.ID, t.Secret, t.CAFingerprint}, ".")
}

// ParseWorkerToken reads a token's text form.
func ParseWorkerToken(s string) (WorkerToken, error) {
	p := strings.Split(strings.TrimSpace(s), ".")
	if len(p) != 4 || p[0] != workerTokenPrefix {
		return WorkerToken{}, fmt.Errorf("%w: want %s.<id>.<secret>.<ca>", ErrWorkerToken, workerTokenPrefix)
	}
	t := WorkerToken{ID: p[1], Secret: p[2], CAFingerprint: p[3]}
	if err := checkHex("id", t.ID, 16); err != nil {
		return WorkerToken{}, fmt.Errorf("%w: %v", ErrWorkerToken, err)
	}
	if err := checkHex("secret", t.Secret, 64); err != nil {
		return WorkerToken{}, fmt.Errorf("%w: %v", ErrWorkerToken, err)
	}
	if err := checkHex("ca", t.CAFingerprint, 64); err != nil {
		return WorkerToken{}, fmt.Errorf("%w: %v", ErrWorkerToken, err)
	}
	return t, nil
}

func checkHex(field, v string, n int) error {
	if len(v) != n {
		return fmt.Errorf("%s has %d characters, want %d", field, len(v), n)
	}
	if _, err := hex.DecodeString(v); err != nil {
		return fmt.Errorf("%s is not hex", field)
	}
	return nil
}

func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// WorkerTokenRecord is what the store keeps of a token.
type WorkerTokenRecord struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secretHash"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	User       string    `json:"user,omitempty"`
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
	t := WorkerToken{ID: randomID(8), Secret: randomID(32), CAFingerprint: ca.Fingerprint()}
	now := time.Now().UTC()
	rec := WorkerTokenRecord{ID: t.ID, SecretHash: hashSecret(t.Secret), Created: now, Expires: now.Add(ttl), User: user}
	b, _ := json.Marshal(rec)
	if _, err := m.st.Create(ctx, PrefixWorkerTokens+t.ID, b); err != nil {
		return nil, fmt.Errorf("store scanner token: %w", err)
	}
	return &CreatedWorkerToken{Token: t.String(), ID: t.ID, Expires: rec.Expires}, nil
}

// Enroll checks a token and enrols a worker.
func (m *Module) Enroll(ctx context.Context, req EnrollRequest, now time.Time) (*Enrolled, error) {
	if !nameRE.MatchString(req.Name) {
		return nil, fmt.Errorf("%w: name %q: want 1-63 lower-case letters, digits, '.', '_' or '-'", ErrWorkerToken, req.Name)
	}
	tok, err := ParseWorkerToken(req.Token)
	if err != nil {
		return nil, err
	}
	kv, ok, _ := m.st.Get(PrefixWorkerTokens + tok.ID)
	if !ok {
		return nil, fmt.Errorf("%w: unknown token %s", ErrWorkerToken, tok.ID)
	}
	var rec WorkerTokenRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return nil, fmt.Errorf("%w: stored token %s: %v", ErrWorkerToken, tok.ID, err)
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(tok.Secret)), []byte(rec.SecretHash)) != 1 {
		return nil, fmt.Errorf("%w: wrong secret for token %s", ErrWorkerToken, tok.ID)
	}
	if !now.Before(rec.Expires) {
		return nil, fmt.Errorf("%w: token %s expired at %s", ErrWorkerToken, tok.ID, rec.Expires.Format(time.RFC3339))
	}
	ca := m.ca()
	if ca == nil {
		return nil, errors.New("scanning: cluster CA not ready")
	}
	id, secret := randomID(8), randomID(32)
	w := WorkerRecord{ID: id, Name: req.Name, SecretHash: hashSecret(secret), Enrolled: now.UTC(), Token: tok.ID}
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
	if len(p) != 3 || p[0] != workerCredPrefix || checkHex("id", p[1], 16) != nil || checkHex("secret", p[2], 64) != nil {
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
	if subtle.ConstantTimeCompare([]byte(hashSecret(p[2])), []byte(w.SecretHash)) != 1 {
		return WorkerRecord{}, fmt.Errorf("%w: wrong secret for worker %s", ErrWorkerCredential, p[1])
	}
	return w, nil
}
