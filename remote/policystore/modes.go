package policystore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/shared/store"
)

// ModeRequest changes the network mode, or with Process the process and
// file mode, of one group or of all of them.
type ModeRequest struct {
	// Group names the group; empty with All.
	Group string `json:"group,omitempty"`
	// All changes every group that is not federated, and the default.
	All bool `json:"all,omitempty"`
	// Mode is discover, monitor or protect.
	Mode string `json:"mode"`
	// Process changes the process and file mode instead of the network mode.
	Process bool `json:"process,omitempty"`
	// User is recorded as the author of the change.
	User string `json:"-"`
}

// ModeResult says what a mode change did.
type ModeResult struct {
	Mode    policy.Mode `json:"mode"`
	Process bool        `json:"process"`
	// Groups lists the groups changed.
	Groups []string `json:"groups"`
	// Default is true when the default mode changed too.
	Default bool `json:"default,omitempty"`
	// Skipped lists federated groups All left alone.
	Skipped  []string `json:"skipped,omitempty"`
	Revision uint64   `json:"revision"`
}

// SetMode changes group modes. A federated group's mode is read-only
// (ReadOnlyError); an unknown group is ErrUnknownGroup.
func (s *Store) SetMode(ctx context.Context, req ModeRequest) (*ModeResult, error) {
	m, err := policy.ParseMode(req.Mode)
	if err != nil {
		return nil, &InvalidError{Field: "mode", Problem: fmt.Sprintf("%q is not discover, monitor or protect", req.Mode)}
	}
	switch {
	case req.All && req.Group != "":
		return nil, &InvalidError{Field: "group", Problem: "give a group or all, not both"}
	case !req.All && req.Group == "":
		return nil, &InvalidError{Field: "group", Problem: "give a group, or all: true"}
	}
	v, err := s.View()
	if err != nil {
		return nil, err
	}
	res := &ModeResult{Mode: m, Process: req.Process, Groups: []string{}}
	var ops []store.Op
	setGroup := func(name string) {
		ov := v.overrides[name]
		if req.Process {
			ov.ProcessMode = m
		} else {
			ov.NetworkMode = m
		}
		b, _ := json.Marshal(ov)
		ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixModes + name, Value: b})
		res.Groups = append(res.Groups, name)
	}
	if req.All {
		d := v.defaults
		if req.Process {
			d.ProcessMode = m
		} else {
			d.NetworkMode = m
		}
		b, _ := json.Marshal(d)
		ops = append(ops, store.Op{Type: store.OpPut, Key: KeyDefaults, Value: b})
		res.Default = true
		for _, g := range v.Set.Groups {
			if g.Source == policy.SourceFederated {
				res.Skipped = append(res.Skipped, g.Name)
				continue
			}
			setGroup(g.Name)
		}
	} else {
		g := v.Set.Group(req.Group)
		switch {
		case g == nil:
			return nil, fmt.Errorf("%w %q", ErrUnknownGroup, req.Group)
		case g.Source == policy.SourceFederated:
			return nil, &ReadOnlyError{Object: objKey{policy.KindGroup, g.Name}.String()}
		}
		setGroup(g.Name)
	}
	if len(ops)+1 > store.MaxTxnOps {
		return nil, &InvalidError{Field: "all", Problem: fmt.Sprintf("%d groups are more than one change may hold (%d)", len(ops), store.MaxTxnOps-1)}
	}
	cond, bump := v.revisionOps(req.User, "mode")
	rev, err := s.kv.Txn(ctx, store.Txn{Conds: []store.Cond{cond}, Ops: append(ops, bump)})
	if err != nil {
		return nil, fmt.Errorf("set mode: %w", err)
	}
	slices.Sort(res.Groups)
	res.Revision = rev
	return res, nil
}
