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

// HPACK signatures of the content-type field: its static table index and
// its name Huffman coded.
const hpackContentType = 31

var contentTypeHuffman = []byte{0x21, 0xea, 0x49, 0x6a, 0x4a, 0xc9, 0xf5, 0x59, 0x7f}

// grpcContentType is what a content-type value naming gRPC starts with, in
// any ASCII case: grpc-java lower-cases the value before its check, so
// "Application/GRPC" is gRPC to it.
const grpcContentType = "application/grpc"

// The HPACK Huffman code (RFC 7541 Appendix B) is canonical: the codes of
// one length are consecutive, and come after the prefixes of all shorter
// ones. huffmanFirst holds the first code of each length, huffmanIndex the
// index in huffmanSyms (the symbols in code order) of its symbol; the codes
// of length l are the huffmanIndex[l+1]-huffmanIndex[l] from
// huffmanFirst[l]. EOS, the last of the longest codes, is no symbol. The
// kernel's tables (agent/bpf/datapath.c) are the same.
const huffmanMaxLen = 30

var (
	huffmanFirst = [32]uint32{
		0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x14, 0x5c,
		0xf8, 0x0, 0x3f8, 0x7fa, 0xffa, 0x1ff8, 0x3ffc, 0x7ffc,
		0x0, 0x0, 0x0, 0x7fff0, 0xfffe6, 0x1fffdc, 0x3fffd2, 0x7fffd8,
		0xffffea, 0x1ffffec, 0x3ffffe0, 0x7ffffde, 0xfffffe2, 0x0, 0x3ffffffc, 0x0,
	}
	huffmanIndex = [32]uint16{
		0, 0, 0, 0, 0, 0, 10, 36, 68, 74, 74, 79, 82, 84, 90, 92,
		95, 95, 95, 95, 98, 106, 119, 145, 174, 186, 190, 205, 224, 253, 253, 256,
	}
	huffmanSyms = [256]byte{
		0x30, 0x31, 0x32, 0x61, 0x63, 0x65, 0x69, 0x6f, 0x73, 0x74, 0x20, 0x25, 0x2d, 0x2e, 0x2f, 0x33,
		0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3d, 0x41, 0x5f, 0x62, 0x64, 0x66, 0x67, 0x68, 0x6c, 0x6d,
		0x6e, 0x70, 0x72, 0x75, 0x3a, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c,
		0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x59, 0x6a, 0x6b, 0x71, 0x76,
		0x77, 0x78, 0x79, 0x7a, 0x26, 0x2a, 0x2c, 0x3b, 0x58, 0x5a, 0x21, 0x22, 0x28, 0x29, 0x3f, 0x27,
		0x2b, 0x7c, 0x23, 0x3e, 0x00, 0x24, 0x40, 0x5b, 0x5d, 0x7e, 0x5e, 0x7d, 0x3c, 0x60, 0x7b, 0x5c,
		0xc3, 0xd0, 0x80, 0x82, 0x83, 0xa2, 0xb8, 0xc2, 0xe0, 0xe2, 0x99, 0xa1, 0xa7, 0xac, 0xb0, 0xb1,
		0xb3, 0xd1, 0xd8, 0xd9, 0xe3, 0xe5, 0xe6, 0x81, 0x84, 0x85, 0x86, 0x88, 0x92, 0x9a, 0x9c, 0xa0,
		0xa3, 0xa4, 0xa9, 0xaa, 0xad, 0xb2, 0xb5, 0xb9, 0xba, 0xbb, 0xbd, 0xbe, 0xc4, 0xc6, 0xe4, 0xe8,
		0xe9, 0x01, 0x87, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8f, 0x93, 0x95, 0x96, 0x97, 0x98, 0x9b, 0x9d,
		0x9e, 0xa5, 0xa6, 0xa8, 0xae, 0xaf, 0xb4, 0xb6, 0xb7, 0xbc, 0xbf, 0xc5, 0xe7, 0xef, 0x09, 0x8e,
		0x90, 0x91, 0x94, 0x9f, 0xab, 0xce, 0xd7, 0xe1, 0xec, 0xed, 0xc7, 0xcf, 0xea, 0xeb, 0xc0, 0xc1,
		0xc8, 0xc9, 0xca, 0xcd, 0xd2, 0xd5, 0xda, 0xdb, 0xee, 0xf0, 0xf2, 0xf3, 0xff, 0xcb, 0xcc, 0xd3,
		0xd4, 0xd6, 0xdd, 0xde, 0xdf, 0xf1, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe,
		0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0b, 0x0c, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14,
		0x15, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x7f, 0xdc, 0xf9, 0x0a, 0x0d, 0x16,
	}
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
// starts with application/grpc in any ASCII case, raw or Huffman coded
// (isGRPCContentType), names gRPC, whichever of several it is (a
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
	if ct && isGRPCContentType(value, huff) {
		return GRPC, true
	}
	return Unknown, false
}

// isGRPCContentType tells whether a content-type value (Huffman coded if
// huff) starts with grpcContentType in any ASCII case: raw, its first
// bytes; Huffman coded, its first symbols.
func isGRPCContentType(value []byte, huff bool) bool {
	var s [len(grpcContentType)]byte
	if huff {
		if !huffmanPrefix(value, s[:]) {
			return false
		}
	} else {
		if len(value) < len(s) {
			return false
		}
		copy(s[:], value)
	}
	for i, c := range s {
		if asciiLower(c) != grpcContentType[i] {
			return false
		}
	}
	return true
}

// asciiLower folds an ASCII upper-case letter to lower case, and only
// that.
func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// huffmanPrefix decodes the first len(out) symbols of the HPACK Huffman
// coded v into out, bit by bit as the kernel does; false when v ends
// before them (its padding is no symbol) or holds a code longer than any
// (EOS). What follows them is not read: the kernel reads no more.
func huffmanPrefix(v, out []byte) bool {
	var code uint32
	n, k := 0, 0
	for bit := 0; bit < len(v)*8 && k < len(out); bit++ {
		code = code<<1 | uint32(v[bit/8]>>(7-bit%8))&1
		n++
		if n > huffmanMaxLen {
			return false
		}
		if i := code - huffmanFirst[n]; i < uint32(huffmanIndex[n+1]-huffmanIndex[n]) {
			out[k] = huffmanSyms[int(huffmanIndex[n])+int(i)]
			k++
			code, n = 0, 0
		}
	}
	return k == len(out)
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
