package fedproto

import (
	"errors"
	"fmt"
)

// ProtocolMajor and ProtocolMinor are the federation protocol version this
// build speaks (see Current).
//
// Change list (append only; bump Minor for additive changes a peer one minor
// behind can ignore, bump Major for anything else):
//
//   - 1.0 (2026-11-23): first version. Frames are a type byte, a 4-byte
//     big-endian payload length and a JSON payload. Messages: Hello, Welcome,
//     Refuse, JoinRequest, JoinResponse, Delta, Snapshot (chunked), Ack,
//     Dismiss, Ping, Pong, Request, Response, Leave.
const (
	ProtocolMajor = 1
	ProtocolMinor = 0
)

// Current returns the protocol version this build speaks.
func Current() Version { return Version{Major: ProtocolMajor, Minor: ProtocolMinor} }

// Version is a federation protocol version.
type Version struct {
	Major int `json:"major"`
	Minor int `json:"minor"`
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// ErrVersionSkew is wrapped by Compatible's error when a peer's version
// cannot be served.
var ErrVersionSkew = errors.New("fedproto: unsupported protocol version")

// Compatible reports whether a primary speaking server can serve a remote
// speaking remote: same major, and the same minor or one lower. The error
// names both versions and says whether the remote is too old or too new.
func Compatible(server, remote Version) error {
	switch {
	case remote.Major < server.Major ||
		(remote.Major == server.Major && remote.Minor < server.Minor-1):
		return fmt.Errorf("%w: remote speaks %s, primary speaks %s and serves %s down to %d.%d: remote is too old, upgrade it",
			ErrVersionSkew, remote, server, server, server.Major, max(server.Minor-1, 0))
	case remote.Major > server.Major ||
		(remote.Major == server.Major && remote.Minor > server.Minor):
		return fmt.Errorf("%w: remote speaks %s, primary speaks %s: remote is too new, upgrade the primary first",
			ErrVersionSkew, remote, server)
	}
	return nil
}
