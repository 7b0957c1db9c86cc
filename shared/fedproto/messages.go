package fedproto

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Type is a message type: the first byte of every frame. The list is append
// only; a value is never reused.
type Type byte

// Message types.
const (
	TypeHello        Type = 1
	TypeWelcome      Type = 2
	TypeRefuse       Type = 3
	TypeJoinRequest  Type = 4
	TypeJoinResponse Type = 5
	TypeDelta        Type = 6
	TypeSnapshot     Type = 7
	TypeAck          Type = 8
	TypeDismiss      Type = 9
	TypePing         Type = 10
	TypePong         Type = 11
	TypeRequest      Type = 12
	TypeResponse     Type = 13
	TypeLeave        Type = 14
)

// Known reports whether t is a message type of this protocol version.
func (t Type) Known() bool { return t.name() != "" }

func (t Type) name() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypeRefuse:
		return "refuse"
	case TypeJoinRequest:
		return "join-request"
	case TypeJoinResponse:
		return "join-response"
	case TypeDelta:
		return "delta"
	case TypeSnapshot:
		return "snapshot"
	case TypeAck:
		return "ack"
	case TypeDismiss:
		return "dismiss"
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeRequest:
		return "request"
	case TypeResponse:
		return "response"
	case TypeLeave:
		return "leave"
	}
	return ""
}

func (t Type) String() string {
	if n := t.name(); n != "" {
		return n
	}
	return fmt.Sprintf("type(%d)", byte(t))
}

// Message is any federation message.
type Message interface {
	// Type is the frame type that carries the message.
	Type() Type
}

// Hello opens a remote's stream: who it is and how far it got.
type Hello struct {
	Version Version `json:"version"`
	// Cluster is the remote's cluster name (it must match the CN of its
	// client certificate).
	Cluster string            `json:"cluster"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Applied is the last revision the remote applied completely; 0 means
	// nothing yet.
	Applied uint64 `json:"applied"`
}

// Welcome accepts a Hello. The primary then sends a Snapshot (only when the
// remote is too far behind) and Deltas.
type Welcome struct {
	Version Version `json:"version"`
	// Primary is the primary cluster's name.
	Primary string `json:"primary,omitempty"`
}

// RefuseCode says why a stream was refused, so the peer can tell the
// failures apart without parsing Reason.
type RefuseCode string

// Refuse codes.
const (
	RefuseVersion        RefuseCode = "version"
	RefuseTokenMalformed RefuseCode = "token-malformed"
	RefuseTokenSignature RefuseCode = "token-signature"
	RefuseTokenExpired   RefuseCode = "token-expired"
	RefuseTokenUsed      RefuseCode = "token-used"
	RefuseNameTaken      RefuseCode = "name-taken"
	RefuseKicked         RefuseCode = "kicked"
	RefuseNotMember      RefuseCode = "not-member"
	RefuseUnauthorized   RefuseCode = "unauthorized"
	RefuseBadRequest     RefuseCode = "bad-request"
	RefuseInternal       RefuseCode = "internal"
)

// Refuse rejects whatever the peer sent, then the stream closes.
type Refuse struct {
	Code   RefuseCode `json:"code"`
	Reason string     `json:"reason"`
}

// JoinRequest is the only message a peer without a client certificate may
// send.
type JoinRequest struct {
	// Token is the join token's text form.
	Token  string            `json:"token"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// PublicKeyPEM is the PKIX public key the certificate is issued for;
	// the remote keeps its private key.
	PublicKeyPEM []byte `json:"publicKeyPEM"`
}

// JoinResponse carries the remote's client certificate.
type JoinResponse struct {
	CertPEM []byte `json:"certPEM"`
	CAPEM   []byte `json:"caPEM"`
	// Name is the cluster name the certificate was issued for.
	Name string `json:"name"`
}

// OpKind is what an Op does.
type OpKind string

// Op kinds.
const (
	OpPut    OpKind = "put"
	OpDelete OpKind = "delete"
)

// Op is one change to one key.
type Op struct {
	Kind  OpKind `json:"kind"`
	Key   string `json:"key"`
	Value []byte `json:"value,omitempty"`
}

// Delta is every change of one revision of the federation keyspace.
type Delta struct {
	Revision uint64 `json:"revision"`
	Ops      []Op   `json:"ops"`
}

// Object is one key and its value.
type Object struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// Snapshot is the full federation keyspace at Revision, sent in chunks:
// every chunk carries the same Revision, Seq counts from 0 and Last marks
// the final chunk. The receiver replaces its whole federated keyspace with
// the union of the chunks.
type Snapshot struct {
	Revision uint64   `json:"revision"`
	Seq      uint32   `json:"seq"`
	Last     bool     `json:"last"`
	Objects  []Object `json:"objects"`
}

// Ack reports the last revision a remote applied and its health.
type Ack struct {
	Revision uint64 `json:"revision"`
	// Healthy is false when the remote could not apply or enforce.
	Healthy bool `json:"healthy"`
	// Error is the apply error, if any.
	Error string `json:"error,omitempty"`
}

// DismissReason says why a remote was dismissed.
type DismissReason string

// Dismiss reasons.
const (
	DismissKicked  DismissReason = "kicked"
	DismissDemoted DismissReason = "demoted"
	// DismissLeft confirms a Leave.
	DismissLeft DismissReason = "left"
)

// Dismiss ends a remote's membership; the remote stops reconnecting.
type Dismiss struct {
	Reason DismissReason `json:"reason"`
}

// Leave, the first message of a stream from a joined remote, ends its
// membership; the primary confirms with Dismiss{left}.
type Leave struct {
	Cluster string `json:"cluster"`
}

// Ping asks for a Pong with the same Nonce.
type Ping struct {
	Nonce uint64 `json:"nonce"`
}

// Pong answers a Ping.
type Pong struct {
	Nonce uint64 `json:"nonce"`
}

// Request is an HTTP-like request the primary sends to a remote's API over
// the federation connection (one stream per request).
type Request struct {
	Method string              `json:"method"`
	Path   string              `json:"path"`
	Header map[string][]string `json:"header,omitempty"`
	Body   []byte              `json:"body,omitempty"`
}

// Response answers a Request.
type Response struct {
	Status int                 `json:"status"`
	Header map[string][]string `json:"header,omitempty"`
	Body   []byte              `json:"body,omitempty"`
}

// Type implementations.
func (*Hello) Type() Type        { return TypeHello }
func (*Welcome) Type() Type      { return TypeWelcome }
func (*Refuse) Type() Type       { return TypeRefuse }
func (*JoinRequest) Type() Type  { return TypeJoinRequest }
func (*JoinResponse) Type() Type { return TypeJoinResponse }
func (*Delta) Type() Type        { return TypeDelta }
func (*Snapshot) Type() Type     { return TypeSnapshot }
func (*Ack) Type() Type          { return TypeAck }
func (*Dismiss) Type() Type      { return TypeDismiss }
func (*Ping) Type() Type         { return TypePing }
func (*Pong) Type() Type         { return TypePong }
func (*Request) Type() Type      { return TypeRequest }
func (*Response) Type() Type     { return TypeResponse }
func (*Leave) Type() Type        { return TypeLeave }

// ErrMalformed is wrapped by errors for payloads that do not decode into
// their message type or fail its checks.
var ErrMalformed = errors.New("fedproto: malformed message")

// newMessage returns an empty message of type t, or nil for an unknown type.
func newMessage(t Type) Message {
	switch t {
	case TypeHello:
		return &Hello{}
	case TypeWelcome:
		return &Welcome{}
	case TypeRefuse:
		return &Refuse{}
	case TypeJoinRequest:
		return &JoinRequest{}
	case TypeJoinResponse:
		return &JoinResponse{}
	case TypeDelta:
		return &Delta{}
	case TypeSnapshot:
		return &Snapshot{}
	case TypeAck:
		return &Ack{}
	case TypeDismiss:
		return &Dismiss{}
	case TypePing:
		return &Ping{}
	case TypePong:
		return &Pong{}
	case TypeRequest:
		return &Request{}
	case TypeResponse:
		return &Response{}
	case TypeLeave:
		return &Leave{}
	}
	return nil
}

// Unmarshal decodes a frame's payload into its message and checks it.
func Unmarshal(f Frame) (Message, error) {
	m := newMessage(f.Type)
	if m == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, byte(f.Type))
	}
	if err := json.Unmarshal(f.Payload, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, f.Type, err)
	}
	if err := check(m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, f.Type, err)
	}
	return m, nil
}

// Marshal encodes a message into a frame.
func Marshal(m Message) (Frame, error) {
	if m == nil || !m.Type().Known() {
		return Frame{}, fmt.Errorf("%w: cannot marshal %T", ErrUnknownType, m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return Frame{}, fmt.Errorf("marshal %s: %w", m.Type(), err)
	}
	return Frame{Type: m.Type(), Payload: b}, nil
}

// check holds the invariants a decoded message must meet.
func check(m Message) error {
	switch m := m.(type) {
	case *Delta:
		if m.Revision == 0 {
			return errors.New("revision is 0")
		}
		for i, op := range m.Ops {
			if op.Key == "" {
				return fmt.Errorf("op %d: key is empty", i)
			}
			if op.Kind != OpPut && op.Kind != OpDelete {
				return fmt.Errorf("op %d: kind %q is not put or delete", i, op.Kind)
			}
		}
	case *Snapshot:
		for i, o := range m.Objects {
			if o.Key == "" {
				return fmt.Errorf("object %d: key is empty", i)
			}
		}
	case *Dismiss:
		if m.Reason != DismissKicked && m.Reason != DismissDemoted && m.Reason != DismissLeft {
			return fmt.Errorf("reason %q is not kicked, demoted or left", m.Reason)
		}
	case *Request:
		if m.Method == "" || len(m.Path) == 0 || m.Path[0] != '/' {
			return fmt.Errorf("request %q %q needs a method and an absolute path", m.Method, m.Path)
		}
	case *Response:
		if m.Status < 100 || m.Status > 999 {
			return fmt.Errorf("status %d out of range", m.Status)
		}
	}
	return nil
}
