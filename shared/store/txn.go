package store

import (
	"errors"
	"fmt"

	iradix "github.com/hashicorp/go-immutable-radix"
)

// OpType is what an Op does.
type OpType uint8

const (
	// OpPut writes Value at Key.
	OpPut OpType = 1
	// OpDelete removes Key.
	OpDelete OpType = 2
	// OpDeletePrefix removes every key starting with Key.
	OpDeletePrefix OpType = 3
)

// Op is one write in a transaction.
type Op struct {
	Type  OpType `json:"t"`
	Key   string `json:"k"`
	Value []byte `json:"v,omitempty"`
}

// CondKind is what a Cond checks.
type CondKind uint8

const (
	// CondAbsent holds when the key does not exist.
	CondAbsent CondKind = 1
	// CondExists holds when the key exists.
	CondExists CondKind = 2
	// CondModRevision holds when the key's ModRevision equals ModRevision
	// (compare-and-swap).
	CondModRevision CondKind = 3
)

// Cond is a precondition of a transaction.
type Cond struct {
	Kind        CondKind `json:"c"`
	Key         string   `json:"k"`
	ModRevision uint64   `json:"r,omitempty"`
}

// Txn is an atomic, conditional batch of writes: if every Cond holds, every
// Op is applied at one revision; otherwise nothing is written and the
// result is a *ConflictError.
type Txn struct {
	Conds []Cond `json:"conds,omitempty"`
	Ops   []Op   `json:"ops"`
}

// Limits on a transaction, checked before it reaches the log.
const (
	MaxKeyLen  = 1024
	MaxTxnSize = 8 << 20
	MaxTxnOps  = 10000
)

// ErrConflict is matched (errors.Is) by every *ConflictError.
var ErrConflict = errors.New("store: condition failed")

// ConflictError says which condition of a transaction did not hold.
type ConflictError struct {
	Key    string
	Reason string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: condition failed on %q: %s", e.Key, e.Reason)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func (c Cond) check(tree *iradix.Tree) error {
	v, ok := tree.Get([]byte(c.Key))
	switch c.Kind {
	case CondAbsent:
		if ok {
			return &ConflictError{Key: c.Key, Reason: "key exists"}
		}
	case CondExists:
		if !ok {
			return &ConflictError{Key: c.Key, Reason: "key does not exist"}
		}
	case CondModRevision:
		if !ok {
			return &ConflictError{Key: c.Key, Reason: fmt.Sprintf("key does not exist (want revision %d)", c.ModRevision)}
		}
		if got := v.(*KV).ModRevision; got != c.ModRevision {
			return &ConflictError{Key: c.Key, Reason: fmt.Sprintf("revision is %d, want %d", got, c.ModRevision)}
		}
	default:
		panic(fmt.Sprintf("store: unknown condition kind %d", c.Kind))
	}
	return nil
}

// Validate checks a transaction before it is submitted, so that nothing the
// FSM would reject or panic on reaches the log.
func (t *Txn) Validate() error {
	if len(t.Ops) == 0 {
		return errors.New("store: transaction has no ops")
	}
	if len(t.Ops) > MaxTxnOps {
		return fmt.Errorf("store: transaction has %d ops, limit %d", len(t.Ops), MaxTxnOps)
	}
	size := 0
	for i, op := range t.Ops {
		if op.Key == "" && op.Type != OpDeletePrefix {
			return fmt.Errorf("store: op %d: empty key", i)
		}
		if len(op.Key) > MaxKeyLen {
			return fmt.Errorf("store: op %d: key of %d bytes exceeds %d", i, len(op.Key), MaxKeyLen)
		}
		switch op.Type {
		case OpPut, OpDelete, OpDeletePrefix:
		default:
			return fmt.Errorf("store: op %d: unknown op type %d", i, op.Type)
		}
		size += len(op.Key) + len(op.Value)
	}
	if size > MaxTxnSize {
		return fmt.Errorf("store: transaction of %d bytes exceeds %d", size, MaxTxnSize)
	}
	for i, c := range t.Conds {
		switch c.Kind {
		case CondAbsent, CondExists, CondModRevision:
		default:
			return fmt.Errorf("store: condition %d: unknown kind %d", i, c.Kind)
		}
		if c.Key == "" {
			return fmt.Errorf("store: condition %d: empty key", i)
		}
	}
	return nil
}
