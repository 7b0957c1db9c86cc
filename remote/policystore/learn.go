package policystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/learn"
	"github.com/palisade-sec/palisade/shared/store"
)

// Learn feeds observed flows to the learner and stores what it learns
// (new learned groups, and learned rules that are new or grew) under
// policy/learned/. It retries when another policy write lands between its
// read and its write. The result is what was stored; it is empty when the
// flows taught nothing new.
func (s *Store) Learn(ctx context.Context, flows []learn.Flow) (*learn.Result, error) {
	return s.storeLearned(ctx, learning{
		name:   "learn",
		stored: "learned policy",
		run:    func(set *policy.Set) (*learn.Result, error) { return s.learner.Learn(set, flows) },
		rules: func(res *learn.Result) ([]store.Op, error) {
			var ops []store.Op
			for _, r := range res.Rules {
				b, err := json.Marshal(r)
				if err != nil {
					return nil, fmt.Errorf("encode learned rule %q: %w", r.Name, err)
				}
				ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixLearnedRules + r.Name, Value: b})
			}
			return ops, nil
		},
	})
}

// LearnProcesses feeds executables run in Discover to the learner and
// stores what it learns (new learned groups and process rules) under
// policy/learned/, retrying like Learn. The result is empty when the
// executables taught nothing new.
func (s *Store) LearnProcesses(ctx context.Context, execs []learn.Exec) (*learn.Result, error) {
	return s.storeLearned(ctx, learning{
		name:   "learn processes",
		stored: "learned process rules",
		run: func(set *policy.Set) (*learn.Result, error) {
			res, err := s.learner.LearnProcesses(set, execs)
			if err != nil {
				return nil, err
			}
			// Store what one change holds (the revision bump takes one
			// op); the rest is learned when the executables are reported
			// again.
			room := store.MaxTxnOps - 1
			res.Groups = res.Groups[:min(len(res.Groups), room)]
			res.ProcessRules = res.ProcessRules[:min(len(res.ProcessRules), room-len(res.Groups))]
			return res, nil
		},
		rules: func(res *learn.Result) ([]store.Op, error) {
			var ops []store.Op
			for _, r := range res.ProcessRules {
				b, err := json.Marshal(r)
				if err != nil {
					return nil, fmt.Errorf("encode learned process rule %q: %w", r.Name, err)
				}
				ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixLearnedProcesses + r.Name, Value: b})
			}
			return ops, nil
		},
	})
}

// learning is one kind of learning: how the learner runs on the current
// policy and how the rules it learns are stored.
type learning struct {
	name   string // context of the learner's errors
	stored string // what is stored, in the log and in store errors
	run    func(*policy.Set) (*learn.Result, error)
	rules  func(*learn.Result) ([]store.Op, error) // one put per learned rule
}

// storeLearned runs l on the current policy and stores the learned groups
// and rules it returns under one revision bump, retrying when another
// policy write lands between its read and its write.
func (s *Store) storeLearned(ctx context.Context, l learning) (*learn.Result, error) {
	var lastErr error
	for range s.cfg.LearnAttempts {
		v, err := s.View()
		if err != nil {
			return nil, err
		}
		res, err := l.run(v.Set)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
		var ops []store.Op
		for _, g := range res.Groups {
			b, err := json.Marshal(g)
			if err != nil {
				return nil, fmt.Errorf("encode learned group %q: %w", g.Name, err)
			}
			ops = append(ops, store.Op{Type: store.OpPut, Key: PrefixLearnedGroups + g.Name, Value: b})
		}
		rules, err := l.rules(res)
		if err != nil {
			return nil, err
		}
		if len(res.Groups) == 0 && len(rules) == 0 {
			return res, nil
		}
		ops = append(ops, rules...)
		cond, bump := v.revisionOps("", "learn")
		rev, err := s.kv.Txn(ctx, store.Txn{Conds: []store.Cond{cond}, Ops: append(ops, bump)})
		if err == nil {
			s.log.Debug("stored "+l.stored, "groups", len(res.Groups), "rules", len(rules), "rev", rev)
			return res, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("store %s: %w", l.stored, err)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("store %s: %w", l.stored, lastErr)
}
