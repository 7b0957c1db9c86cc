package agents

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/policy"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/remote/policystore"
	"github.com/palisade-sec/palisade/shared/agentproto"
	"github.com/palisade-sec/palisade/shared/store"
)

// NodeRecord is what the store keeps of a node (agents/nodes/<node>).
type NodeRecord struct {
	Name      string                `json:"name"`
	Addresses []netip.Addr          `json:"addresses,omitempty"`
	Workloads []agentproto.Workload `json:"workloads"`
	Updated   time.Time             `json:"updated"`
}

// Module is the agent side of one controller replica: an httpapi.Module
// and httpapi.Runner.
type Module struct {
	cfg Config
	st  *store.Store
	log *slog.Logger

	// mu guards the compiler and what was compiled from it.
	mu       sync.Mutex
	compiler *compile.Compiler
	table    *compile.Table // cluster-wide, last compile
	gen      uint64         // bumped by every compile that changed something
	changed  chan struct{}  // closed and replaced on every such compile
	compErr  string
	// workloads by ID and by address, from the node records.
	workloads map[string]policy.Workload
	byAddr    map[netip.Addr]string
	nodeAddrs map[netip.Addr]bool

	sessMu   sync.Mutex
	sessions map[*session]struct{}

	events eventSeq
}

// New builds the module.
func New(cfg Config) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Module{
		cfg:      cfg,
		st:       cfg.Store,
		log:      cfg.Logger.With("component", "agents"),
		compiler: compile.NewCompiler(),
		changed:  make(chan struct{}),
		sessions: map[*session]struct{}{},
	}, nil
}

// Run serves agents and keeps the compiled policy current until ctx ends.
func (m *Module) Run(ctx context.Context) error {
	// The CA is created by the leader at first start.
	for m.cfg.CA() == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	srv, err := m.listen()
	if err != nil {
		return err
	}
	m.log.Info("agent listener ready", "addr", srv.ln.Addr().String())
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		_ = srv.close()
		wg.Wait()
	}()
	errc := make(chan error, 3)
	wg.Add(3)
	go func() { defer wg.Done(); errc <- m.serve(ctx, srv, &wg) }()
	go func() { defer wg.Done(); errc <- m.compileLoop(ctx) }()
	go func() { defer wg.Done(); errc <- m.learnLoop(ctx) }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// compileLoop recompiles whenever the policy or a node changes.
func (m *Module) compileLoop(ctx context.Context) error {
	dirty := make(chan struct{}, 1)
	mark := func() {
		select {
		case dirty <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.watch(wctx, mark)
	}()
	m.recompile()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
			m.recompile()
		}
	}
}

// watch calls mark for every change to the policy or the nodes.
func (m *Module) watch(ctx context.Context, mark func()) {
	prefixes := append(policystore.WatchPrefixes(), PrefixNodes)
	rev := m.st.Revision()
	for ctx.Err() == nil {
		w, err := m.st.Watch("", rev)
		if err != nil {
			rev = m.st.Revision()
			mark()
			continue
		}
		for {
			r, evs, err := w.NextRevision(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				rev = m.st.Revision()
				mark()
				break
			}
			rev = r
			for _, e := range evs {
				if hasAnyPrefix(e.Key, prefixes) {
					mark()
					break
				}
			}
		}
	}
}

func hasAnyPrefix(k string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// readNodes reads the node records.
func (m *Module) readNodes() []NodeRecord {
	kvs, _ := m.st.List(PrefixNodes)
	out := make([]NodeRecord, 0, len(kvs))
	for _, kv := range kvs {
		var n NodeRecord
		if err := json.Unmarshal(kv.Value, &n); err != nil {
			m.log.Warn("bad node record", "key", kv.Key, logErr, err)
			continue
		}
		out = append(out, n)
	}
	return out
}

func toPolicyWorkload(node string, w agentproto.Workload) policy.Workload {
	return policy.Workload{ID: w.ID, Name: w.Name, Namespace: w.Namespace, Labels: w.Labels,
		Service: w.Service, Node: node, Addresses: slices.Clone(w.Addresses)}
}

// recompile compiles the policy and the nodes' workloads, and wakes the
// sessions when a node's table changed.
func (m *Module) recompile() {
	view, err := m.cfg.Policy.View()
	if err != nil {
		m.log.Warn("read policy", logErr, err)
		return
	}
	nodes := m.readNodes()
	in := compile.Input{Policy: view.Set}
	workloads := map[string]policy.Workload{}
	byAddr := map[netip.Addr]string{}
	nodeAddrs := map[netip.Addr]bool{}
	for _, n := range nodes {
		in.Nodes = append(in.Nodes, compile.Node{Name: n.Name, Addresses: n.Addresses})
		for _, a := range n.Addresses {
			nodeAddrs[a] = true
		}
		for _, w := range n.Workloads {
			pw := toPolicyWorkload(n.Name, w)
			in.Workloads = append(in.Workloads, pw)
			workloads[pw.ID] = pw
			for _, a := range pw.Addresses {
				byAddr[a] = pw.ID
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.workloads, m.byAddr, m.nodeAddrs = workloads, byAddr, nodeAddrs
	d, err := m.compiler.Load(in)
	if err != nil {
		m.compErr = err.Error()
		m.log.Warn("compile policy", logErr, err)
		return
	}
	m.compErr = ""
	m.table = m.compiler.Table()
	if d.Cluster.Empty() && m.gen > 0 {
		return
	}
	m.gen++
	close(m.changed)
	m.changed = make(chan struct{})
}

// nodeTable returns a node's table, the compile generation and a channel
// closed at the next change.
func (m *Module) nodeTable(node string) (*compile.Table, uint64, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.compiler.NodeTable(node), m.gen, m.changed
}

// groupsOf returns the groups a workload (by ID) or an address belongs to.
func (m *Module) groupsOf(endpoint string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.table == nil {
		return nil
	}
	id, ok := m.table.IdentityOf(endpoint)
	if !ok {
		a, err := netip.ParseAddr(endpoint)
		if err != nil {
			return nil
		}
		id = lookupEndpoint(m.table, a)
	}
	for _, ident := range m.table.Identities {
		if ident.ID == id {
			return ident.Groups
		}
	}
	switch id {
	case compile.IDExternal:
		return []string{policy.GroupExternal}
	case compile.IDNodes:
		return []string{policy.GroupNodes}
	}
	return nil
}

// ruleName returns the name of a compiled rule by its id; "" when the
// last compile has no such rule.
func (m *Module) ruleName(id uint32) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.table == nil || id == 0 {
		return ""
	}
	i, ok := slices.BinarySearchFunc(m.table.Rules, id, func(r compile.RuleName, id uint32) int { return cmp.Compare(r.ID, id) })
	if !ok {
		return ""
	}
	return m.table.Rules[i].Name
}

func lookupEndpoint(t *compile.Table, a netip.Addr) uint32 {
	best, bits := compile.IDExternal, -1
	for _, e := range t.Endpoints {
		if e.Prefix.Contains(a) && e.Prefix.Bits() > bits {
			best, bits = e.ID, e.Prefix.Bits()
		}
	}
	return best
}

// endpointName names an address: the workload's ID, or the address.
func (m *Module) endpointName(a netip.Addr) (name string, workload bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byAddr[a]; ok {
		return id, true
	}
	return a.String(), false
}

// putNode stores a node's record when it changed.
func (m *Module) putNode(ctx context.Context, rec NodeRecord) error {
	if kv, ok, _ := m.st.Get(PrefixNodes + rec.Name); ok {
		var old NodeRecord
		if json.Unmarshal(kv.Value, &old) == nil && slices.Equal(old.Addresses, rec.Addresses) && workloadsEqual(old.Workloads, rec.Workloads) {
			return nil
		}
	}
	rec.Updated = time.Now().UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := m.st.Put(ctx, PrefixNodes+rec.Name, b); err != nil {
		return fmt.Errorf("store node %s: %w", rec.Name, err)
	}
	return nil
}

func workloadsEqual(a, b []agentproto.Workload) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
