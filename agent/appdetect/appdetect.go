// Package appdetect names the application protocol of a flow from the
// first payload bytes of each direction, as the datapath samples them. It
// is pure: no I/O, no state, safe on any input.
//
// The kernel classifier (agent/bpf/datapath.c) applies the same signatures
// to the same first 128 bytes, so both name a payload alike. The one place
// the kernel sees more is gRPC: it walks the client's HTTP/2 frames across
// packets to the first HEADERS frame and reads its header block as HPACK
// field representations, looking for a content-type field naming gRPC, as
// far as the packet goes, while a sample holds the first 128 bytes of the first
// packet only (a grpc-go client sends its HEADERS after the preface): here
// such a flow is HTTP/2, in the kernel gRPC. Frames or a header block that
// cannot be decided from the bytes at hand (another frame before HEADERS,
// a block going on past them or in CONTINUATION frames before a gRPC
// content-type, a field of the dynamic table, malformed HPACK) are not
// gRPC: here they are HTTP/2, as in the kernel wherever the
// policy does not tell gRPC from HTTP/2; where it does, the kernel names
// no application and the flow meets the port's own action, which an
// HTTP/2 rule learned from this name does not split.
package appdetect

import (
	"bytes"
	"encoding/binary"
)

// Protocol is a detected application protocol.
type Protocol string

// Protocols. Unknown means no detector matched.
const (
	Unknown    Protocol = ""
	HTTP       Protocol = "http"
	HTTP2      Protocol = "http2"
	GRPC       Protocol = "grpc"
	TLS        Protocol = "tls"
	DNS        Protocol = "dns"
	SSH        Protocol = "ssh"
	Redis      Protocol = "redis"
	PostgreSQL Protocol = "postgresql"
	MySQL      Protocol = "mysql"
	MongoDB    Protocol = "mongodb"
	Kafka      Protocol = "kafka"
)

// IP protocol numbers of Sample.Proto.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// Sample is what the datapath saw of one flow: the first payload bytes the
// client sent and the first the server sent (either may be empty).
type Sample struct {
	Proto  uint8 // IP protocol
	Client []byte
	Server []byte
}

// Detect returns the protocol of the flow, or Unknown. Detectors run from
// the most to the least distinctive signature; ports are not used, so a
// service on an unusual port is still named and a port alone names nothing.
func Detect(s Sample) Protocol {
	c, sv := s.Client, s.Server
	if s.Proto == ProtoUDP {
		if isDNS(c, false) || isDNS(sv, false) {
			return DNS
		}
		return Unknown
	}
	switch {
	case bytes.HasPrefix(c, []byte("SSH-")) || bytes.HasPrefix(sv, []byte("SSH-")):
		return SSH
	case isTLS(c, 1) || isTLS(sv, 2):
		return TLS
	case bytes.HasPrefix(c, []byte(http2Preface)):
		if h2App(c[len(http2Preface):]) == GRPC {
			return GRPC
		}
		return HTTP2
	case isHTTPRequest(c) || bytes.HasPrefix(sv, []byte("HTTP/1.")):
		return HTTP
	case isPostgres(c):
		return PostgreSQL
	case isMySQLGreeting(sv):
		return MySQL
	case isMongo(c) || isMongo(sv):
		return MongoDB
	case isKafka(c):
		return Kafka
	case isRedis(c):
		return Redis
	case isDNS(c, true) || isDNS(sv, true):
		return DNS
	}
	return Unknown
}

const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// HPACK signatures of the content-type field: its static table index, its
// name Huffman coded, and the gRPC content type Huffman coded. The code of
// "application/grpc" ends on a byte boundary, so a coded value starting
// with it starts with grpcHuffman.
const hpackContentType = 31

var (
	contentTypeHuffman = []byte{0x21, 0xea, 0x49, 0x6a, 0x4a, 0xc9, 0xf5, 0x59, 0x7f}
	grpcHuffman        = []byte{0x1d, 0x75, 0xd0, 0x62, 0x0d, 0x26, 0x3d, 0x4c, 0x4d, 0x65, 0x64}
)

// Bounds of the HTTP/2 frame walk and the HPACK walk, the kernel's
// (agent/bpf/datapath.c).
const (
	h2WalkFrames = 4  // frames walked in one packet
	hpackFields  = 64 // field representations walked in one packet
	hpackIntMore = 4  // continuation bytes of an integer; more is malformed
	hpackStatic  = 62 // first index of the dynamic table
)

// HEADERS frame flags.
const (
	h2EndHeaders = 0x4
	h2Padded     = 0x8
	h2Priority   = 0x20
)

// h2App walks the HTTP/2 frames that follow the client preface as the
// kernel does: control frames of their lawful sizes (SETTINGS,
// WINDOW_UPDATE, PING, PRIORITY) are skipped, and the first HEADERS frame
// decides (headersApp). Anything else first, more than h2WalkFrames
// frames, or frames that end before a HEADERS frame (the kernel follows
// them into the next packet; a sample cannot) are Unknown: where the kernel
// cannot decide, it names no application.
func h2App(frames []byte) Protocol {
	pos := 0
	for range h2WalkFrames {
		if pos+9 > len(frames) || pos > 0xffff {
			return Unknown
		}
		n := int(frames[pos])<<16 | int(frames[pos+1])<<8 | int(frames[pos+2])
		switch frames[pos+3] {
		case 0x4: // SETTINGS
			if n%6 != 0 || n > 96 {
				return Unknown
			}
		case 0x8: // WINDOW_UPDATE
			if n != 4 {
				return Unknown
			}
		case 0x6: // PING
			if n != 8 {
				return Unknown
			}
		case 0x2: // PRIORITY
			if n != 5 {
				return Unknown
			}
		case 0x1: // HEADERS
			return headersApp(frames, pos, n, frames[pos+4])
		default:
			return Unknown
		}
		pos += 9 + n
	}
	return Unknown
}

// headersApp names the application of the HEADERS frame at pos of frames
// (n bytes of payload, flags given) from its header block (padding and
// priority fields are not the block): a content-type field whose value
// starts with application/grpc names gRPC, whichever of several it is (a
// gRPC server takes any), and a whole block (END_HEADERS) without one is
// HTTP/2. Unknown when it cannot be decided from these bytes: the block
// goes on past them or in CONTINUATION frames before a gRPC content-type,
// a field names the dynamic
// table, there are more than hpackFields fields, or the frame or a
// representation is malformed.
func headersApp(frames []byte, pos, n int, flags byte) Protocol {
	p, lead, pad := pos+9, 0, 0
	if flags&h2Padded != 0 {
		if p >= len(frames) {
			return Unknown
		}
		pad, lead = int(frames[p]), 1
	}
	if flags&h2Priority != 0 {
		lead += 5
	}
	if lead+pad > n {
		return Unknown
	}
	bend := p + n - pad
	h := hpackReader{b: frames[:min(bend, len(frames))], pos: p + lead}
	for range hpackFields {
		if h.pos >= len(h.b) {
			break
		}
		if app, done := h.field(); done {
			return app
		}
	}
	if h.pos >= len(h.b) && bend <= len(frames) && flags&h2EndHeaders != 0 {
		return HTTP2
	}
	return Unknown
}

// hpackReader reads HPACK field representations (RFC 7541 section 6) from
// b at pos.
type hpackReader struct {
	b   []byte
	pos int
}

// next reads the next byte; false past the end.
func (h *hpackReader) next() (byte, bool) {
	if h.pos >= len(h.b) {
		return 0, false
	}
	h.pos++
	return h.b[h.pos-1], true
}

// integer reads an integer whose prefix (mask) is in first; false when it
// runs past the end or has more than hpackIntMore continuation bytes.
func (h *hpackReader) integer(first byte, mask int) (int, bool) {
	v := int(first) & mask
	if v < mask {
		return v, true
	}
	for k := range hpackIntMore {
		b, ok := h.next()
		if !ok {
			return 0, false
		}
		v += int(b&0x7f) << (7 * k)
		if b&0x80 == 0 {
			return v, true
		}
	}
	return 0, false
}

// str reads a string's length and returns the string and whether it is
// Huffman coded; false when it runs past the end.
func (h *hpackReader) str() ([]byte, bool, bool) {
	x, ok := h.next()
	if !ok {
		return nil, false, false
	}
	n, ok := h.integer(x, 0x7f)
	if !ok || n > len(h.b)-h.pos {
		return nil, false, false
	}
	s := h.b[h.pos : h.pos+n]
	h.pos += n
	return s, x&0x80 != 0, true
}

// field reads one field representation; done when it decides: GRPC for a
// content-type naming gRPC, Unknown when the field is malformed or names
// the dynamic table.
func (h *hpackReader) field() (app Protocol, done bool) {
	x, ok := h.next()
	if !ok {
		return Unknown, true
	}
	if x&0x80 != 0 {
		// Indexed field: content-type from the static table has an
		// empty value.
		if i, ok := h.integer(x, 0x7f); !ok || i == 0 || i >= hpackStatic {
			return Unknown, true
		}
		return Unknown, false
	}
	if x&0xe0 == 0x20 {
		// Dynamic table size update.
		if _, ok := h.integer(x, 0x1f); !ok {
			return Unknown, true
		}
		return Unknown, false
	}
	// Literal field, with incremental indexing (01), without indexing
	// (0000) or never indexed (0001).
	mask := 0x0f
	if x&0x40 != 0 {
		mask = 0x3f
	}
	i, ok := h.integer(x, mask)
	if !ok || i >= hpackStatic {
		return Unknown, true
	}
	ct := i == hpackContentType
	if i == 0 {
		name, huff, ok := h.str()
		if !ok {
			return Unknown, true
		}
		ct = (huff && bytes.Equal(name, contentTypeHuffman)) || (!huff && string(name) == "content-type")
	}
	value, huff, ok := h.str()
	if !ok {
		return Unknown, true
	}
	if ct && ((huff && bytes.HasPrefix(value, grpcHuffman)) || (!huff && bytes.HasPrefix(value, []byte("application/grpc")))) {
		return GRPC, true
	}
	return Unknown, false
}

var httpMethods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("DELETE "), []byte("HEAD "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE "),
}

func isHTTPRequest(b []byte) bool {
	for _, m := range httpMethods {
		if !bytes.HasPrefix(b, m) {
			continue
		}
		line := b[len(m):]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
			return bytes.Contains(line, []byte(" HTTP/1."))
		}
		// The request line runs past the sample: a target with no
		// spaces or control characters is enough.
		for _, ch := range line {
			if ch <= ' ' || ch == 0x7f {
				return false
			}
		}
		return len(line) > 0
	}
	return false
}

// isTLS matches a TLS record carrying a handshake message of type hs
// (1 ClientHello, 2 ServerHello).
func isTLS(b []byte, hs byte) bool {
	if len(b) < 6 {
		return false
	}
	if b[0] != 0x16 || b[1] != 3 || b[2] > 4 {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[3:5]))
	return n >= 4 && n <= 1<<14+2048 && b[5] == hs
}

// isDNS matches a DNS message (with the two-byte length prefix of DNS over
// TCP when tcp is set): a plausible header and a well-formed first name.
func isDNS(b []byte, tcp bool) bool {
	if tcp {
		if len(b) < 2 {
			return false
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n < 12 || n < len(b) {
			return false
		}
	}
	if len(b) < 17 {
		return false
	}
	flags := binary.BigEndian.Uint16(b[2:])
	opcode := (flags >> 11) & 0xf
	if opcode != 0 && opcode != 2 && opcode != 4 && opcode != 5 {
		return false
	}
	if flags&0x0040 != 0 { // Z bit must be zero
		return false
	}
	qd := binary.BigEndian.Uint16(b[4:])
	an := binary.BigEndian.Uint16(b[6:])
	ns := binary.BigEndian.Uint16(b[8:])
	ar := binary.BigEndian.Uint16(b[10:])
	if qd == 0 || qd > 8 || an > 256 || ns > 256 || ar > 256 {
		return false
	}
	// First question name: labels of 1..63 bytes, at most 255 in all.
	i, total := 12, 0
	for i < len(b) {
		l := int(b[i])
		if l == 0 {
			i++
			if i+4 > len(b) {
				return true // type and class run past the sample
			}
			class := binary.BigEndian.Uint16(b[i+2:]) &^ 0x8000 // mDNS unicast-response bit
			return class == 1 || class == 3 || class == 4 || class == 254 || class == 255
		}
		if l > 63 {
			return false
		}
		for _, ch := range b[i+1 : min(i+1+l, len(b))] {
			if ch < 0x20 || ch > 0x7e {
				return false
			}
		}
		total += l + 1
		if total > 255 {
			return false
		}
		i += l + 1
	}
	return total > 0 // name runs past the sample
}

// isPostgres matches a startup message (protocol 3.0 followed by a
// parameter name), an SSLRequest, a GSSENCRequest or a CancelRequest.
func isPostgres(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	n := binary.BigEndian.Uint32(b)
	code := binary.BigEndian.Uint32(b[4:])
	switch code {
	case 80877103, 80877104: // SSLRequest, GSSENCRequest
		return n == 8
	case 80877102: // CancelRequest
		return n == 16
	case 0x00030000:
		if n < 9 || n > 10000 || len(b) < 9 {
			return false
		}
		end := bytes.IndexByte(b[8:], 0)
		key := b[8:]
		if end >= 0 {
			key = key[:end]
		}
		if len(key) == 0 {
			return false
		}
		for _, ch := range key {
			if ch < 'a' || ch > 'z' {
				if ch != '_' {
					return false
				}
			}
		}
		return true
	}
	return false
}

// isMySQLGreeting matches the server's initial handshake packet (protocol
// version 10) with a printable server version.
func isMySQLGreeting(b []byte) bool {
	if len(b) < 6 {
		return false
	}
	n := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	if n < 20 || n > 1024 || b[3] != 0 || b[4] != 10 {
		return false
	}
	end := bytes.IndexByte(b[5:], 0)
	version := b[5:]
	if end >= 0 {
		version = version[:end]
	}
	if len(version) == 0 || version[0] < '0' || version[0] > '9' {
		return false
	}
	for _, ch := range version {
		if ch < 0x20 || ch > 0x7e {
			return false
		}
	}
	return true
}

// isMongo matches a wire protocol header with a known opcode.
func isMongo(b []byte) bool {
	if len(b) < 16 {
		return false
	}
	n := binary.LittleEndian.Uint32(b)
	op := binary.LittleEndian.Uint32(b[12:])
	if n < 21 || n > 48<<20 {
		return false
	}
	switch op {
	case 2013: // OP_MSG: flag bits, then section kind 0 or 1
		return len(b) < 21 || b[20] <= 1
	case 2004, 2012, 1: // OP_QUERY, OP_COMPRESSED, OP_REPLY
		return true
	}
	return false
}

// isKafka matches a request header: size, API key and version in range,
// then a client ID that is null or printable.
func isKafka(b []byte) bool {
	if len(b) < 14 {
		return false
	}
	size := binary.BigEndian.Uint32(b)
	key := int16(binary.BigEndian.Uint16(b[4:]))
	ver := int16(binary.BigEndian.Uint16(b[6:]))
	if size < 10 || size > 100<<20 || key < 0 || key > 90 || ver < 0 || ver > 20 {
		return false
	}
	cl := int16(binary.BigEndian.Uint16(b[12:]))
	if cl == -1 {
		return true
	}
	if cl <= 0 || int(cl) > int(size)-10 {
		return false
	}
	id := b[14:min(14+int(cl), len(b))]
	if len(id) == 0 {
		return false
	}
	for _, ch := range id {
		if ch < 0x20 || ch > 0x7e {
			return false
		}
	}
	return true
}

var redisInline = [][]byte{[]byte("PING"), []byte("AUTH "), []byte("HELLO "), []byte("INFO"), []byte("SELECT ")}

// isRedis matches a RESP command array ("*N\r\n$M\r\n") or a common inline
// command.
func isRedis(b []byte) bool {
	if len(b) >= 4 && b[0] == '*' {
		i := 1
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == 1 || i > 6 {
			return false
		}
		rest := b[i:]
		if len(rest) < 3 {
			return bytes.HasPrefix([]byte("\r\n$"), rest)
		}
		return bytes.HasPrefix(rest, []byte("\r\n$"))
	}
	up := bytes.ToUpper(b[:min(len(b), 8)])
	for _, c := range redisInline {
		if bytes.HasPrefix(up, c) {
			rest := b[len(c):]
			if bytes.HasSuffix(c, []byte(" ")) {
				return bytes.Contains(rest, []byte("\r\n"))
			}
			return bytes.HasPrefix(rest, []byte("\r\n"))
		}
	}
	return false
}
