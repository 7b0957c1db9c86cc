package policystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/palisade-sec/palisade/policy/learn"
	"github.com/palisade-sec/palisade/shared/store"
)

// Learn feeds observed flows to the learner and stores what it learns
// (new learned groups, and learned rules that are new or grew) under
// policy/learned/. It retries when another policy write lands between its
// read and its write. The result is what was stored; it is empty when the
// flows taught nothing new.
func (s *Store) Learn(ctx context.Context, flows []learn.Flow) (*learn.Result, error) {
	var lastErr error
	for range s.cfg.LearnAttempts {
		v, err := s.View()
		if err != nil {
			return nil, err
		}
		res, err := s.learner.Learn(v.Set, flows)
		if err != nil {
			return nil, fmt.Errorf("learn: %w", err)
		}
		if len(res.Groups) == 0 && len(res.Rules) == 0 {
			return res, nil
		}
		var ops []store.Op
		for _, g := range res.Groups {
			b, err := json.Marshal(g)
			if err != nil {
				return nil, fmt.Errorf("encode learned group %q: %w", g.Name, err)
			}
			ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixLearnedGroups + g.Name, Value: b})
		}
		for _, r := range res.Rules {
			b, err := json.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("encode learned rule %q: %w", r.Name, err)
			}
			ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixLearnedRules + r.Name, Value: b})
		}
		cond, bump := v.revisionOps("", "learn")
		rev, err := s.kv.Txn(ctx, store.Txn{Conds: []store.Cond{cond}, Ops: append(ops, bump)})
		if err == nil {
			s.log.Debug("stored learned policy", "groups", len(res.Groups), "rules", len(res.Rules), "rev", rev)
			return res, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("store learned policy: %w", err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("store learned policy: %w", lastErr)
}

// LearnProcesses feeds executables run in Discover to the learner and
// stores what it learns (new learned groups and process rules) under
// policy/learned/, retrying like Learn. The result is empty when the
// executables taught nothing new.
func (s *Store) LearnProcesses(ctx context.Context, execs []learn.Exec) (*learn.Result, error) {
	var lastErr error
	for range s.cfg.LearnAttempts {
		v, err := s.View()
		if err != nil {
			return nil, err
		}
		res, err := s.learner.LearnProcesses(v.Set, execs)
		if err != nil {
			return nil, fmt.Errorf("learn processes: %w", err)
		}
		if len(res.Groups) == 0 && len(res.ProcessRules) == 0 {
			return res, nil
		}
		var ops []store.Op
		for _, g := range res.Groups {
			b, err := json.Marshal(g)
			if err != nil {
				return nil, fmt.Errorf("encode learned group %q: %w", g.Name, err)
			}
			ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixLearnedGroups + g.Name, Value: b})
		}
		for _, r := range res.ProcessRules {
			b, err := json.Marshal(r)
			if err != nil {
				return nil, fmt.Errorf("encode learned process rule %q: %w", r.Name, err)
			}
			ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixLearnedProcesses + r.Name, Value: b})
		}
		if len(ops)+1 > store.MaxTxnOps {
			// Store what one change holds; the rest is learned when the
			// executables are reported again.
			ops = ops[:store.MaxTxnOps-1]
		}
		cond, bump := v.revisionOps("", "learn")
		rev, err := s.kv.Txn(ctx, store.Txn{Conds: []store.Cond{cond}, Ops: append(ops, bump)})
		if err == nil {
			s.log.Debug("stored learned process rules", "groups", len(res.Groups), "rules", len(res.ProcessRules), "rev", rev)
			return res, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("store learned process rules: %w", err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("store learned process rules: %w", lastErr)
}
