// Package clusterinfo is a controller cluster's identity and federation
// role (standalone, primary or remote), kept in the replicated store. Role
// changes are conditional transactions, so every replica agrees on them and
// two concurrent changes cannot both win.
package clusterinfo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/palisade-sec/palisade/shared/store"
)

// Key is where the identity is stored.
const Key = "cluster/info"

// Roles of a cluster in a federation.
const (
	Standalone = "standalone"
	Primary    = "primary"
	Remote     = "remote"
)

// Info is a cluster's identity.
type Info struct {
	// Name is the cluster's name; in a federation, its member name.
	Name string `json:"name"`
	// Role is standalone, primary or remote.
	Role string `json:"role"`
	// Primary names the primary of a remote cluster.
	Primary string `json:"primary,omitempty"`
}

// KV is the part of the store this package uses.
type KV interface {
	Get(key string) (store.KV, bool, uint64)
	Txn(ctx context.Context, txn store.Txn) (uint64, error)
}

// ErrRole is wrapped by every refused role change.
var ErrRole = errors.New("clusterinfo: role change refused")

// Get reads the identity; a cluster not yet formed reads as standalone.
func Get(kv KV) Info {
	info, _, _ := get(kv)
	return info
}

func get(kv KV) (Info, uint64, bool) {
	info := Info{Role: Standalone}
	v, ok, _ := kv.Get(Key)
	if !ok {
		return info, 0, false
	}
	json.Unmarshal(v.Value, &info)
	return info, v.ModRevision, true
}

// Transition changes the role from one of from to the result of change,
// with extra ops in the same transaction. It fails with ErrRole when the
// current role is not in from, and with a conflict when another change
// raced it.
func Transition(ctx context.Context, kv KV, from []string, change func(*Info), extra ...store.Op) (Info, uint64, error) {
	info, rev, ok := get(kv)
	if !ok {
		return info, 0, fmt.Errorf("%w: the cluster has not finished forming", ErrRole)
	}
	allowed := false
	for _, f := range from {
		allowed = allowed || info.Role == f
	}
	if !allowed {
		return info, 0, fmt.Errorf("%w: cluster %q is %s, want %v", ErrRole, info.Name, info.Role, from)
	}
	change(&info)
	b, _ := json.Marshal(info)
	ops := append([]store.Op{{Type: store.OpPut, Key: Key, Value: b}}, extra...)
	r, err := kv.Txn(ctx, store.Txn{Conds: []store.Cond{{Kind: store.CondModRevision, Key: Key, ModRevision: rev}}, Ops: ops})
	return info, r, err
}
