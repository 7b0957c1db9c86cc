package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/palisade-sec/palisade/shared/logfields"
)

// memberStatus is what gossip says about a replica.
type memberStatus int

const (
	memberAlive memberStatus = iota
	memberFailed
	memberLeft
)

func (s memberStatus) String() string {
	switch s {
	case memberAlive:
		return "alive"
	case memberFailed:
		return "failed"
	case memberLeft:
		return "left"
	}
	return "unknown"
}

// nodeMeta is what each replica publishes through gossip.
type nodeMeta struct {
	Raft string `json:"r"`
	API  string `json:"a,omitempty"`
	// Ready is true once the replica is part of a Raft configuration; a
	// new replica that sees a ready peer joins instead of bootstrapping.
	Ready bool `json:"ok,omitempty"`
	// Meta is Config.Meta.
	Meta map[string]string `json:"m,omitempty"`
	// Leaving is published just before a graceful leave, so peers can
	// tell it from a failure (memberlist's leave event does not say).
	Leaving bool `json:"lv,omitempty"`
}

type memberInfo struct {
	meta   nodeMeta
	status memberStatus
	since  time.Time
}

// discovery finds peers with memberlist, bootstraps a new cluster once
// BootstrapExpect replicas are seen, and (on the leader) keeps the Raft
// configuration in line with gossip: new replicas are added, replicas that
// left are removed, replicas unreachable for ReapTimeout are reaped.
type discovery struct {
	s      *Store
	ml     *memberlist.Memberlist
	events chan memberlist.NodeEvent

	mu           sync.Mutex
	local        nodeMeta
	members      map[string]memberInfo
	unknownSince map[string]time.Time
	bootstrapped bool
	joined       bool

	stop chan struct{}
	wg   sync.WaitGroup
}

func startDiscovery(s *Store, hasState bool, logOut io.Writer) (*discovery, error) {
	cfg := s.cfg
	host, portStr, err := net.SplitHostPort(cfg.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.GossipAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: bad port: %w", cfg.GossipAddr, err)
	}
	advHost := host
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		raftHost, _, _ := net.SplitHostPort(cfg.RaftAdvertise)
		advHost = raftHost
	}
	d := &discovery{
		s:            s,
		events:       make(chan memberlist.NodeEvent, 256),
		local:        nodeMeta{Raft: cfg.RaftAdvertise, API: cfg.APIAddr, Ready: hasState, Meta: cfg.Meta},
		members:      map[string]memberInfo{},
		unknownSince: map[string]time.Time{},
		bootstrapped: hasState,
		stop:         make(chan struct{}),
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertiseAddr = advHost
	mc.AdvertisePort = port
	mc.Delegate = d
	mc.Events = &memberlist.ChannelEventDelegate{Ch: d.events}
	mc.LogOutput = logOut
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.GossipInterval = 100 * time.Millisecond
	mc.SuspicionMult = 2
	// A replica restarted under the same name may come back at once.
	mc.DeadNodeReclaimTime = time.Second
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.GossipAddr, err)
	}
	d.ml = ml
	d.wg.Add(1)
	go d.loop()
	return d, nil
}

// NodeMeta implements memberlist.Delegate.
func (d *discovery) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, _ := json.Marshal(d.local)
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg implements memberlist.Delegate.
func (d *discovery) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (d *discovery) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (d *discovery) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (d *discovery) MergeRemoteState([]byte, bool) {}

func (d *discovery) member(name string) (memberInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.members[name]
	return m, ok
}

func (d *discovery) loop() {
	defer d.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	d.tryJoin()
	for {
		select {
		case <-d.stop:
			return
		case ev := <-d.events:
			d.record(ev)
		case <-tick.C:
			d.tryJoin()
			d.tryBootstrap()
			d.markReady()
			if d.s.IsLeader() {
				d.reconcile()
			}
		}
	}
}

func (d *discovery) record(ev memberlist.NodeEvent) {
	var meta nodeMeta
	if len(ev.Node.Meta) > 0 {
		if err := json.Unmarshal(ev.Node.Meta, &meta); err != nil {
			d.s.log.Warn("ignoring gossip member with unreadable metadata", logfields.Replica, ev.Node.Name, logfields.Error, err)
			return
		}
	}
	info := memberInfo{meta: meta, status: memberAlive, since: time.Now()}
	d.mu.Lock()
	if ev.Event == memberlist.NodeLeave {
		info.status = memberFailed
		if old, ok := d.members[ev.Node.Name]; meta.Leaving || (ok && old.meta.Leaving) {
			info.status = memberLeft
		}
	}
	if old, ok := d.members[ev.Node.Name]; ok && old.status == info.status {
		info.since = old.since
	}
	d.members[ev.Node.Name] = info
	d.mu.Unlock()
	d.s.log.Debug("gossip member", logfields.Replica, ev.Node.Name, logfields.Status, info.status.String())
}

func (d *discovery) tryJoin() {
	d.mu.Lock()
	joined := d.joined
	d.mu.Unlock()
	if joined || len(d.s.cfg.Join) == 0 {
		return
	}
	n, err := d.ml.Join(d.s.cfg.Join)
	if n > 0 {
		d.mu.Lock()
		d.joined = true
		d.mu.Unlock()
		d.s.log.Info("joined gossip", logfields.Count, n)
		return
	}
	d.s.log.Debug("gossip join failed, retrying", logfields.Error, err)
}

// tryBootstrap forms a new cluster once BootstrapExpect unready replicas
// (this one included) are alive and none of them is already part of a
// cluster. Every such replica computes the same configuration, which Raft
// tolerates being bootstrapped more than once.
func (d *discovery) tryBootstrap() {
	d.mu.Lock()
	if d.bootstrapped {
		d.mu.Unlock()
		return
	}
	var servers []raft.Server
	for name, m := range d.members {
		if m.status != memberAlive {
			continue
		}
		if m.meta.Ready {
			// An existing cluster: wait for its leader to add us.
			d.mu.Unlock()
			return
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(name), Address: raft.ServerAddress(m.meta.Raft), Suffrage: raft.Voter})
	}
	d.mu.Unlock()
	if len(servers) < d.s.cfg.BootstrapExpect {
		return
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	err := d.s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		d.s.log.Error("bootstrap failed", logfields.Error, err)
		return
	}
	d.s.log.Info("bootstrapped cluster", logfields.Count, len(servers))
	d.mu.Lock()
	d.bootstrapped = true
	d.mu.Unlock()
}

func (d *discovery) markReady() {
	d.mu.Lock()
	ready := d.local.Ready
	d.mu.Unlock()
	if ready || !d.s.inConfiguration() {
		return
	}
	d.mu.Lock()
	d.local.Ready = true
	d.bootstrapped = true
	d.mu.Unlock()
	if err := d.ml.UpdateNode(time.Second); err != nil {
		d.s.log.Warn("publish ready state", logfields.Error, err)
	}
}

// reconcile runs on the leader: it adds alive replicas missing from the
// Raft configuration and removes replicas that left or stayed unreachable
// past the reap timeout.
func (d *discovery) reconcile() {
	inConfig := map[string]raft.Server{}
	for _, srv := range d.s.voters() {
		inConfig[string(srv.ID)] = srv
	}
	now := time.Now()
	d.mu.Lock()
	var add []raft.Server
	var remove []string
	for name, m := range d.members {
		_, in := inConfig[name]
		if !in && m.status == memberAlive && m.meta.Raft != "" {
			add = append(add, raft.Server{ID: raft.ServerID(name), Address: raft.ServerAddress(m.meta.Raft)})
		}
	}
	for name := range inConfig {
		if name == d.s.cfg.Name {
			continue
		}
		m, known := d.members[name]
		switch {
		case known && m.status == memberLeft:
			remove = append(remove, name)
		case known && m.status == memberFailed && now.Sub(m.since) > d.s.cfg.ReapTimeout:
			remove = append(remove, name)
		case !known:
			since, ok := d.unknownSince[name]
			if !ok {
				d.unknownSince[name] = now
			} else if now.Sub(since) > d.s.cfg.ReapTimeout {
				remove = append(remove, name)
			}
		default:
			delete(d.unknownSince, name)
		}
	}
	d.mu.Unlock()
	for _, srv := range add {
		if err := d.s.raft.AddVoter(srv.ID, srv.Address, 0, 5*time.Second).Error(); err != nil {
			d.s.log.Warn("add replica failed", logfields.Replica, srv.ID, logfields.Error, err)
			continue
		}
		d.s.log.Info("added replica", logfields.Replica, srv.ID, logfields.Address, srv.Address)
	}
	for _, name := range remove {
		if err := d.s.raft.RemoveServer(raft.ServerID(name), 0, 5*time.Second).Error(); err != nil {
			d.s.log.Warn("remove replica failed", logfields.Replica, name, logfields.Error, err)
			continue
		}
		d.mu.Lock()
		delete(d.unknownSince, name)
		d.mu.Unlock()
		d.s.log.Info("removed replica", logfields.Replica, name)
	}
}

func (d *discovery) leave(timeout time.Duration) error {
	d.mu.Lock()
	d.local.Leaving = true
	d.mu.Unlock()
	if err := d.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("publish leaving: %w", err)
	}
	return d.ml.Leave(timeout)
}

func (d *discovery) shutdown() error {
	select {
	case <-d.stop:
		return nil
	default:
	}
	close(d.stop)
	d.wg.Wait()
	if err := d.ml.Shutdown(); err != nil {
		return fmt.Errorf("stop gossip: %w", err)
	}
	return nil
}
