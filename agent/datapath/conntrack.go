package datapath

import (
	"fmt"
	"net/netip"
	"time"
)

// ConnState is the state of a connection-tracking entry.
type ConnState uint8

// Connection states, as in datapath.c (enum ct_state).
const (
	ConnOther          ConnState = 0 // neither TCP nor UDP
	ConnUDP            ConnState = 1
	ConnTCPSyn         ConnState = 2 // SYN seen, no reply yet
	ConnTCPEstablished ConnState = 3
	ConnTCPHalfClosed  ConnState = 4 // FIN from one side
	ConnTCPClosed      ConnState = 5 // FIN from both sides, or RST
	ConnDenied         ConnState = 6 // application check failed in Protect
)

func (s ConnState) String() string {
	switch s {
	case ConnOther:
		return "other"
	case ConnUDP:
		return "udp"
	case ConnTCPSyn:
		return "syn"
	case ConnTCPEstablished:
		return "established"
	case ConnTCPHalfClosed:
		return "half-closed"
	case ConnTCPClosed:
		return "closed"
	case ConnDenied:
		return "denied"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// timeout returns the idle timeout of state s.
func (t Timeouts) timeout(s ConnState) time.Duration {
	switch s {
	case ConnUDP:
		return t.UDP
	case ConnTCPSyn:
		return t.TCPSyn
	case ConnTCPEstablished:
		return t.TCPEstablished
	case ConnTCPHalfClosed:
		return t.TCPHalfClosed
	case ConnTCPClosed:
		return t.TCPClosed
	case ConnDenied:
		return t.Denied
	}
	return t.Other
}

// Conn is one connection-tracking entry: one direction of a flow as one
// endpoint sees it.
type Conn struct {
	// Endpoint is the interface index, or the cgroup id with the top bit set.
	Endpoint         uint64
	Dir              Direction
	SrcAddr, DstAddr netip.Addr // of the packets this entry matches
	SrcPort, DstPort uint16
	Proto            uint8
	// Src and Dst are the identities of the client and the server.
	Src, Dst  Identity
	RuleID    uint32
	State     ConnState
	App       App  // the classified application, if Pending is false
	Pending   bool // admitted until its application is classified
	Reply     bool // the entry matches packets from server to client
	Violation bool // passed only because of Discover or Monitor
	// Idle is the time since the entry was last refreshed.
	Idle time.Duration
}
