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
	"sync/atomic"
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
	lastJoin     time.Time
	// blockedAt is the address each replica waits to move to while another
	// voter holds it, so the wait is logged once.
	blockedAt map[raft.ServerID]raft.ServerAddress

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
		blockedAt:    map[raft.ServerID]raft.ServerAddress{},
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

// Log field names of address moves.
const (
	logFrom   = "from"
	logHolder = "holder"
)

// rejoinInterval is how often a replica that joined gossip but is not yet
// listed at its own address in the Raft configuration exchanges state with
// its join addresses again.
const rejoinInterval = 2 * time.Second

// tryJoin contacts the join addresses until one answers, and afterwards
// again every rejoinInterval until the Raft configuration lists this
// replica at its advertised address. A replica restarted under the same
// name at a new address is refused by its peers (memberlist's address
// conflict) until they declare the old incarnation dead; only a later full
// state exchange makes them accept the new address, and waiting for
// memberlist's own periodic exchange would take tens of seconds.
func (d *discovery) tryJoin() {
	if len(d.s.cfg.Join) == 0 {
		return
	}
	d.mu.Lock()
	joined, last := d.joined, d.lastJoin
	d.mu.Unlock()
	if joined && (d.s.placed() || time.Since(last) < rejoinInterval) {
		return
	}
	n, err := d.ml.Join(d.s.cfg.Join)
	d.mu.Lock()
	d.lastJoin = time.Now()
	if n > 0 {
		d.joined = true
	}
	d.mu.Unlock()
	switch {
	case n > 0 && !joined:
		d.s.log.Info("joined gossip", logfields.Count, n)
	case n == 0:
		d.s.log.Debug("gossip join failed, retrying", logfields.Error, err)
	}
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
// Raft configuration, moves replicas that came back at a new Raft address
// (a restarted pod gets a new IP but keeps its name and data dir) and
// removes replicas that left or stayed unreachable past the reap timeout.
func (d *discovery) reconcile() {
	voters := d.s.voters()
	inConfig := map[string]raft.Server{}
	for _, srv := range voters {
		inConfig[string(srv.ID)] = srv
	}
	now := time.Now()
	d.mu.Lock()
	var add []raft.Server
	var remove []string
	for name, m := range d.members {
		if name == d.s.cfg.Name || m.status != memberAlive || m.meta.Raft == "" {
			continue
		}
		if _, in := inConfig[name]; !in {
			add = append(add, raft.Server{ID: raft.ServerID(name), Address: raft.ServerAddress(m.meta.Raft)})
		}
	}
	move := addressChanges(voters, d.s.cfg.Name, d.s.cfg.RaftAdvertise, d.members)
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
	for _, mv := range move {
		if mv.blockedBy != "" {
			// Said once per address: the holder may stay put until it
			// restarts elsewhere or is reaped.
			d.mu.Lock()
			first := d.blockedAt[mv.id] != mv.to
			d.blockedAt[mv.id] = mv.to
			d.mu.Unlock()
			if first {
				d.s.log.Warn("replica moved to an address another replica holds in the raft configuration; waiting for that one to move or be reaped",
					logfields.Replica, mv.id, logfields.Address, mv.to, logHolder, mv.blockedBy)
			}
			continue
		}
		// A stale gossip view (this replica just became leader and has not
		// yet seen the old incarnation die) would move a replica back to
		// its dead address; only move to an address that answers.
		if string(mv.id) != d.s.cfg.Name {
			if err := probeRaftAddr(mv.to); err != nil {
				d.s.log.Debug("not moving replica to an unreachable address", logfields.Replica, mv.id, logfields.Address, mv.to, logfields.Error, err)
				continue
			}
		}
		// AddVoter with a known ID replaces its address and keeps its
		// vote, so the number of voters and the quorum do not change.
		if err := d.s.raft.AddVoter(mv.id, mv.to, 0, 5*time.Second).Error(); err != nil {
			d.s.log.Warn("update replica address failed", logfields.Replica, mv.id, logfields.Address, mv.to, logfields.Error, err)
			continue
		}
		d.mu.Lock()
		delete(d.blockedAt, mv.id)
		d.mu.Unlock()
		d.s.log.Info("updated replica address", logfields.Replica, mv.id, logFrom, mv.from, logfields.Address, mv.to)
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

// addressChange is a voter whose Raft address in the configuration differs
// from the one it publishes now.
type addressChange struct {
	id       raft.ServerID
	from, to raft.ServerAddress
	// blockedBy names another voter still listed at the new address; Raft
	// refuses a configuration with a duplicate address.
	blockedBy raft.ServerID
}

// addressChanges compares the voters of the Raft configuration with what
// gossip says: a voter alive in gossip that publishes another Raft address
// than the configuration's has moved. The local replica (self, published
// at selfAddr) is checked too, since a restarted replica may win the
// election before anyone has fixed its address. Only alive members count,
// so the last address of a failed replica never overrides a newer one, and
// memberlist lets only one live node hold a name, so the result does not
// flap between two claimants.
func addressChanges(voters []raft.Server, self, selfAddr string, members map[string]memberInfo) []addressChange {
	holder := map[raft.ServerAddress]raft.ServerID{}
	for _, srv := range voters {
		holder[srv.Address] = srv.ID
	}
	var out []addressChange
	for _, srv := range voters {
		want := ""
		if string(srv.ID) == self {
			want = selfAddr
		} else if m, ok := members[string(srv.ID)]; ok && m.status == memberAlive {
			want = m.meta.Raft
		}
		if want == "" || raft.ServerAddress(want) == srv.Address {
			continue
		}
		c := addressChange{id: srv.ID, from: srv.Address, to: raft.ServerAddress(want)}
		if h, ok := holder[c.to]; ok && h != srv.ID {
			c.blockedBy = h
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// probeRaftAddr checks that something accepts connections at a Raft
// address.
func probeRaftAddr(addr raft.ServerAddress) error {
	c, err := net.DialTimeout("tcp", string(addr), time.Second)
	if err != nil {
		return fmt.Errorf("probe raft address: %w", err)
	}
	return c.Close()
}

// errAddrUnknown makes the Raft transport fall back to the configuration's
// address.
var errAddrUnknown = errors.New("store: raft address not known from gossip")

// gossipAddrs resolves the Raft address of a replica from gossip for the
// Raft transport, ahead of the address stored in the Raft configuration.
// Replicas that all restarted at new addresses (every pod rescheduled) can
// then still reach each other and elect a leader, which moves them in the
// configuration; with the stored addresses alone no vote would arrive.
type gossipAddrs struct {
	disc atomic.Pointer[discovery]
}

// ServerAddr implements raft.ServerAddressProvider: the address a live
// member publishes, else the one in the Raft configuration. A stored
// address that another live replica now publishes (a restarted pod got a
// dead peer's old IP) is never dialed for this one: the other replica
// would answer, and Raft would count its acknowledgements twice. The empty
// address returned then fails to dial, as a dead peer would.
func (g *gossipAddrs) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	d := g.disc.Load()
	if d == nil {
		return "", errAddrUnknown
	}
	if m, ok := d.member(string(id)); ok && m.status == memberAlive && m.meta.Raft != "" {
		return raft.ServerAddress(m.meta.Raft), nil
	}
	for _, srv := range d.s.voters() {
		if srv.ID != id {
			continue
		}
		if d.publishedByOther(string(id), string(srv.Address)) {
			return "", nil
		}
		return srv.Address, nil
	}
	return "", errAddrUnknown
}

// publishedByOther reports whether a live member other than name (this
// replica included) publishes addr as its Raft address.
func (d *discovery) publishedByOther(name, addr string) bool {
	if name != d.s.cfg.Name && addr == d.s.cfg.RaftAdvertise {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for other, m := range d.members {
		if other != name && m.status == memberAlive && m.meta.Raft == addr {
			return true
		}
	}
	return false
}
