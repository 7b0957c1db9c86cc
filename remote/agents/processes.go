package agents

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/learn"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// learnProcesses turns the executables a node's workloads ran in Discover
// into learned process rules. Workloads are looked up in the node's stored
// record, which the same stream wrote before; executables of workloads the
// node never reported, or whose process mode is no longer Discover in the
// policy compiled last, are ignored.
func (m *Module) learnProcesses(ctx context.Context, node string, procs []agentproto.Process) error {
	if len(procs) == 0 {
		return nil
	}
	kv, ok, _ := m.st.Get(PrefixNodes + node)
	if !ok {
		return fmt.Errorf("agents: node %q has reported no workloads", node)
	}
	var rec NodeRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return fmt.Errorf("read node %q: %w", node, err)
	}
	byID := map[string]agentproto.Workload{}
	for _, w := range rec.Workloads {
		byID[w.ID] = w
	}
	var execs []learn.Exec
	for _, p := range procs {
		w, ok := byID[p.Workload]
		if !ok {
			m.log.Debug("process of an unknown workload", logNode, node, "workload", p.Workload, "path", p.Path)
			continue
		}
		if mode, ok := m.processMode(p.Workload); ok && mode != policy.ModeDiscover {
			m.log.Debug("process reported outside Discover", logNode, node, "workload", p.Workload, "path", p.Path, "mode", mode)
			continue
		}
		pw := toPolicyWorkload(node, w)
		execs = append(execs, learn.Exec{Workload: &pw, Path: p.Path})
	}
	if len(execs) == 0 {
		return nil
	}
	res, err := m.cfg.Policy.LearnProcesses(ctx, execs)
	if err != nil {
		return err
	}
	if len(res.ProcessRules) > 0 {
		m.log.Info("learned process rules", logNode, node, "groups", len(res.Groups), "rules", len(res.ProcessRules))
	}
	return nil
}

// processMode returns the process mode of a workload's identity in the
// last compiled table.
func (m *Module) processMode(workload string) (policy.Mode, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.table == nil {
		return "", false
	}
	id, ok := m.table.IdentityOf(workload)
	if !ok {
		return "", false
	}
	for _, p := range m.table.Profiles {
		if p.ID == id {
			return p.ProcessMode, true
		}
	}
	return "", false
}
