//go:build linux

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/palisade-sec/palisade/agent/datapath"
	"github.com/palisade-sec/palisade/agent/workload"
	"github.com/palisade-sec/palisade/agent/workload/containerd"
	"github.com/palisade-sec/palisade/policy/compile"
	"github.com/palisade-sec/palisade/shared/agentproto"
)

// Config configures an agent.
type Config struct {
	// Controllers are the controllers' agent addresses (HOST:PORT, UDP).
	Controllers []string
	// Token is the agent token, needed only until the agent has enrolled.
	Token string
	// Node is this node's name.
	Node string
	// DataDir keeps the identity and the last table.
	DataDir string
	// Workloads configures the workload source.
	Workloads workload.Config
	// Source picks the workload source: SourceNetns (the Workloads file)
	// or SourceContainerd.
	Source string
	// Containerd configures the containerd source; the host namespace is
	// Workloads.HostNetns.
	Containerd containerd.Config
	// Datapath configures the datapath (its PinDir must be this node's).
	Datapath datapath.Config
	// Processes configures process control (see ProcessConfig).
	Processes ProcessConfig
	// Addresses are the node's own addresses, reported to the controller.
	Addresses []netip.Addr
	// ReportInterval is how often flows and events are sent.
	ReportInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds a connection attempt; IdleTimeout ends a silent
	// connection.
	DialTimeout, IdleTimeout time.Duration
	// Logger receives the agent's logs.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Controllers, Node and DataDir must be
// set.
func DefaultConfig() Config {
	dp := datapath.DefaultConfig()
	return Config{
		Workloads:      workload.DefaultConfig(),
		Source:         SourceNetns,
		Containerd:     containerd.DefaultConfig(),
		Datapath:       dp,
		Processes:      DefaultProcessConfig(),
		ReportInterval: time.Second,
		MinBackoff:     200 * time.Millisecond,
		MaxBackoff:     10 * time.Second,
		DialTimeout:    5 * time.Second,
		IdleTimeout:    15 * time.Second,
	}
}

// Validate reports the first problem of the configuration.
func (c *Config) Validate() error {
	switch {
	case len(c.Controllers) == 0:
		return errors.New("node: config: Controllers is empty")
	case c.Node == "":
		return errors.New("node: config: Node is required")
	case c.DataDir == "":
		return errors.New("node: config: DataDir is required")
	case c.ReportInterval <= 0:
		return fmt.Errorf("node: config: ReportInterval %s is not positive", c.ReportInterval)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("node: config: backoff %s..%s", c.MinBackoff, c.MaxBackoff)
	case c.DialTimeout <= 0 || c.IdleTimeout <= 0:
		return errors.New("node: config: DialTimeout and IdleTimeout must be positive")
	}
	if err := c.validateSource(); err != nil {
		return err
	}
	if err := c.Processes.Validate(); err != nil {
		return err
	}
	return c.Datapath.Validate()
}

// Agent is one node agent.
type Agent struct {
	cfg Config
	log *slog.Logger
	dp  *datapath.Datapath
	id  *Identity

	mu        sync.Mutex
	table     *compile.Table
	endpoints map[string]workload.Endpoint // by workload ID
	attached  map[int]datapath.Identity    // host ifindex -> identity
	wlChanged chan struct{}                // signalled when endpoints change
	agg       *aggregator
	procs     *procControl // process control; see process_linux.go
}

// New checks the configuration.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: cfg.Logger, endpoints: map[string]workload.Endpoint{}, attached: map[int]datapath.Identity{},
		wlChanged: make(chan struct{}, 1), agg: newAggregator(65536, 65536, 10000), procs: newProcControl()}, nil
}

const tableFile = "table.json"

// Run enrolls if needed, opens the datapath and runs until ctx ends. The
// datapath's maps stay pinned when it returns.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	id, ok, err := LoadIdentity(a.cfg.DataDir)
	if err != nil {
		return err
	}
	if !ok {
		if a.cfg.Token == "" {
			return errors.New("node: not enrolled: a token is required")
		}
		for {
			id, err = Enroll(ctx, a.cfg.Controllers, a.cfg.Token, a.cfg.Node, a.cfg.DialTimeout)
			if err == nil {
				break
			}
			if errors.Is(err, ErrRefused) || ctx.Err() != nil {
				return err
			}
			a.log.Warn("enrolment failed, retrying", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(a.cfg.MaxBackoff / 4):
			}
		}
		if err := id.Save(a.cfg.DataDir); err != nil {
			return err
		}
		a.log.Info("enrolled", "node", a.cfg.Node)
	} else if id.Node != a.cfg.Node {
		return fmt.Errorf("node: data dir %s is enrolled as node %q, not %q", a.cfg.DataDir, id.Node, a.cfg.Node)
	}
	a.id = id
	dp, err := datapath.Open(a.cfg.Datapath, a.log)
	if err != nil {
		return fmt.Errorf("open datapath: %w", err)
	}
	a.dp = dp
	defer dp.Close()
	if b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, tableFile)); err == nil {
		var t compile.Table
		if json.Unmarshal(b, &t) == nil {
			a.mu.Lock()
			a.table = &t
			a.mu.Unlock()
		}
	}
	src, err := a.newSource()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(4)
	go func() {
		defer wg.Done()
		a.runProcesses(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := src.Run(ctx, a.onWorkload); err != nil && ctx.Err() == nil {
			a.log.Error("workload source stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := dp.ReadEvents(ctx, func(e datapath.FlowEvent) {
			a.mu.Lock()
			a.agg.add(e, time.Now())
			a.mu.Unlock()
		}); err != nil && ctx.Err() == nil {
			a.log.Error("datapath events stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		a.linkLoop(ctx)
	}()
	a.log.Info("agent ready", "node", a.cfg.Node)
	<-ctx.Done()
	return nil
}

// onWorkload records a workload change and attaches or detaches it.
func (a *Agent) onWorkload(ch workload.Change) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := ch.Endpoint.ID()
	if ch.Kind == workload.Removed {
		for _, itf := range ch.Endpoint.Interfaces {
			if _, ok := a.attached[itf.HostIf]; ok {
				_ = a.inHostNetns(func() error { return a.dp.DetachInterface(itf.HostIf) })
				delete(a.attached, itf.HostIf)
			}
		}
		delete(a.endpoints, id)
	} else {
		a.endpoints[id] = ch.Endpoint
	}
	a.log.Info("workload "+ch.Kind.String(), "workload", id)
	a.attachLocked()
	a.procs.poke()
	select {
	case a.wlChanged <- struct{}{}:
	default:
	}
}

// attachLocked attaches every known workload with its identity in the
// current table; a.mu is held.
func (a *Agent) attachLocked() {
	if a.table == nil {
		return
	}
	for wid, ep := range a.endpoints {
		ident, ok := a.table.IdentityOf(wid)
		if !ok {
			continue
		}
		for _, itf := range ep.Interfaces {
			if itf.HostIf == 0 || a.attached[itf.HostIf] == datapath.Identity(ident) {
				continue
			}
			err := a.inHostNetns(func() error { return a.dp.AttachInterface(itf.HostIf, datapath.Identity(ident)) })
			if err != nil {
				a.log.Warn("attach workload", "workload", wid, "ifindex", itf.HostIf, "err", err)
				continue
			}
			a.attached[itf.HostIf] = datapath.Identity(ident)
			a.log.Info("workload attached", "workload", wid, "if", itf.HostIfN, "identity", ident)
		}
	}
}

// inHostNetns runs fn on a thread in the namespace holding the host side of
// the veths.
func (a *Agent) inHostNetns(fn func() error) error {
	return workload.InNetns(a.cfg.Workloads.HostNetns, fn)
}

// applyTable makes t the policy in force and keeps a copy on disk.
func (a *Agent) applyTable(t *compile.Table) error {
	dt, err := ToDatapath(t)
	if err != nil {
		return err
	}
	if err := a.dp.ApplyTable(dt); err != nil {
		return fmt.Errorf("apply table: %w", err)
	}
	a.mu.Lock()
	a.table = t
	a.attachLocked()
	a.mu.Unlock()
	a.procs.poke()
	if b, err := json.Marshal(t); err == nil {
		tmp := filepath.Join(a.cfg.DataDir, tableFile+".tmp")
		if os.WriteFile(tmp, b, 0o600) == nil {
			_ = os.Rename(tmp, filepath.Join(a.cfg.DataDir, tableFile))
		}
	}
	return nil
}

func (a *Agent) workloadsMsg() *agentproto.Workloads {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := &agentproto.Workloads{Workloads: []agentproto.Workload{}}
	for id, ep := range a.endpoints {
		w := agentproto.Workload{ID: id, Name: ep.Name, Namespace: ep.Namespace, Labels: ep.Labels, Service: ep.Name}
		if s := ep.Labels["service"]; s != "" {
			w.Service = s
		}
		for _, p := range ep.Addrs() {
			w.Addresses = append(w.Addresses, p.Addr())
		}
		for _, im := range ep.Images {
			w.Images = append(w.Images, agentproto.Image{Container: im.Container, Name: im.Name, Digest: im.Digest})
		}
		out.Workloads = append(out.Workloads, w)
	}
	slices.SortFunc(out.Workloads, func(x, y agentproto.Workload) int {
		if x.ID < y.ID {
			return -1
		}
		if x.ID > y.ID {
			return 1
		}
		return 0
	})
	return out
}

// linkLoop keeps a stream to a controller, with backoff between attempts.
func (a *Agent) linkLoop(ctx context.Context) {
	backoff := a.cfg.MinBackoff
	next := 0
	for ctx.Err() == nil {
		addr := a.cfg.Controllers[next%len(a.cfg.Controllers)]
		next++
		start := time.Now()
		err := a.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("controller link down", "addr", addr, "err", err)
		if time.Since(start) > 30*time.Second {
			backoff = a.cfg.MinBackoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, a.cfg.MaxBackoff)
	}
}

// session runs one connection: Hello, then tables and diffs in, workloads,
// flows and events out.
func (a *Agent) session(ctx context.Context, addr string) error {
	tc, err := memberTLS(a.id)
	if err != nil {
		return err
	}
	c, err := dial(ctx, addr, tc, a.cfg.DialTimeout, a.cfg.IdleTimeout)
	if err != nil {
		return err
	}
	defer c.close()
	a.procs.peer.Store(0) // until this controller's Table says its version
	if err := c.enc.Encode(&agentproto.Hello{Version: agentproto.Version, Node: a.cfg.Node, Addresses: a.cfg.Addresses}); err != nil {
		return err
	}
	if err := c.enc.Encode(a.workloadsMsg()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- a.readLoop(c)
		cancel()
	}()
	tick := time.NewTicker(a.cfg.ReportInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.close()
			return <-errc
		case <-a.wlChanged:
			if err := c.enc.Encode(a.workloadsMsg()); err != nil {
				c.close()
				<-errc
				return err
			}
		case now := <-tick.C:
			a.mu.Lock()
			flows, evs := a.agg.drain(now, 2*time.Minute)
			a.mu.Unlock()
			var err error
			if len(flows) > 0 {
				err = c.enc.Encode(&agentproto.Flows{Flows: flows})
			}
			if err == nil && len(evs) > 0 {
				err = c.enc.Encode(&agentproto.Events{Events: evs})
			}
			if err == nil {
				err = a.sendProcesses(c)
			}
			if err != nil {
				c.close()
				<-errc
				return err
			}
		}
	}
}

func (a *Agent) readLoop(c *conn) error {
	var cur *compile.Table
	for {
		msg, err := c.dec.Decode()
		if err != nil {
			return err
		}
		var seq uint64
		var aerr error
		switch msg := msg.(type) {
		case *agentproto.Table:
			seq = msg.Seq
			a.procs.peer.Store(int64(msg.Version))
			var t compile.Table
			if aerr = json.Unmarshal(msg.Table, &t); aerr == nil {
				if aerr = a.applyTable(&t); aerr == nil {
					cur = &t
				}
			}
		case *agentproto.Diff:
			seq = msg.Seq
			if cur == nil {
				return errors.New("node: diff before table")
			}
			var d compile.TableDiff
			if aerr = json.Unmarshal(msg.Diff, &d); aerr == nil {
				t := d.Apply(cur)
				if aerr = a.applyTable(t); aerr == nil {
					cur = t
				}
			}
		case *agentproto.Refuse:
			return fmt.Errorf("%w (%s): %s", ErrRefused, msg.Code, msg.Reason)
		default:
			return fmt.Errorf("node: unexpected %s from controller", msg.Type())
		}
		ack := &agentproto.Ack{Seq: seq}
		if aerr != nil {
			ack.Error = aerr.Error()
			a.log.Warn("apply policy", "err", aerr)
		} else {
			a.log.Debug("policy applied", "seq", seq)
		}
		if err := c.enc.Encode(ack); err != nil {
			return err
		}
	}
}
