// Package auth holds a controller cluster's users and sessions: roles,
// password hashes (argon2id), login with a per-client rate limit, and
// session tokens kept in the replicated store so any replica accepts them.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/palisade-sec/palisade/shared/store"
)

// Role is what a user may do.
type Role string

// Roles. admin may do everything, federation included; reader may read
// the local cluster. fedAdmin and fedReader are for users who manage or
// watch the federation from the primary.
const (
	RoleAdmin     Role = "admin"
	RoleReader    Role = "reader"
	RoleFedAdmin  Role = "fedAdmin"
	RoleFedReader Role = "fedReader"
)

// Roles lists every role.
func Roles() []Role { return []Role{RoleAdmin, RoleReader, RoleFedAdmin, RoleFedReader} }

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	for _, k := range Roles() {
		if r == k {
			return true
		}
	}
	return false
}

// CanWrite reports whether r may change local objects.
func (r Role) CanWrite() bool { return r == RoleAdmin || r == RoleFedAdmin }

// CanWriteFederated reports whether r may change the federation and
// federated objects.
func (r Role) CanWriteFederated() bool { return r == RoleAdmin || r == RoleFedAdmin }

// CanReadFederated reports whether r may read federation state.
func (r Role) CanReadFederated() bool {
	return r == RoleAdmin || r == RoleFedAdmin || r == RoleFedReader
}

// User is a stored account.
type User struct {
	Name         string    `json:"name"`
	Role         Role      `json:"role"`
	PasswordHash string    `json:"passwordHash"`
	CreatedAt    time.Time `json:"createdAt"`
}

// Session is a logged-in user, stored under the hash of its token.
type Session struct {
	User      string    `json:"user"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	// LastSeen is refreshed at most every IdleTimeout/4, so idle sessions
	// expire without a write per request.
	LastSeen time.Time `json:"lastSeen"`
}

// Keyspace prefixes in the replicated store.
const (
	UsersPrefix    = "auth/users/"
	SessionsPrefix = "auth/sessions/"
)

// Errors returned to callers; the API maps them to 401/403/404/409/429.
var (
	ErrBadCredentials = errors.New("auth: wrong user name or password")
	ErrNoSession      = errors.New("auth: no session: log in first")
	ErrSessionExpired = errors.New("auth: session expired: log in again")
	ErrUserExists     = errors.New("auth: user already exists")
	ErrUserNotFound   = errors.New("auth: user not found")
	ErrLastAdmin      = errors.New("auth: cannot delete the last admin")
)

// RateLimitedError says a client must wait before trying to log in again.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("auth: too many failed logins, try again in %s", e.RetryAfter.Round(time.Second))
}

// InvalidError names the field of a user request that is wrong.
type InvalidError struct{ Field, Problem string }

func (e *InvalidError) Error() string { return fmt.Sprintf("auth: %s: %s", e.Field, e.Problem) }

// KV is the part of the replicated store auth uses.
type KV interface {
	Get(key string) (store.KV, bool, uint64)
	List(prefix string) ([]store.KV, uint64)
	Txn(ctx context.Context, txn store.Txn) (uint64, error)
}

// Config configures sessions and login limits.
type Config struct {
	// SessionTTL is the longest a session lives.
	SessionTTL time.Duration
	// IdleTimeout ends a session not used for this long.
	IdleTimeout time.Duration
	// MaxFailures is how many failed logins per client and user are allowed
	// before the client must wait.
	MaxFailures int
	// LockoutBase is the first wait; it doubles with each further failure
	// up to LockoutMax.
	LockoutBase time.Duration
	LockoutMax  time.Duration
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		SessionTTL:  12 * time.Hour,
		IdleTimeout: 30 * time.Minute,
		MaxFailures: 5,
		LockoutBase: 30 * time.Second,
		LockoutMax:  15 * time.Minute,
		Now:         time.Now,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.SessionTTL <= 0 || c.IdleTimeout <= 0:
		return errors.New("auth: config: session ttl and idle timeout must be positive")
	case c.MaxFailures < 1:
		return errors.New("auth: config: max failures must be at least 1")
	case c.LockoutBase <= 0 || c.LockoutMax < c.LockoutBase:
		return errors.New("auth: config: lockout durations must be positive, max >= base")
	case c.Now == nil:
		return errors.New("auth: config: now is nil")
	}
	return nil
}

// Authenticator checks credentials and sessions.
type Authenticator struct {
	kv      KV
	cfg     Config
	limiter *limiter
}

// New returns an Authenticator over the replicated store.
func New(kv KV, cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Authenticator{kv: kv, cfg: cfg, limiter: newLimiter(cfg)}, nil
}

var userNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,62}$`)

// ValidateUserName checks a user name.
func ValidateUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return &InvalidError{Field: "name", Problem: fmt.Sprintf("%q is not a valid user name (1-63 of letters, digits, . _ @ -, starting with a letter or digit)", name)}
	}
	return nil
}

// ValidatePassword checks a new password.
func ValidatePassword(pw string) error {
	switch {
	case len(pw) < 8:
		return &InvalidError{Field: "password", Problem: "must be at least 8 characters"}
	case len(pw) > 256:
		return &InvalidError{Field: "password", Problem: "must be at most 256 characters"}
	}
	return nil
}

// Bootstrap creates the admin account if no admin exists yet. When
// password is empty one is generated and returned (generated is true) so
// the caller can print it once.
func (a *Authenticator) Bootstrap(ctx context.Context, password string) (pw string, generated bool, err error) {
	if _, ok, _ := a.kv.Get(UsersPrefix + "admin"); ok {
		return "", false, nil
	}
	if password == "" {
		password, err = randomPassword()
		if err != nil {
			return "", false, err
		}
		generated = true
	}
	err = a.CreateUser(ctx, "admin", RoleAdmin, password)
	if errors.Is(err, ErrUserExists) {
		// Another replica created it first.
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return password, generated, nil
}

// CreateUser adds a user.
func (a *Authenticator) CreateUser(ctx context.Context, name string, role Role, password string) error {
	if err := ValidateUserName(name); err != nil {
		return err
	}
	if !role.Valid() {
		return &InvalidError{Field: "role", Problem: fmt.Sprintf("%q is not one of admin, reader, fedAdmin, fedReader", role)}
	}
	if err := ValidatePassword(password); err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	u := User{Name: name, Role: role, PasswordHash: hash, CreatedAt: a.cfg.Now().UTC()}
	b, _ := json.Marshal(u)
	_, err = a.kv.Txn(ctx, store.Txn{
		Conds: []store.Cond{{Kind: store.CondAbsent, Key: UsersPrefix + name}},
		Ops:   []store.Op{{Type: store.OpPut, Key: UsersPrefix + name, Value: b}},
	})
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %q", ErrUserExists, name)
	}
	return err
}

// DeleteUser removes a user and every session of that user. The last admin
// cannot be deleted.
func (a *Authenticator) DeleteUser(ctx context.Context, name string) error {
	kv, ok, _ := a.kv.Get(UsersPrefix + name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUserNotFound, name)
	}
	var u User
	if err := json.Unmarshal(kv.Value, &u); err != nil {
		return fmt.Errorf("decode user %q: %w", name, err)
	}
	if u.Role == RoleAdmin || u.Role == RoleFedAdmin {
		admins := 0
		users, _ := a.ListUsers()
		for _, o := range users {
			if o.Role == RoleAdmin || o.Role == RoleFedAdmin {
				admins++
			}
		}
		if admins <= 1 {
			return ErrLastAdmin
		}
	}
	txn := store.Txn{
		Conds: []store.Cond{{Kind: store.CondModRevision, Key: UsersPrefix + name, ModRevision: kv.ModRevision}},
		Ops:   []store.Op{{Type: store.OpDelete, Key: UsersPrefix + name}},
	}
	sessions, _ := a.kv.List(SessionsPrefix)
	for _, s := range sessions {
		var sess Session
		if json.Unmarshal(s.Value, &sess) == nil && sess.User == name {
			txn.Ops = append(txn.Ops, store.Op{Type: store.OpDelete, Key: s.Key})
		}
	}
	_, err := a.kv.Txn(ctx, txn)
	return err
}

// ListUsers returns every user, by name, without password hashes.
func (a *Authenticator) ListUsers() ([]User, error) {
	kvs, _ := a.kv.List(UsersPrefix)
	out := make([]User, 0, len(kvs))
	for _, kv := range kvs {
		var u User
		if err := json.Unmarshal(kv.Value, &u); err != nil {
			return nil, fmt.Errorf("decode user %q: %w", kv.Key, err)
		}
		u.PasswordHash = ""
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Login checks a password and opens a session. client identifies the
// caller (its address) for rate limiting.
func (a *Authenticator) Login(ctx context.Context, name, password, client string) (string, Session, error) {
	lkey := client + "|" + strings.ToLower(name)
	if wait := a.limiter.blocked(lkey); wait > 0 {
		return "", Session{}, &RateLimitedError{RetryAfter: wait}
	}
	u, ok := a.user(name)
	// Hash even for unknown users so timing does not reveal which exist.
	hash := dummyHash
	if ok {
		hash = u.PasswordHash
	}
	match, err := VerifyPassword(hash, password)
	if err != nil {
		return "", Session{}, err
	}
	if !ok || !match {
		if wait := a.limiter.fail(lkey); wait > 0 {
			return "", Session{}, &RateLimitedError{RetryAfter: wait}
		}
		return "", Session{}, ErrBadCredentials
	}
	a.limiter.reset(lkey)
	token, err := newToken()
	if err != nil {
		return "", Session{}, err
	}
	now := a.cfg.Now().UTC()
	sess := Session{User: u.Name, Role: u.Role, CreatedAt: now, ExpiresAt: now.Add(a.cfg.SessionTTL), LastSeen: now}
	b, _ := json.Marshal(sess)
	if _, err := a.kv.Txn(ctx, store.Txn{Ops: []store.Op{{Type: store.OpPut, Key: sessionKey(token), Value: b}}}); err != nil {
		return "", Session{}, fmt.Errorf("store session: %w", err)
	}
	return token, sess, nil
}

// Authenticate returns the session for a token.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Session, error) {
	if token == "" {
		return Session{}, ErrNoSession
	}
	kv, ok, _ := a.kv.Get(sessionKey(token))
	if !ok {
		return Session{}, ErrNoSession
	}
	var sess Session
	if err := json.Unmarshal(kv.Value, &sess); err != nil {
		return Session{}, fmt.Errorf("decode session: %w", err)
	}
	now := a.cfg.Now()
	if now.After(sess.ExpiresAt) || now.Sub(sess.LastSeen) > a.cfg.IdleTimeout {
		return Session{}, ErrSessionExpired
	}
	// The user may have been deleted or changed role since login.
	u, ok := a.user(sess.User)
	if !ok {
		return Session{}, ErrNoSession
	}
	sess.Role = u.Role
	if now.Sub(sess.LastSeen) > a.cfg.IdleTimeout/4 {
		sess.LastSeen = now.UTC()
		b, _ := json.Marshal(sess)
		// Best effort: a lost refresh only shortens the idle window.
		a.kv.Txn(ctx, store.Txn{
			Conds: []store.Cond{{Kind: store.CondModRevision, Key: kv.Key, ModRevision: kv.ModRevision}},
			Ops:   []store.Op{{Type: store.OpPut, Key: kv.Key, Value: b}},
		})
	}
	return sess, nil
}

// Logout ends a session.
func (a *Authenticator) Logout(ctx context.Context, token string) error {
	_, err := a.kv.Txn(ctx, store.Txn{Ops: []store.Op{{Type: store.OpDelete, Key: sessionKey(token)}}})
	return err
}

// PruneSessions deletes expired sessions; the leader runs it periodically.
func (a *Authenticator) PruneSessions(ctx context.Context) (int, error) {
	kvs, _ := a.kv.List(SessionsPrefix)
	now := a.cfg.Now()
	var ops []store.Op
	for _, kv := range kvs {
		var s Session
		if json.Unmarshal(kv.Value, &s) != nil || now.After(s.ExpiresAt) || now.Sub(s.LastSeen) > a.cfg.IdleTimeout {
			ops = append(ops, store.Op{Type: store.OpDelete, Key: kv.Key})
		}
	}
	if len(ops) == 0 {
		return 0, nil
	}
	_, err := a.kv.Txn(ctx, store.Txn{Ops: ops})
	return len(ops), err
}

func (a *Authenticator) user(name string) (User, bool) {
	kv, ok, _ := a.kv.Get(UsersPrefix + name)
	if !ok {
		return User{}, false
	}
	var u User
	if json.Unmarshal(kv.Value, &u) != nil {
		return User{}, false
	}
	return u, true
}

func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return SessionsPrefix + hex.EncodeToString(sum[:])
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return "pst_" + base64.RawURLEncoding.EncodeToString(b), nil
}

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Argon2id parameters (OWASP's minimum recommendation: 19 MiB, 2 passes).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// dummyHash is verified against for unknown users.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// HashPassword returns an encoded argon2id hash with a random salt.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("generate salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword checks pw against an encoded argon2id hash in constant
// time.
func VerifyPassword(encoded, pw string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("auth: stored password hash is not argon2id")
	}
	var version int
	var mem, t uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("auth: unsupported argon2 version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &threads); err != nil {
		return false, fmt.Errorf("auth: bad argon2 parameters %q", parts[3])
	}
	if mem > 1<<20 || t > 16 || threads == 0 {
		return false, fmt.Errorf("auth: argon2 parameters %q out of range", parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("auth: bad salt: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, fmt.Errorf("auth: bad hash encoding")
	}
	got := argon2.IDKey([]byte(pw), salt, t, mem, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
