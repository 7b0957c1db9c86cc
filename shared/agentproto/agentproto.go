// Package agentproto is the wire protocol between a node agent and its
// cluster controller: message types, framing and the protocol version. It
// holds no transport code; the packages that dial and listen own the QUIC
// streams and use an Encoder and a Decoder on them.
//
// A frame is a type byte, a 4-byte big-endian payload length and the payload
// (JSON of the message). The decoder caps the length, so a peer cannot make
// the other side allocate without bound.
//
// A stream starts with Enroll (a peer without a client certificate asking
// for one with an agent token; answered by Enrolled or Refuse) or Hello (an
// enrolled agent; answered by Table or Refuse). After Hello the controller
// sends Table, then Diff for every change; the agent answers each with Ack,
// and sends Workloads, Flows and Events whenever it has them, and (from
// version 2, when the Table says the controller speaks it) Processes.
//
// Compiled tables and diffs travel as JSON of policy/compile's Table and
// TableDiff; this package does not look inside them. Each profile of a table
// carries its identity's process mode, process rules and file rules, which
// is how the compiled process and file profiles reach the agents. File
// events (file-denied, file-violation, file-change) name their compiled
// rule by id in Event.Rule, an optional field older peers ignore; the
// controller turns the id into the rule's name.
package agentproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"
)

// Version is the protocol version this build speaks.
//
// Change list (append only):
//   - 1 (2026-11-23): first version. Messages: Enroll, Enrolled, Refuse,
//     Hello, Table, Diff, Ack, Workloads, Flows, Events.
//   - 2 (2026-11-23): Processes (agent to controller: executables a
//     workload ran in Discover); Table.Version says which version the
//     controller speaks. A version 2 controller accepts version 1 agents,
//     and an agent sends Processes only to a controller of version 2 or
//     later, so both sides of an upgrade keep working.
const Version = 2

// MinVersion is the oldest agent version a controller accepts.
const MinVersion = 1

// ProcessesVersion is the first version whose controllers take Processes.
const ProcessesVersion = 2

// MaxPathLen bounds an executable path in a Processes message.
const MaxPathLen = 4096

// HeaderSize is the size of a frame header: type byte and payload length.
const HeaderSize = 5

// DefaultMaxFrame is the default largest payload a Decoder accepts.
const DefaultMaxFrame = 32 << 20

// Framing and decoding errors.
var (
	ErrFrameTooLarge = errors.New("agentproto: frame too large")
	ErrTruncated     = errors.New("agentproto: truncated frame")
	ErrUnknownType   = errors.New("agentproto: unknown message type")
	ErrMalformed     = errors.New("agentproto: malformed message")
)

// Type is a message's type byte. The list is append-only.
type Type uint8

// Message types.
const (
	TypeEnroll    Type = 1
	TypeEnrolled  Type = 2
	TypeRefuse    Type = 3
	TypeHello     Type = 4
	TypeTable     Type = 5
	TypeDiff      Type = 6
	TypeAck       Type = 7
	TypeWorkloads Type = 8
	TypeFlows     Type = 9
	TypeEvents    Type = 10
	TypeProcesses Type = 11
)

func (t Type) String() string {
	switch t {
	case TypeEnroll:
		return "Enroll"
	case TypeEnrolled:
		return "Enrolled"
	case TypeRefuse:
		return "Refuse"
	case TypeHello:
		return "Hello"
	case TypeTable:
		return "Table"
	case TypeDiff:
		return "Diff"
	case TypeAck:
		return "Ack"
	case TypeWorkloads:
		return "Workloads"
	case TypeFlows:
		return "Flows"
	case TypeEvents:
		return "Events"
	case TypeProcesses:
		return "Processes"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Message is one protocol message.
type Message interface {
	Type() Type
	check() error
}

// Enroll asks for a client certificate with an agent token.
type Enroll struct {
	Version int    `json:"version"`
	Token   string `json:"token"`
	Node    string `json:"node"`
	// PublicKeyPEM is the PKIX public key to certify; the agent keeps its
	// private key.
	PublicKeyPEM []byte `json:"publicKeyPEM"`
}

// Enrolled carries the agent's client certificate and the cluster CA.
type Enrolled struct {
	CertPEM []byte `json:"certPEM"`
	CAPEM   []byte `json:"caPEM"`
}

// RefuseCode says why the controller refused a stream.
type RefuseCode string

// Refuse codes.
const (
	RefuseToken    RefuseCode = "token"    // unknown, wrong or expired token
	RefuseIdentity RefuseCode = "identity" // certificate missing or not an agent's
	RefuseVersion  RefuseCode = "version"
	RefuseProtocol RefuseCode = "protocol"
	RefuseInternal RefuseCode = "internal"
)

// Refuse ends a stream with a reason.
type Refuse struct {
	Code   RefuseCode `json:"code"`
	Reason string     `json:"reason"`
}

// Hello opens an enrolled agent's stream.
type Hello struct {
	Version int `json:"version"`
	// Node must equal the CN of the agent's client certificate.
	Node string `json:"node"`
	// Addresses are the node's own addresses.
	Addresses []netip.Addr `json:"addresses,omitempty"`
}

// Table is a node's whole compiled table (JSON of policy/compile.Table).
type Table struct {
	Seq   uint64          `json:"seq"`
	Table json.RawMessage `json:"table"`
	// Version is the protocol version the controller speaks; absent (0)
	// from a version 1 controller.
	Version int `json:"version,omitempty"`
}

// Diff changes the last table sent (JSON of policy/compile.TableDiff).
type Diff struct {
	Seq  uint64          `json:"seq"`
	Diff json.RawMessage `json:"diff"`
	// Sent is when the controller committed to sending the change (Unix
	// nanoseconds), for latency measurements.
	Sent int64 `json:"sent,omitempty"`
}

// Ack reports the last Table or Diff applied.
type Ack struct {
	Seq   uint64 `json:"seq"`
	Error string `json:"error,omitempty"`
}

// Workload is one workload of the node.
type Workload struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Service   string            `json:"service,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Addresses []netip.Addr      `json:"addresses,omitempty"`
	// Images are the images the workload's containers run, when the
	// node's workload source knows them (a container runtime).
	Images []Image `json:"images,omitempty"`
}

// Image is one container's image in a workload.
type Image struct {
	// Container is the container's name in its pod, or its ID.
	Container string `json:"container"`
	// Name is the image reference the container was created from.
	Name string `json:"name"`
	// Digest is the image's manifest or index digest; empty when unknown.
	Digest string `json:"digest,omitempty"`
}

// Workloads is the node's complete workload list; it replaces the last one.
type Workloads struct {
	Workloads []Workload `json:"workloads"`
}

// Flow is what the node saw of one conversation since its last report.
type Flow struct {
	Client netip.Addr `json:"client"`
	Server netip.Addr `json:"server"`
	Proto  uint8      `json:"proto"`
	Port   uint16     `json:"port"`
	App    string     `json:"app,omitempty"`
	// Mode is the server side's network mode when the flow was seen.
	Mode       string    `json:"mode"`
	Flows      uint64    `json:"flows"`
	Violations uint64    `json:"violations,omitempty"`
	Dropped    uint64    `json:"dropped,omitempty"`
	RuleID     uint32    `json:"rule,omitempty"`
	FirstSeen  time.Time `json:"firstSeen"`
	LastSeen   time.Time `json:"lastSeen"`
}

// Flows reports conversations.
type Flows struct {
	Flows []Flow `json:"flows"`
}

// Event kinds.
const (
	EventViolation   = "network-violation"
	EventExecDenied  = "process-denied"
	EventExecProfile = "process-violation"
	// EventFileDenied is an open under a blocking file rule denied in
	// Protect.
	EventFileDenied = "file-denied"
	// EventFileViolation is an open under a blocking file rule reported,
	// not denied (Discover, Monitor).
	EventFileViolation = "file-violation"
	// EventFileChange is a write to a file under a file rule.
	EventFileChange = "file-change"
)

// Event is one security event seen on the node.
type Event struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`
	// Action is what the node did: "alert" or "deny".
	Action string `json:"action"`
	Mode   string `json:"mode"`
	// Network events.
	Client netip.Addr `json:"client,omitzero"`
	Server netip.Addr `json:"server,omitzero"`
	Proto  uint8      `json:"proto,omitempty"`
	Port   uint16     `json:"port,omitempty"`
	// Process and file events.
	Workload string `json:"workload,omitempty"`
	Path     string `json:"path,omitempty"`
	Message  string `json:"message,omitempty"`
	// Rule is the id of the compiled rule a file event fell under (the
	// table's rule names map it to a name).
	Rule uint32 `json:"rule,omitempty"`
}

// Events reports security events.
type Events struct {
	Events []Event `json:"events"`
}

// Process is one executable a workload ran while its group's process mode
// was Discover.
type Process struct {
	// Workload is the workload's ID.
	Workload string `json:"workload"`
	// Path is the executable's absolute path as the node sees it.
	Path string `json:"path"`
	// Name is the process name (the executable's base name).
	Name string    `json:"name,omitempty"`
	Time time.Time `json:"time"`
}

// Processes reports executables learned in Discover, each once per agent
// run and workload.
type Processes struct {
	Processes []Process `json:"processes"`
}

// Type implementations.
func (*Enroll) Type() Type    { return TypeEnroll }
func (*Enrolled) Type() Type  { return TypeEnrolled }
func (*Refuse) Type() Type    { return TypeRefuse }
func (*Hello) Type() Type     { return TypeHello }
func (*Table) Type() Type     { return TypeTable }
func (*Diff) Type() Type      { return TypeDiff }
func (*Ack) Type() Type       { return TypeAck }
func (*Workloads) Type() Type { return TypeWorkloads }
func (*Flows) Type() Type     { return TypeFlows }
func (*Events) Type() Type    { return TypeEvents }
func (*Processes) Type() Type { return TypeProcesses }

func (m *Enroll) check() error {
	if m.Token == "" || m.Node == "" || len(m.PublicKeyPEM) == 0 {
		return fmt.Errorf("%w: Enroll needs token, node and publicKeyPEM", ErrMalformed)
	}
	return nil
}
func (m *Enrolled) check() error {
	if len(m.CertPEM) == 0 || len(m.CAPEM) == 0 {
		return fmt.Errorf("%w: Enrolled needs certPEM and caPEM", ErrMalformed)
	}
	return nil
}
func (m *Refuse) check() error { return nil }
func (m *Hello) check() error {
	if m.Node == "" {
		return fmt.Errorf("%w: Hello needs node", ErrMalformed)
	}
	return nil
}
func (m *Table) check() error {
	if len(m.Table) == 0 {
		return fmt.Errorf("%w: Table needs table", ErrMalformed)
	}
	return nil
}
func (m *Diff) check() error {
	if len(m.Diff) == 0 {
		return fmt.Errorf("%w: Diff needs diff", ErrMalformed)
	}
	return nil
}
func (m *Ack) check() error { return nil }
func (m *Workloads) check() error {
	for i, w := range m.Workloads {
		if w.ID == "" {
			return fmt.Errorf("%w: workload %d has no id", ErrMalformed, i)
		}
	}
	return nil
}
func (m *Flows) check() error {
	for i, f := range m.Flows {
		if !f.Client.IsValid() || !f.Server.IsValid() {
			return fmt.Errorf("%w: flow %d has no client or server address", ErrMalformed, i)
		}
	}
	return nil
}
func (m *Events) check() error {
	for i, e := range m.Events {
		if e.Kind == "" {
			return fmt.Errorf("%w: event %d has no kind", ErrMalformed, i)
		}
	}
	return nil
}

func (m *Processes) check() error {
	for i, p := range m.Processes {
		switch {
		case p.Workload == "":
			return fmt.Errorf("%w: process %d has no workload", ErrMalformed, i)
		case len(p.Path) > MaxPathLen:
			return fmt.Errorf("%w: process %d: path is %d bytes long (limit %d)", ErrMalformed, i, len(p.Path), MaxPathLen)
		case !path.IsAbs(p.Path) || strings.ContainsRune(p.Path, 0):
			return fmt.Errorf("%w: process %d: path %q is not absolute", ErrMalformed, i, p.Path)
		}
	}
	return nil
}

func newMessage(t Type) (Message, error) {
	switch t {
	case TypeEnroll:
		return &Enroll{}, nil
	case TypeEnrolled:
		return &Enrolled{}, nil
	case TypeRefuse:
		return &Refuse{}, nil
	case TypeHello:
		return &Hello{}, nil
	case TypeTable:
		return &Table{}, nil
	case TypeDiff:
		return &Diff{}, nil
	case TypeAck:
		return &Ack{}, nil
	case TypeWorkloads:
		return &Workloads{}, nil
	case TypeFlows:
		return &Flows{}, nil
	case TypeEvents:
		return &Events{}, nil
	case TypeProcesses:
		return &Processes{}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownType, uint8(t))
}

// Encode returns the wire encoding of a message.
func Encode(m Message) ([]byte, error) {
	p, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.Type(), err)
	}
	b := make([]byte, HeaderSize, HeaderSize+len(p))
	b[0] = byte(m.Type())
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	return append(b, p...), nil
}

// Decode decodes the first message in b and returns it with the number of
// bytes it used. It never panics on any input.
func Decode(b []byte, maxFrame int) (Message, int, error) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if len(b) < HeaderSize {
		return nil, 0, ErrTruncated
	}
	n := binary.BigEndian.Uint32(b[1:])
	if uint64(n) > uint64(maxFrame) {
		return nil, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, maxFrame)
	}
	if uint64(len(b)-HeaderSize) < uint64(n) {
		return nil, 0, ErrTruncated
	}
	m, err := decodePayload(Type(b[0]), b[HeaderSize:HeaderSize+int(n)])
	return m, HeaderSize + int(n), err
}

func decodePayload(t Type, p []byte) (Message, error) {
	m, err := newMessage(t)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(p, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// Encoder writes framed messages to a stream. It is safe for concurrent use:
// each message is written whole.
type Encoder struct {
	mu sync.Mutex
	w  io.Writer
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Encode writes one message.
func (e *Encoder) Encode(m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	return e.WriteRaw(b)
}

// WriteRaw writes one already-encoded message (from Encode).
func (e *Encoder) WriteRaw(b []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// Decoder reads framed messages from a stream. It is not safe for
// concurrent use.
type Decoder struct {
	r   io.Reader
	max int
	hdr [HeaderSize]byte
}

// NewDecoder returns a Decoder reading from r that refuses payloads larger
// than maxFrame bytes (DefaultMaxFrame when maxFrame <= 0).
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Decoder{r: r, max: maxFrame}
}

// Decode reads one message. At a clean end of stream between frames it
// returns io.EOF; inside a frame, ErrTruncated.
func (d *Decoder) Decode() (Message, error) {
	if _, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(d.hdr[1:])
	if uint64(n) > uint64(d.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, d.max)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(d.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	return decodePayload(Type(d.hdr[0]), p)
}
