package appdetect

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/http2/hpack"
)

const sampleMax = 128 // what the datapath copies

func clip(b []byte) []byte { return b[:min(len(b), sampleMax)] }

// firstBytes runs client against one end of an in-memory pipe and returns
// the first bytes it writes.
func firstBytes(t testing.TB, client func(net.Conn)) []byte {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		client(a)
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := io.ReadAtLeast(b, buf, 1)
	if err != nil {
		t.Fatalf("read first bytes: %v", err)
	}
	b.Close()
	a.Close()
	<-done
	return clip(buf[:n])
}

func tlsClientHello(t testing.TB) []byte {
	return firstBytes(t, func(c net.Conn) {
		tls.Client(c, &tls.Config{ServerName: "db.example", InsecureSkipVerify: true}).Handshake()
	})
}

func sshClientVersion(t testing.TB) []byte {
	return firstBytes(t, func(c net.Conn) {
		ssh.NewClientConn(c, "x:22", &ssh.ClientConfig{HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	})
}

func httpRequest(t testing.TB) []byte {
	return firstBytes(t, func(c net.Conn) {
		req, _ := http.NewRequest("POST", "http://api.example/v1/items", strings.NewReader("{}"))
		w := bufio.NewWriter(c)
		req.Write(w)
		w.Flush()
	})
}

func dnsQuery(t testing.TB, tcp bool) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("service.namespace.svc.cluster.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	msg, err := b.Finish()
	if err != nil {
		t.Fatalf("build dns query: %v", err)
	}
	if tcp {
		msg = append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
	}
	return clip(msg)
}

// h2Request is an HTTP/2 client preface, an empty SETTINGS frame and a
// HEADERS frame whose fields are HPACK-encoded by x/net.
func h2Request(t testing.TB, contentType string) []byte {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/pkg.Service/Method"}, {Name: ":authority", Value: "svc:50051"},
		{Name: "content-type", Value: contentType}, {Name: "te", Value: "trailers"},
	} {
		enc.WriteField(f)
	}
	out := []byte(http2Preface)
	out = append(out, 0, 0, 0, 4, 0, 0, 0, 0, 0) // SETTINGS, empty
	n := hb.Len()
	out = append(out, byte(n>>16), byte(n>>8), byte(n), 1, 4, 0, 0, 0, 1)
	out = append(out, hb.Bytes()...)
	return clip(out)
}

// h2Frame is one HTTP/2 frame on stream 0.
func h2Frame(typ byte, payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n >> 16), byte(n >> 8), byte(n), typ, 0, 0, 0, 0, 0}, payload...)
}

// h2Frames is the preface, extra frames, then a request HEADERS frame
// whose :path is path and content type contentType; not clipped.
func h2Frames(t testing.TB, contentType, path string, extra ...[]byte) []byte {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":path", Value: path}, {Name: "content-type", Value: contentType},
	} {
		enc.WriteField(f)
	}
	out := []byte(http2Preface)
	for _, e := range extra {
		out = append(out, e...)
	}
	n := hb.Len()
	out = append(out, byte(n>>16), byte(n>>8), byte(n), 1, 4, 0, 0, 0, 1)
	return append(out, hb.Bytes()...)
}

func h2With(t testing.TB, contentType string, extra ...[]byte) []byte {
	return h2Frames(t, contentType, "/pkg.Service/Method", extra...)
}

// h2Block is the preface, then a HEADERS frame of stream 1 with the flags
// and payload given (a header block built by hand); not clipped.
func h2Block(flags byte, payload string) []byte {
	n := len(payload)
	out := append([]byte(http2Preface), byte(n>>16), byte(n>>8), byte(n), 1, flags, 0, 0, 0, 1)
	return append(out, payload...)
}

// Hand-built header block pieces (RFC 7541 section 6).
const (
	hpPost       = "\x83"                                     // indexed :method POST
	hpPath       = "\x44\x0c/pkg.Svc/Get"                     // :path, incremental indexing, raw value
	hpGRPC       = "\x5f\x10application/grpc"                 // content-type (static name, incremental indexing), raw value
	hpJSON       = "\x5f\x10application/json"                 // content-type application/json
	hpNoteGRPC   = "\x00\x06x-note\x10application/grpc"       // literal name x-note, without indexing
	hpContentRaw = "\x00\x0ccontent-type\x10application/grpc" // literal name content-type
)

// hpHuffman is a content-type field (static name, incremental indexing)
// whose value is the Huffman coded v (shorter than 127 bytes).
func hpHuffman(v []byte) string {
	return "\x5f" + string([]byte{0x80 | byte(len(v))}) + string(v)
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

// Hand-built samples, laid out from each protocol's documentation.
const (
	// PostgreSQL StartupMessage v3.0: user=app database=orders.
	pgStartup = "00000026 00030000 7573657200 61707000 646174616261736500 6f726465727300 00"
	// PostgreSQL SSLRequest.
	pgSSL = "00000008 04d2162f"
	// MySQL 8 initial handshake: length 74, seq 0, protocol 10, "8.0.36\0", thread id, salt.
	mysqlGreeting = "4a0000 00 0a 382e302e333600 0b000000 3a5d4c1f7e6a2b3c 00 ffff ff 0200 ffdf 15 00000000000000000000 1b4e5d6f7a3c2b1d4f5e6a7b00 6d7973716c5f6e61746976655f70617373776f726400"
	// MongoDB OP_MSG hello: length 0x5c, request 1, response 0, opcode 2013, flags 0, section kind 0.
	mongoHello = "5c000000 01000000 00000000 dd070000 00000000 00 47000000 1068656c6c6f0001000000"
	// Kafka ApiVersions v3 request: size, api key 18, version 3, correlation 1, client id "rdkafka".
	kafkaAPIVersions = "00000024 0012 0003 00000001 0007 72646b61666b61 00 0a6c6962726466616b61 06322e332e30 00"
	// redis-cli PING.
	redisPing = "*1\r\n$4\r\nPING\r\n"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		s    Sample
		want Protocol
	}{
		{"tls client hello", Sample{Proto: ProtoTCP, Client: tlsClientHello(t)}, TLS},
		{"ssh client version", Sample{Proto: ProtoTCP, Client: sshClientVersion(t)}, SSH},
		{"ssh server banner only", Sample{Proto: ProtoTCP, Server: []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")}, SSH},
		{"http request", Sample{Proto: ProtoTCP, Client: httpRequest(t)}, HTTP},
		{"http response only", Sample{Proto: ProtoTCP, Server: []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")}, HTTP},
		{"http long target", Sample{Proto: ProtoTCP, Client: clip([]byte("GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\n"))}, HTTP},
		{"grpc", Sample{Proto: ProtoTCP, Client: h2Request(t, "application/grpc")}, GRPC},
		{"grpc proto", Sample{Proto: ProtoTCP, Client: h2Request(t, "application/grpc+proto")}, GRPC},
		{"http2 json", Sample{Proto: ProtoTCP, Client: h2Request(t, "application/json")}, HTTP2},
		{"http2 preface only", Sample{Proto: ProtoTCP, Client: []byte(http2Preface)}, HTTP2},
		{"grpc after control frames", Sample{Proto: ProtoTCP, Client: h2With(t, "application/grpc", h2Frame(8, []byte{0, 0, 1, 0}), h2Frame(6, make([]byte, 8)))}, GRPC},
		{"grpc after too many frames", Sample{Proto: ProtoTCP, Client: h2With(t, "application/grpc", h2Frame(6, make([]byte, 8)), h2Frame(6, make([]byte, 8)), h2Frame(6, make([]byte, 8)), h2Frame(6, make([]byte, 8)))}, HTTP2},
		{"data before headers", Sample{Proto: ProtoTCP, Client: h2With(t, "application/grpc", h2Frame(0, []byte("application/grpc")))}, HTTP2},
		{"oversized settings", Sample{Proto: ProtoTCP, Client: h2With(t, "application/grpc", h2Frame(4, make([]byte, 102)))}, HTTP2},
		{"grpc content type after a long path", Sample{Proto: ProtoTCP, Client: h2Frames(t, "application/grpc", "/"+strings.Repeat("~", 700))}, GRPC},
		{"undecidable header block", Sample{Proto: ProtoTCP, Client: h2Block(0, hpPost+hpPath)}, HTTP2},
		{"malformed header block", Sample{Proto: ProtoTCP, Client: h2Block(4, hpPost+"\x0f\xff")}, HTTP2},
		{"http/0.9 request line", Sample{Proto: ProtoTCP, Client: []byte("GET /index.html\r\n")}, Unknown},
		{"dns udp", Sample{Proto: ProtoUDP, Client: dnsQuery(t, false)}, DNS},
		{"dns tcp", Sample{Proto: ProtoTCP, Client: dnsQuery(t, true)}, DNS},
		{"postgres startup", Sample{Proto: ProtoTCP, Client: unhex(t, pgStartup)}, PostgreSQL},
		{"postgres ssl request", Sample{Proto: ProtoTCP, Client: unhex(t, pgSSL)}, PostgreSQL},
		{"mysql greeting", Sample{Proto: ProtoTCP, Server: unhex(t, mysqlGreeting)}, MySQL},
		{"mongodb hello", Sample{Proto: ProtoTCP, Client: unhex(t, mongoHello)}, MongoDB},
		{"kafka api versions", Sample{Proto: ProtoTCP, Client: unhex(t, kafkaAPIVersions)}, Kafka},
		{"redis ping", Sample{Proto: ProtoTCP, Client: []byte(redisPing)}, Redis},
		{"redis set", Sample{Proto: ProtoTCP, Client: []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")}, Redis},
		{"redis inline", Sample{Proto: ProtoTCP, Client: []byte("PING\r\n")}, Redis},

		{"empty", Sample{Proto: ProtoTCP}, Unknown},
		{"text", Sample{Proto: ProtoTCP, Client: []byte("hello there\n")}, Unknown},
		{"get without target", Sample{Proto: ProtoTCP, Client: []byte("GET \r\n")}, Unknown},
		{"zeros", Sample{Proto: ProtoTCP, Client: make([]byte, 64)}, Unknown},
		{"udp http", Sample{Proto: ProtoUDP, Client: []byte("GET / HTTP/1.1\r\n")}, Unknown},
		{"tls over udp", Sample{Proto: ProtoUDP, Client: tlsClientHello(t)}, Unknown},
		{"truncated tls", Sample{Proto: ProtoTCP, Client: []byte{0x16, 0x03, 0x01}}, Unknown},
		{"postgres bad key", Sample{Proto: ProtoTCP, Client: unhex(t, "00000026 00030000 0000000100")}, Unknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Detect(tc.s); got != tc.want {
				t.Errorf("Detect = %q, want %q (client %q server %q)", got, tc.want, tc.s.Client, tc.s.Server)
			}
		})
	}
}

// TestH2App checks the HTTP/2 frame and HPACK walk, Unknown where the
// kernel names no application.
func TestH2App(t *testing.T) {
	tests := []struct {
		name string
		b    []byte // from the preface on
		want Protocol
	}{
		{"grpc content type after a long header", h2Block(4, hpPost+"\x00\x07x-trace\x7f\xdc\x03"+strings.Repeat("a", 603)+hpGRPC), GRPC},
		{"grpc content type in :path of json", h2Frames(t, "application/json", "/application/grpc"), HTTP2},
		{"grpc content type in another header", h2Block(4, hpPost+hpNoteGRPC+hpJSON), HTTP2},
		{"grpc content type in another header, no content type", h2Block(4, hpPost+hpNoteGRPC), HTTP2},
		{"no content type", h2Block(4, hpPost+hpPath), HTTP2},
		{"empty block", h2Block(4, ""), HTTP2},
		{"static content type, raw value", h2Block(4, hpPost+hpPath+hpGRPC), GRPC},
		{"static content type, never indexed, long index", h2Block(4, hpPost+"\x1f\x10\x10application/grpc"), GRPC},
		{"literal content type name", h2Block(4, hpPost+hpContentRaw), GRPC},
		{"huffman content type name", h2Block(4, hpPost+"\x40\x89"+string(contentTypeHuffman)+"\x10application/grpc"), GRPC},
		{"huffman content type name, json", h2Block(4, hpPost+"\x40\x89"+string(contentTypeHuffman)+"\x10application/json"), HTTP2},
		{"upper-case content type name", h2Block(4, hpPost+"\x00\x0cContent-Type\x10application/grpc"), HTTP2},
		{"mixed-case grpc, raw", h2Block(4, hpPost+"\x5f\x10Application/GRPC"), GRPC},
		{"upper-case grpc+proto, raw", h2Block(4, hpPost+"\x5f\x16APPLICATION/GRPC+PROTO"), GRPC},
		{"mixed-case grpc, huffman", h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "Application/GRPC"))), GRPC},
		{"upper-case grpc+proto, huffman", h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "APPLICATION/GRPC+PROTO"))), GRPC},
		{"json, huffman", h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "application/json"))), HTTP2},
		{"grpc, huffman cut mid-symbol", h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "application/grpc")[:10])), HTTP2},
		{"grpc, huffman with EOS in it", h2Block(4, hpPost+hpHuffman(huffmanBits(t, "Application/GRP", true, "C"))), HTTP2},
		{"grpc, huffman with EOS after it", h2Block(4, hpPost+hpHuffman(huffmanBits(t, "Application/GRPC", true, ""))), GRPC},
		{"slash by |0x20, huffman", h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "application\x0fgrpc"))), HTTP2},
		{"json, huffman, then grpc mixed case, huffman", h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "application/json"))+hpHuffman(hpack.AppendHuffmanString(nil, "application/gRPC"))), GRPC},
		{"a later grpc content type decides", h2Block(4, hpPost+hpJSON+hpGRPC), GRPC},
		{"a later grpc content type decides, no END_HEADERS", h2Block(0, hpPost+hpJSON+hpGRPC), GRPC},
		{"json content type, block past the sample", h2Block(4, hpPost+hpJSON+hpPath)[:len(http2Preface)+9+1+len(hpJSON)], Unknown},
		{"json content type, no END_HEADERS", h2Block(0, hpPost+hpJSON), Unknown},
		{"indexed content type is empty", h2Block(4, hpPost+"\x9f"), HTTP2},
		{"indexed content type, then grpc", h2Block(4, hpPost+"\x9f"+hpGRPC), GRPC},
		{"table size update first", h2Block(4, "\x3f\xe1\x1f"+hpPost+hpGRPC), GRPC},
		{"padded and priority", h2Block(4|8|0x20, "\x03"+"\x80\x00\x00\x03\x10"+hpPost+hpGRPC+"\x00\x00\x00"), GRPC},
		{"padded json", h2Block(4|8, "\x02"+hpPost+hpJSON+"\x00\x00"), HTTP2},
		{"padding longer than the frame", h2Block(4|8, "\x40"+hpPost+hpGRPC), Unknown},
		{"padding cuts the content type", h2Block(4|8, "\x04"+hpPost+hpGRPC), Unknown},
		{"no END_HEADERS before the content type", h2Block(0, hpPost+hpPath), Unknown},
		{"no END_HEADERS after the content type", h2Block(0, hpPost+hpGRPC), GRPC},
		{"block past the sample", h2Block(4, hpPost+hpPath+hpGRPC)[:len(http2Preface)+9+5], Unknown},
		{"content type past the sample", h2Block(4, hpPost+hpGRPC)[:len(http2Preface)+9+6], Unknown},
		{"dynamic table name", h2Block(4, hpPost+"\x7e\x10application/grpc"), Unknown},
		{"dynamic table field", h2Block(4, hpPath+"\xbe"+hpGRPC), Unknown},
		{"indexed zero", h2Block(4, "\x80"+hpGRPC), Unknown},
		{"integer too long", h2Block(4, "\x0f\xff\xff\xff\xff\x01"+hpGRPC), Unknown},
		{"integer past the block", h2Block(4, hpPost+"\x0f\xff"), Unknown},
		{"value past the block", h2Block(4, hpPost+"\x5f\x20application/grpc"), Unknown},
		{"name past the block", h2Block(4, hpPost+"\x00\x0ccontent"), Unknown},
		{"too many fields", h2Block(4, strings.Repeat(hpPost, 64)+hpGRPC), Unknown},
		{"as many fields as walked", h2Block(4, strings.Repeat(hpPost, 63)+hpGRPC), GRPC},
		{"unknown frame type first", h2With(t, "application/grpc", h2Frame(0xa, []byte{1, 2, 3})), Unknown},
		{"data first", h2With(t, "application/grpc", h2Frame(0, []byte("application/grpc"))), Unknown},
		{"oversized settings first", h2With(t, "application/grpc", h2Frame(4, make([]byte, 102))), Unknown},
		{"more frames than walked", h2With(t, "application/grpc", h2Frame(6, make([]byte, 8)), h2Frame(6, make([]byte, 8)), h2Frame(6, make([]byte, 8)), h2Frame(6, make([]byte, 8))), Unknown},
		{"control frames only", []byte(http2Preface + string(h2Frame(4, nil))), Unknown},
		{"frame header cut", append([]byte(http2Preface), h2Frame(4, nil)[:5]...), Unknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := h2App(tc.b[len(http2Preface):]); got != tc.want {
				t.Errorf("h2App = %q, want %q (%q)", got, tc.want, tc.b)
			}
		})
	}
}

// huffmanCode is the HPACK Huffman code of one symbol, as x/net's coder
// writes it.
type huffmanCode struct {
	sym  byte
	len  int
	code uint32
}

// hpackCodes returns the code of every symbol from x/net's coder, in code
// order (by length, then value).
func hpackCodes(t testing.TB) []huffmanCode {
	t.Helper()
	var codes []huffmanCode
	for s := range 256 {
		sym := string([]byte{byte(s)})
		n := int(hpack.HuffmanEncodeLength(strings.Repeat(sym, 8))) // 8 codes: whole bytes
		b := hpack.AppendHuffmanString(nil, sym)
		var v uint64
		for _, x := range b {
			v = v<<8 | uint64(x)
		}
		codes = append(codes, huffmanCode{byte(s), n, uint32(v >> (len(b)*8 - n))})
	}
	sort.Slice(codes, func(i, j int) bool {
		if codes[i].len != codes[j].len {
			return codes[i].len < codes[j].len
		}
		return codes[i].code < codes[j].code
	})
	return codes
}

// TestHuffmanTables holds the canonical decoding tables to x/net's coder:
// every one of the 256 symbols is in huffmanSyms at its code's place, and
// its code decodes to it alone.
func TestHuffmanTables(t *testing.T) {
	codes := hpackCodes(t)
	if got := codes[len(codes)-1].len; got != huffmanMaxLen {
		t.Errorf("longest code is %d bits, huffmanMaxLen %d", got, huffmanMaxLen)
	}
	for i, c := range codes {
		if huffmanSyms[i] != c.sym {
			t.Errorf("huffmanSyms[%d] = %#x, want %#x", i, huffmanSyms[i], c.sym)
		}
		first := int(huffmanIndex[c.len])
		if i < first || i >= int(huffmanIndex[c.len+1]) {
			t.Errorf("symbol %#x (code %#x, %d bits) at %d, outside its length's [%d, %d)", c.sym, c.code, c.len, i, first, huffmanIndex[c.len+1])
			continue
		}
		if want := huffmanFirst[c.len] + uint32(i-first); c.code != want {
			t.Errorf("symbol %#x: code %#x, tables say %#x", c.sym, c.code, want)
		}
	}
	for l := 0; l < len(huffmanIndex)-1; l++ {
		if huffmanIndex[l] > huffmanIndex[l+1] {
			t.Errorf("huffmanIndex[%d] = %d after %d", l+1, huffmanIndex[l+1], huffmanIndex[l])
		}
	}
	if huffmanIndex[len(huffmanIndex)-1] != 256 {
		t.Errorf("huffmanIndex ends at %d, want 256", huffmanIndex[len(huffmanIndex)-1])
	}
	for s := range 256 {
		b := hpack.AppendHuffmanString(nil, string([]byte{byte(s)}))
		var out [1]byte
		if !huffmanPrefix(b, out[:]) || out[0] != byte(s) {
			t.Errorf("symbol %#x coded %x decodes to %#x", s, b, out[0])
		}
	}
}

// TestContentTypeHuffman holds content-type's Huffman signature to x/net's
// coder.
func TestContentTypeHuffman(t *testing.T) {
	if got := hpack.AppendHuffmanString(nil, "content-type"); !bytes.Equal(got, contentTypeHuffman) {
		t.Errorf("huffman of content-type is %x, signature %x", got, contentTypeHuffman)
	}
}

// huffmanBits is the Huffman code of s, then EOS if eos, then that of
// after, padded with ones (a prefix of EOS) to a byte boundary.
func huffmanBits(t testing.TB, s string, eos bool, after string) []byte {
	t.Helper()
	code := map[byte]huffmanCode{}
	for _, c := range hpackCodes(t) {
		code[c.sym] = c
	}
	var out []byte
	var acc uint64
	n := 0
	put := func(v uint32, l int) {
		for i := l - 1; i >= 0; i-- {
			acc = acc<<1 | uint64(v>>i)&1
			if n++; n == 8 {
				out = append(out, byte(acc))
				acc, n = 0, 0
			}
		}
	}
	for _, c := range []byte(s) {
		put(code[c].code, code[c].len)
	}
	if eos {
		put(1<<30-1, 30)
	}
	for _, c := range []byte(after) {
		put(code[c].code, code[c].len)
	}
	if n > 0 {
		put(1<<(8-n)-1, 8-n)
	}
	return out
}

// TestIsGRPCContentType checks the content-type value match, raw and
// Huffman coded.
func TestIsGRPCContentType(t *testing.T) {
	huff := func(s string) []byte { return hpack.AppendHuffmanString(nil, s) }
	cut := huff("application/grpc") // ends on a byte boundary
	tests := []struct {
		name  string
		value []byte
		huff  bool
		want  bool
	}{
		{"raw", []byte("application/grpc"), false, true},
		{"raw proto", []byte("application/grpc+proto"), false, true},
		{"raw mixed case", []byte("Application/GRPC"), false, true},
		{"raw upper case proto", []byte("APPLICATION/GRPC+PROTO"), false, true},
		{"raw json", []byte("application/json"), false, false},
		{"raw short", []byte("application/grp"), false, false},
		{"raw empty", nil, false, false},
		{"raw control byte that |0x20 makes a slash", []byte("application\x0fgrpc"), false, false},
		{"raw at-sign not folded", []byte("application/grp@"), false, false},
		{"huffman", huff("application/grpc"), true, true},
		{"huffman proto", huff("application/grpc+proto"), true, true},
		{"huffman mixed case", huff("Application/GRPC"), true, true},
		{"huffman upper case proto", huff("APPLICATION/GRPC+PROTO"), true, true},
		{"huffman web", huff("application/grpc-web"), true, true},
		{"huffman json", huff("application/json"), true, false},
		{"huffman short", huff("application/grp"), true, false},
		{"huffman cut mid-symbol", cut[:len(cut)-1], true, false},
		{"huffman control byte that |0x20 makes a slash", huff("application\x0fgrpc"), true, false},
		{"huffman EOS for the last symbol", huffmanBits(t, "application/grp", true, ""), true, false},
		{"huffman EOS after the content type", huffmanBits(t, "application/grpc", true, ""), true, true},
		{"huffman mixed case by hand", huffmanBits(t, "aPPlication/gRpC+proto", false, ""), true, true},
		{"huffman empty", nil, true, false},
		{"raw bytes read as huffman", []byte("application/grpc"), true, false},
		{"huffman read as raw", huff("application/grpc"), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isGRPCContentType(tc.value, tc.huff); got != tc.want {
				t.Errorf("isGRPCContentType(%x, %v) = %v, want %v", tc.value, tc.huff, got, tc.want)
			}
		})
	}
}

// FuzzHuffmanPrefix checks the kernel's way of decoding against x/net's
// coder: what x/net decodes, huffmanPrefix decodes alike as far as it
// goes, and the code of any string decodes to its first symbols.
func FuzzHuffmanPrefix(f *testing.F) {
	for _, s := range []string{"application/grpc", "Application/GRPC+proto", "application/json", "", "\x00\xff\x0f", strings.Repeat("\xfe", 20)} {
		f.Add([]byte(s))
		f.Add(hpack.AppendHuffmanString(nil, s))
	}
	f.Add(huffmanBits(f, "application/grp", true, "c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out [len(grpcContentType)]byte
		ok := huffmanPrefix(b, out[:])
		if dec, err := hpack.HuffmanDecodeToString(b); err == nil {
			if want := len(dec) >= len(out); ok != want {
				t.Fatalf("huffmanPrefix(%x) = %v, x/net decodes %q", b, ok, dec)
			}
			if ok && string(out[:]) != dec[:len(out)] {
				t.Fatalf("huffmanPrefix(%x) = %q, x/net decodes %q", b, out, dec)
			}
		}
		enc := hpack.AppendHuffmanString(nil, string(b))
		if ok := huffmanPrefix(enc, out[:]); ok != (len(b) >= len(out)) || ok && !bytes.Equal(out[:], b[:len(out)]) {
			t.Fatalf("huffmanPrefix of the code of %x = %v %x", b, ok, out)
		}
	})
}

// FuzzDetect checks Detect never panics, is deterministic, and reads only
// what it is given.
func FuzzDetect(f *testing.F) {
	for _, s := range [][]byte{
		tlsClientHello(f), sshClientVersion(f), httpRequest(f), dnsQuery(f, false), dnsQuery(f, true),
		h2Request(f, "application/grpc"), h2Request(f, "application/json"), h2With(f, "application/grpc", h2Frame(0, nil)), unhex(f, pgStartup), unhex(f, pgSSL), unhex(f, mysqlGreeting),
		unhex(f, mongoHello), unhex(f, kafkaAPIVersions), []byte(redisPing), {}, {0x16, 3},
		h2Block(4, hpPost+hpPath+hpGRPC), h2Block(4, hpPost+hpNoteGRPC+hpJSON), h2Block(0, hpPost+hpPath),
		h2Block(4|8|0x20, "\x03"+"\x80\x00\x00\x03\x10"+hpPost+hpGRPC+"\x00\x00\x00"), h2Block(4, "\x3f\xe1\x1f"+hpContentRaw),
		h2Block(4, hpPost+"\x40\x89"+string(contentTypeHuffman)+"\x10application/grpc"), h2Block(4, hpPost+"\x7e\x10application/grpc"),
		h2Block(4, "\x0f\xff\xff\xff\xff\x01"+hpGRPC), h2Block(4, hpPost+"\x9f"), h2Block(8, "\xff"),
		h2Request(f, "Application/GRPC"), h2Request(f, "APPLICATION/GRPC+PROTO"), h2Block(4, hpPost+"\x5f\x10Application/GRPC"),
		h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "application/grpc")[:10])),
		h2Block(4, hpPost+hpHuffman(huffmanBits(f, "Application/GRP", true, "C"))),
		h2Block(4, hpPost+hpHuffman(hpack.AppendHuffmanString(nil, "application/json"))),
	} {
		f.Add(uint8(ProtoTCP), s, []byte{})
		f.Add(uint8(ProtoUDP), s, s)
		f.Add(uint8(ProtoTCP), []byte{}, s)
	}
	f.Fuzz(func(t *testing.T, proto uint8, client, server []byte) {
		c := append([]byte(nil), client...)
		s := append([]byte(nil), server...)
		got := Detect(Sample{Proto: proto, Client: client, Server: server})
		if again := Detect(Sample{Proto: proto, Client: client, Server: server}); again != got {
			t.Fatalf("Detect not deterministic: %q then %q", got, again)
		}
		if !bytes.Equal(c, client) || !bytes.Equal(s, server) {
			t.Fatalf("Detect modified its input")
		}
	})
}
