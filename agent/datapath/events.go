package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/palisade-sec/palisade/agent/bpf"
)

// EventKind says why the datapath reported a flow.
type EventKind uint8

// Event kinds.
const (
	EventNewFlow   EventKind = 1 // Discover: a new flow
	EventViolation EventKind = 2 // Monitor or Protect: a flow the policy does not allow
	EventSample    EventKind = 3 // first payload bytes of one direction of a flow
	EventMalformed EventKind = 4 // a packet that could not be parsed
)

func (k EventKind) String() string {
	switch k {
	case EventNewFlow:
		return "new-flow"
	case EventViolation:
		return "violation"
	case EventSample:
		return "sample"
	case EventMalformed:
		return "malformed"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Direction is relative to the workload.
type Direction uint8

// Directions.
const (
	DirIn  Direction = 0 // towards the workload
	DirOut Direction = 1 // from the workload
)

// FlowEvent is one ring buffer record.
type FlowEvent struct {
	KernelTimeNs uint64
	// Endpoint is the interface index, or the cgroup id with the top bit set.
	Endpoint uint64
	Kind     EventKind
	// Src and Dst are the identities of the client and the server.
	Src, Dst Identity
	RuleID   uint32
	Action   Action // what the matching entry said (ActionNone: none matched)
	Mode     Mode
	Dir      Direction
	// Addresses and ports of the packet (client to server unless Reply).
	SrcAddr, DstAddr netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Reply            bool // the packet went from server to client
	Violation        bool // passed only because of Discover or Monitor
	Dropped          bool
	Fragment         bool
	// Pending: the flow was admitted until its application is classified.
	Pending bool
	// App is the application the kernel classified. The kernel classifies
	// only flows under application rules; AppNone is no application, or
	// a flow it did not classify (user space names those from Payload).
	// AppGRPC can be named where Payload alone shows HTTP/2: the kernel
	// reads the client's HEADERS frame in a later packet.
	App     App
	Payload []byte // first payload bytes, at most 128
}

// Event flags, as in datapath.c.
const (
	flagReply     = 0x1
	flagViolation = 0x2
	flagDropped   = 0x4
	flagFragment  = 0x8
	flagPending   = 0x10
)

// DecodeFlowEvent decodes one raw ring buffer record.
func DecodeFlowEvent(raw []byte) (FlowEvent, error) {
	var e bpf.DatapathFlowEvent
	if _, err := binary.Decode(raw, binary.LittleEndian, &e); err != nil {
		return FlowEvent{}, fmt.Errorf("decode flow event of %d bytes: %w", len(raw), err)
	}
	n := int(e.PayloadLen)
	if n > len(e.Payload) {
		n = len(e.Payload)
	}
	return FlowEvent{
		KernelTimeNs: e.TsNs,
		Endpoint:     e.Endpoint,
		Kind:         EventKind(e.Kind),
		Src:          Identity(e.SrcId),
		Dst:          Identity(e.DstId),
		RuleID:       e.RuleId,
		Action:       Action(e.Action),
		Mode:         Mode(e.Mode),
		Dir:          Direction(e.Dir),
		SrcAddr:      addrFrom16(e.Saddr, e.Family),
		DstAddr:      addrFrom16(e.Daddr, e.Family),
		SrcPort:      e.Sport,
		DstPort:      e.Dport,
		Proto:        e.Proto,
		Reply:        e.Flags&flagReply != 0,
		Violation:    e.Flags&flagViolation != 0,
		Dropped:      e.Flags&flagDropped != 0,
		Fragment:     e.Flags&flagFragment != 0,
		Pending:      e.Flags&flagPending != 0,
		App:          App(e.App),
		Payload:      append([]byte(nil), e.Payload[:n]...),
	}, nil
}

// addrFrom16 turns a kernel address (IPv4-mapped for IPv4) into a netip.Addr.
func addrFrom16(b [16]byte, family uint8) netip.Addr {
	a := netip.AddrFrom16(b)
	if family == 4 {
		return a.Unmap()
	}
	return a
}
