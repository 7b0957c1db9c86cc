package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Identity is a workload group identity. 0 is the unknown world.
type Identity uint32

// World is the identity of every address no endpoint entry covers.
const World Identity = 0

// Mode is the enforcement mode of an identity.
type Mode uint8

// Modes. An identity without a mode is in Discover.
const (
	ModeDiscover Mode = 0 // allow everything, report every new flow
	ModeMonitor  Mode = 1 // allow everything, report violations
	ModeProtect  Mode = 2 // drop violations and report them
)

func (m Mode) String() string {
	switch m {
	case ModeDiscover:
		return "discover"
	case ModeMonitor:
		return "monitor"
	case ModeProtect:
		return "protect"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode parses "discover", "monitor" or "protect".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "discover":
		return ModeDiscover, nil
	case "monitor":
		return ModeMonitor, nil
	case "protect":
		return ModeProtect, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrBadMode, s)
}

// Action is what a verdict entry says about a flow.
type Action uint8

// Actions. ActionNone appears in events for flows no entry matched.
const (
	ActionNone  Action = 0
	ActionAllow Action = 1
	ActionDeny  Action = 2
)

func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionAllow:
		return "allow"
	case ActionDeny:
		return "deny"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// App is an application protocol the programs classify in the kernel from
// the first payload packet of a TCP or UDP flow (UDP: DNS only). Every
// protocol agent/appdetect names has one.
type App uint8

// Applications the kernel classifier names, with agent/appdetect's
// signatures over the same first 128 payload bytes: HTTP/1 requests by
// method and request line (responses by "HTTP/1."), the HTTP/2 connection
// preface, a TLS handshake record (ClientHello from the client, ServerHello
// from the server), an SSH banner, Redis RESP arrays or inline commands,
// DNS (over UDP, and over TCP with its two-byte length), a PostgreSQL
// startup, SSLRequest, GSSENCRequest or CancelRequest, the MySQL server's
// greeting (server first: classified in the reply direction), a MongoDB
// wire header, a Kafka request header. gRPC is HTTP/2 whose first HEADERS
// frame carries content-type application/grpc: where a policy decides gRPC
// otherwise than HTTP/2, the kernel walks the client's frames past the
// preface (a few packets) to that HEADERS frame. AppNone is a payload none
// of them matched.
const (
	AppNone     App = 0
	AppHTTP     App = 1
	AppHTTP2    App = 2
	AppTLS      App = 3
	AppSSH      App = 4
	AppRedis    App = 5
	AppDNS      App = 6
	AppPostgres App = 7
	AppMySQL    App = 8
	AppMongoDB  App = 9
	AppKafka    App = 10
	AppGRPC     App = 11
	appMax      App = 15 // highest application the policy map has room for
)

// appNames are the names of agent/appdetect and of policy rules.
var appNames = map[App]string{
	AppNone: "none", AppHTTP: "http", AppHTTP2: "http2", AppTLS: "tls", AppSSH: "ssh", AppRedis: "redis",
	AppDNS: "dns", AppPostgres: "postgresql", AppMySQL: "mysql", AppMongoDB: "mongodb", AppKafka: "kafka",
	AppGRPC: "grpc",
}

func (a App) String() string {
	if n, ok := appNames[a]; ok {
		return n
	}
	return fmt.Sprintf("app(%d)", uint8(a))
}

// ParseApp returns the kernel application of a protocol name (any case;
// the names of agent/appdetect and of policy rules), and false for a
// protocol the kernel does not classify.
func ParseApp(name string) (App, bool) {
	switch n := strings.ToLower(strings.TrimSpace(name)); n {
	case "ssl", "https":
		return AppTLS, true
	case "postgres":
		return AppPostgres, true
	case "none", "":
		return AppNone, false
	default:
		for a, an := range appNames {
			if an == n {
				return a, true
			}
		}
	}
	return AppNone, false
}

// Sentinel errors.
var (
	ErrBadMode     = errors.New("datapath: unknown mode")
	ErrBadEntry    = errors.New("datapath: invalid entry")
	ErrMapFull     = errors.New("datapath: map full")
	ErrNotAttached = errors.New("datapath: not attached")
)

// EndpointEntry maps every address in Prefix to Identity. IPv4 and IPv6
// prefixes share one longest-prefix-match map.
type EndpointEntry struct {
	Prefix   netip.Prefix
	Identity Identity
}

// VerdictEntry says what happens to flows from SrcID to DstID (the
// identities of the client and of the server) on protocol Proto (0: any)
// and server ports PortLo..PortHi (0,0: any).
//
// Entries may overlap. The most specific entry wins: a narrower port range
// over a wider one, a specific protocol over any, and at equal width deny
// over allow. The result does not depend on the order of the entries, so a
// diff needs no positions.
//
// Entries with an App decide TCP flows of that application, and UDP flows
// of DNS; they form one space per application, resolved like the entries
// without App, and where an application's space covers a port it overrides
// the entries without App for flows of it. Such a flow is admitted
// pending, classified on its first payload packet in either direction (a
// gRPC/HTTP/2 flow on its first HEADERS frame), then confirmed or treated
// as a violation (dropped for good in Protect). gRPC is HTTP/2: where no
// AppGRPC entry covers a port, gRPC flows follow the AppHTTP2 entries (a
// rule learned as HTTP/2 from a gRPC client's preface keeps allowing it).
// Other protocols, and UDP for applications other than DNS, ignore App
// entries.
type VerdictEntry struct {
	SrcID  Identity
	DstID  Identity
	Proto  uint8
	PortLo uint16
	PortHi uint16
	App    App
	Action Action
	RuleID uint32
}

// verdictID is what identifies a verdict entry in a diff: everything but the
// action and rule.
type verdictID struct {
	SrcID, DstID   Identity
	Proto          uint8
	PortLo, PortHi uint16
	App            App
}

func (v VerdictEntry) id() verdictID {
	return verdictID{v.SrcID, v.DstID, v.Proto, v.PortLo, v.PortHi, v.App}
}

// ports returns the inclusive port range the entry covers.
func (v VerdictEntry) ports() (lo, hi uint16) {
	if v.PortLo == 0 && v.PortHi == 0 {
		return 0, 65535
	}
	return v.PortLo, v.PortHi
}

// Validate reports the first problem of the entry.
func (v VerdictEntry) Validate() error {
	if v.Action != ActionAllow && v.Action != ActionDeny {
		return fmt.Errorf("%w: verdict %d->%d rule %d: action %d is neither allow nor deny", ErrBadEntry, v.SrcID, v.DstID, v.RuleID, v.Action)
	}
	if v.App > appMax {
		return fmt.Errorf("%w: verdict %d->%d rule %d: application %d is above %d", ErrBadEntry, v.SrcID, v.DstID, v.RuleID, v.App, appMax)
	}
	if !(v.PortLo == 0 && v.PortHi == 0) && v.PortLo > v.PortHi {
		return fmt.Errorf("%w: verdict %d->%d rule %d: port range %d-%d has low above high", ErrBadEntry, v.SrcID, v.DstID, v.RuleID, v.PortLo, v.PortHi)
	}
	return nil
}

// Validate reports the first problem of the entry.
func (e EndpointEntry) Validate() error {
	if !e.Prefix.IsValid() {
		return fmt.Errorf("%w: endpoint identity %d: invalid prefix", ErrBadEntry, e.Identity)
	}
	if e.Prefix != e.Prefix.Masked() {
		return fmt.Errorf("%w: endpoint identity %d: prefix %s has host bits set", ErrBadEntry, e.Identity, e.Prefix)
	}
	if e.Prefix.Addr().Is4In6() {
		return fmt.Errorf("%w: endpoint identity %d: prefix %s is IPv4-mapped; give it as IPv4", ErrBadEntry, e.Identity, e.Prefix)
	}
	return nil
}

// Table is a complete policy for one node.
type Table struct {
	Endpoints []EndpointEntry
	Verdicts  []VerdictEntry
	Modes     map[Identity]Mode
}

// Diff changes a table. Removals name endpoint entries by prefix and verdict
// entries by everything but action and rule; an added entry with the key of
// an existing one replaces it.
type Diff struct {
	AddEndpoints    []EndpointEntry
	RemoveEndpoints []netip.Prefix
	AddVerdicts     []VerdictEntry
	RemoveVerdicts  []VerdictEntry
	SetModes        map[Identity]Mode
	RemoveModes     []Identity
}

func validMode(m Mode) bool { return m <= ModeProtect }

// pairKey is a (source, destination) identity pair.
type pairKey = [2]Identity

// state is the policy held in the maps, in a form diffs apply to. Verdicts
// are grouped by identity pair, so a diff costs in proportion to the pairs
// it touches, not to the size of the table.
type state struct {
	endpoints map[netip.Prefix]Identity
	verdicts  map[pairKey]map[verdictID]VerdictEntry
	nverdicts int
	modes     map[Identity]Mode
	// owned lists the pairs whose inner map this state may modify; the
	// others are shared with the state it was cloned from.
	owned map[pairKey]bool
}

func newState() *state {
	return &state{
		endpoints: map[netip.Prefix]Identity{},
		verdicts:  map[pairKey]map[verdictID]VerdictEntry{},
		modes:     map[Identity]Mode{},
		owned:     map[pairKey]bool{},
	}
}

// clone copies s; inner verdict maps are shared until written.
func (s *state) clone() *state {
	c := &state{
		endpoints: make(map[netip.Prefix]Identity, len(s.endpoints)),
		verdicts:  make(map[pairKey]map[verdictID]VerdictEntry, len(s.verdicts)),
		nverdicts: s.nverdicts,
		modes:     make(map[Identity]Mode, len(s.modes)),
		owned:     map[pairKey]bool{},
	}
	for k, v := range s.endpoints {
		c.endpoints[k] = v
	}
	for k, v := range s.verdicts {
		c.verdicts[k] = v
	}
	for k, v := range s.modes {
		c.modes[k] = v
	}
	return c
}

// own makes the inner map of pair writable.
func (s *state) own(pair pairKey) map[verdictID]VerdictEntry {
	m := s.verdicts[pair]
	if s.owned[pair] && m != nil {
		return m
	}
	n := make(map[verdictID]VerdictEntry, len(m)+1)
	for k, v := range m {
		n[k] = v
	}
	s.verdicts[pair] = n
	s.owned[pair] = true
	return n
}

func (s *state) verdict(id verdictID) (VerdictEntry, bool) {
	v, ok := s.verdicts[pairKey{id.SrcID, id.DstID}][id]
	return v, ok
}

func (s *state) putVerdict(v VerdictEntry) {
	m := s.own(pairKey{v.SrcID, v.DstID})
	if _, ok := m[v.id()]; !ok {
		s.nverdicts++
	}
	m[v.id()] = v
}

func (s *state) deleteVerdict(id verdictID) {
	pair := pairKey{id.SrcID, id.DstID}
	if _, ok := s.verdicts[pair][id]; !ok {
		return
	}
	m := s.own(pair)
	delete(m, id)
	s.nverdicts--
	if len(m) == 0 {
		delete(s.verdicts, pair)
	}
}

// stateFromTable validates t and builds its state.
func stateFromTable(t Table) (*state, error) {
	s := newState()
	for _, e := range t.Endpoints {
		if err := e.Validate(); err != nil {
			return nil, err
		}
		if old, dup := s.endpoints[e.Prefix]; dup && old != e.Identity {
			return nil, fmt.Errorf("%w: endpoint prefix %s given for identities %d and %d", ErrBadEntry, e.Prefix, old, e.Identity)
		}
		s.endpoints[e.Prefix] = e.Identity
	}
	for _, v := range t.Verdicts {
		if err := v.Validate(); err != nil {
			return nil, err
		}
		if old, dup := s.verdict(v.id()); dup && old != v {
			return nil, fmt.Errorf("%w: verdict %d->%d proto %d ports %d-%d given twice (rules %d and %d)", ErrBadEntry, v.SrcID, v.DstID, v.Proto, v.PortLo, v.PortHi, old.RuleID, v.RuleID)
		}
		s.putVerdict(v)
	}
	for id, m := range t.Modes {
		if !validMode(m) {
			return nil, fmt.Errorf("%w: identity %d: %d", ErrBadMode, id, m)
		}
		s.modes[id] = m
	}
	return s, nil
}

// apply returns a copy of s with d applied, and the identity pairs whose
// verdicts changed.
func (s *state) apply(d Diff) (*state, map[pairKey]bool, error) {
	n := s.clone()
	pairs := map[pairKey]bool{}
	for _, p := range d.RemoveEndpoints {
		delete(n.endpoints, p)
	}
	for _, e := range d.AddEndpoints {
		if err := e.Validate(); err != nil {
			return nil, nil, err
		}
		n.endpoints[e.Prefix] = e.Identity
	}
	for _, v := range d.RemoveVerdicts {
		n.deleteVerdict(v.id())
		pairs[pairKey{v.SrcID, v.DstID}] = true
	}
	for _, v := range d.AddVerdicts {
		if err := v.Validate(); err != nil {
			return nil, nil, err
		}
		n.putVerdict(v)
		pairs[pairKey{v.SrcID, v.DstID}] = true
	}
	for _, id := range d.RemoveModes {
		delete(n.modes, id)
	}
	for id, m := range d.SetModes {
		if !validMode(m) {
			return nil, nil, fmt.Errorf("%w: identity %d: %d", ErrBadMode, id, m)
		}
		n.modes[id] = m
	}
	return n, pairs, nil
}

// pairList returns the pairs to work on: only, or every pair of the states.
func pairList(only map[pairKey]bool, states ...*state) map[pairKey]bool {
	if only != nil {
		return only
	}
	all := map[pairKey]bool{}
	for _, s := range states {
		for p := range s.verdicts {
			all[p] = true
		}
	}
	return all
}
