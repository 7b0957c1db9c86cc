package policystore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/policy/code"
	"github.com/palisade-sec/palisade/policy/learn"
	"github.com/palisade-sec/palisade/shared/logfields"
	"github.com/palisade-sec/palisade/shared/store"
)

// Key prefixes and keys; see the package documentation.
const (
	PrefixObjects       = "policy/objects/"
	PrefixFederated     = "federated/objects/"
	PrefixLearnedGroups = "policy/learned/groups/"
	PrefixLearnedRules  = "policy/learned/rules/"
	// PrefixLearnedProcesses holds learned process rules.
	PrefixLearnedProcesses = "policy/learned/processes/"
	PrefixModes            = "policy/modes/"
	KeyDefaults            = "policy/defaults"
	KeyRevision            = "policy/revision"
	prefixPolicy           = "policy/"
	AnnotationSource       = "palisade.dev/source"
	AnnotationRevision     = "palisade.dev/revision"
	annotationSourceFed    = "federated"
	annotationSourceLrnd   = "learned"
)

// WatchPrefixes are the key prefixes whose changes change the effective
// policy: watch them to recompile.
func WatchPrefixes() []string { return []string{prefixPolicy, PrefixFederated} }

// KV is the part of the replicated store the package uses.
type KV interface {
	Get(key string) (store.KV, bool, uint64)
	List(prefix string) ([]store.KV, uint64)
	Txn(ctx context.Context, txn store.Txn) (uint64, error)
}

// Config configures a Store.
type Config struct {
	// KV is the replicated store.
	KV KV
	// Learn tunes learning from observed flows.
	Learn learn.Config
	// LearnAttempts is how many times Learn retries when another policy
	// write lands between its read and its write.
	LearnAttempts int
	// Logger receives the package's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; KV must be set.
func DefaultConfig() Config {
	return Config{Learn: learn.DefaultConfig(), LearnAttempts: 5}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if c.KV == nil {
		return errors.New("policystore: config: KV is nil")
	}
	if c.LearnAttempts < 1 {
		return fmt.Errorf("policystore: config: LearnAttempts %d must be at least 1", c.LearnAttempts)
	}
	return c.Learn.Validate()
}

// Store reads and writes a cluster's policy.
type Store struct {
	kv      KV
	learner *learn.Learner
	cfg     Config
	log     *slog.Logger

	mu     sync.Mutex
	cached *View // the last view built, reused while its keys are unchanged
	sum    viewSum
}

// New builds a Store.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l, err := learn.New(cfg.Learn)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Store{kv: cfg.KV, learner: l, cfg: cfg, log: log.With(logfields.Component, "policystore")}, nil
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// DocKey returns the <Kind>/<name> part of a document's key: for a
// namespaced SecurityRule <Kind>/<namespace>.<name>. It fails when the
// namespace is not a DNS label or the name is empty.
func DocKey(o code.Object) (string, error) {
	name := o.GetName()
	if name == "" {
		return "", &InvalidError{Field: "metadata.name", Problem: fmt.Sprintf("%s without a name", o.GetKind())}
	}
	if strings.ContainsAny(name, "\x00") || len(name) > 253 {
		return "", &InvalidError{Field: "metadata.name", Problem: fmt.Sprintf("%s %q: bad name", o.GetKind(), name)}
	}
	if sr, ok := o.(*code.SecurityRule); ok && sr.Metadata.Namespace != "" {
		ns := sr.Metadata.Namespace
		if !dnsLabel.MatchString(ns) {
			return "", &InvalidError{Field: "metadata.namespace", Problem: fmt.Sprintf("%s %q: namespace %q is not a DNS label", o.GetKind(), name, ns)}
		}
		return o.GetKind() + "/" + ns + "." + name, nil
	}
	return o.GetKind() + "/" + name, nil
}

// docTitle names a document for messages ("SecurityRule shop/web").
func docTitle(o code.Object) string {
	if sr, ok := o.(*code.SecurityRule); ok && sr.Metadata.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", o.GetKind(), sr.Metadata.Namespace, o.GetName())
	}
	return fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
}

// decodeDoc reads one stored document: JSON of a palisade.dev/v1 kind,
// strictly (an unknown field is an error).
func decodeDoc(b []byte) (code.Object, error) {
	var head code.TypeMeta
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", code.ErrDecode, err)
	}
	if head.APIVersion != code.APIVersion {
		return nil, fmt.Errorf("%w: apiVersion %q is not %s", code.ErrDecode, head.APIVersion, code.APIVersion)
	}
	var obj code.Object
	switch head.Kind {
	case code.KindSecurityRule, code.KindClusterSecurityRule:
		obj = &code.SecurityRule{}
	case code.KindAdmissionRule:
		obj = &code.AdmissionRule{}
	case code.KindGroupDefinition:
		obj = &code.GroupDefinition{}
	default:
		return nil, fmt.Errorf("%w: unknown kind %q", code.ErrDecode, head.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", code.ErrDecode, head.Kind, err)
	}
	if obj.GetName() == "" {
		return nil, fmt.Errorf("%w: %s: metadata.name is missing", code.ErrDecode, head.Kind)
	}
	return obj, nil
}

func annotations(o code.Object) map[string]string {
	switch d := o.(type) {
	case *code.SecurityRule:
		return d.Metadata.Annotations
	case *code.GroupDefinition:
		return d.Metadata.Annotations
	case *code.AdmissionRule:
		return d.Metadata.Annotations
	}
	return nil
}

// withAnnotations returns a copy of o whose annotations are set by edit.
func withAnnotations(o code.Object, edit func(map[string]string)) code.Object {
	fix := func(m *code.ObjectMeta) {
		a := map[string]string{}
		for k, v := range m.Annotations {
			a[k] = v
		}
		edit(a)
		if len(a) == 0 {
			a = nil
		}
		m.Annotations = a
	}
	switch d := o.(type) {
	case *code.SecurityRule:
		c := *d
		fix(&c.Metadata)
		return &c
	case *code.GroupDefinition:
		c := *d
		fix(&c.Metadata)
		return &c
	case *code.AdmissionRule:
		c := *d
		fix(&c.Metadata)
		return &c
	}
	return o
}

// revisionValue is what KeyRevision holds.
type revisionValue struct {
	User string    `json:"user,omitempty"`
	What string    `json:"what"`
	At   time.Time `json:"at"`
}

// revisionOps returns the condition that nothing else changed the policy
// since the view was read, and the write that records this change.
func (v *View) revisionOps(user, what string) (store.Cond, store.Op) {
	cond := store.Cond{Kind: store.CondAbsent, Key: KeyRevision}
	if v.policyRev != 0 {
		cond = store.Cond{Kind: store.CondModRevision, Key: KeyRevision, ModRevision: v.policyRev}
	}
	b, _ := json.Marshal(revisionValue{User: user, What: what, At: time.Now().UTC()})
	return cond, store.Op{Type: store.OpPut, Key: KeyRevision, Value: b}
}
