// Package fedproto is the federation wire protocol between a primary and its
// remotes: message types, framing and the protocol version. It holds no
// transport code; the packages that dial and listen own the QUIC streams and
// use an Encoder and a Decoder on them.
//
// A frame is a type byte, a 4-byte big-endian payload length and the payload
// (JSON of the message). The length is capped by the decoder (DefaultMaxFrame
// unless configured), so a peer cannot make the other side allocate without
// bound.
package fedproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// HeaderSize is the size of a frame header: type byte and payload length.
const HeaderSize = 5

// DefaultMaxFrame is the default largest payload a Decoder accepts.
const DefaultMaxFrame = 16 << 20

// Framing errors.
var (
	// ErrFrameTooLarge: the header announces a payload above the limit.
	ErrFrameTooLarge = errors.New("fedproto: frame too large")
	// ErrTruncated: the stream ended inside a frame.
	ErrTruncated = errors.New("fedproto: truncated frame")
	// ErrUnknownType: the type byte is not a message type of this version.
	ErrUnknownType = errors.New("fedproto: unknown message type")
)

// Frame is one framed message before payload decoding.
type Frame struct {
	Type    Type
	Payload []byte
}

// AppendFrame appends the encoding of f to b.
func AppendFrame(b []byte, f Frame) []byte {
	b = append(b, byte(f.Type))
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Payload)))
	return append(b, f.Payload...)
}

// Encode returns the wire encoding of a message.
func Encode(m Message) ([]byte, error) {
	f, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	return AppendFrame(make([]byte, 0, HeaderSize+len(f.Payload)), f), nil
}

// DecodeFrame decodes the first frame in b and returns it with the number
// of bytes it used. It never panics on any input.
func DecodeFrame(b []byte, maxFrame int) (Frame, int, error) {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	if len(b) < HeaderSize {
		return Frame{}, 0, fmt.Errorf("%w: header needs %d bytes, have %d", ErrTruncated, HeaderSize, len(b))
	}
	t := Type(b[0])
	n := binary.BigEndian.Uint32(b[1:HeaderSize])
	if !t.Known() {
		return Frame{}, 0, fmt.Errorf("%w: %d", ErrUnknownType, byte(t))
	}
	if uint64(n) > uint64(maxFrame) {
		return Frame{}, 0, fmt.Errorf("%w: %s payload of %d bytes, limit %d", ErrFrameTooLarge, t, n, maxFrame)
	}
	end := HeaderSize + int(n)
	if len(b) < end {
		return Frame{}, 0, fmt.Errorf("%w: %s payload needs %d bytes, have %d", ErrTruncated, t, n, len(b)-HeaderSize)
	}
	return Frame{Type: t, Payload: b[HeaderSize:end:end]}, end, nil
}

// Encoder writes framed messages to a stream. It is safe for concurrent use:
// each message is written whole.
type Encoder struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Encode writes one message.
func (e *Encoder) Encode(m Message) error {
	f, err := Marshal(m)
	if err != nil {
		return err
	}
	return e.WriteFrame(f)
}

// WriteFrame writes one already-marshalled frame.
func (e *Encoder) WriteFrame(f Frame) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = AppendFrame(e.buf[:0], f)
	_, err := e.w.Write(e.buf)
	if cap(e.buf) > 64<<10 {
		e.buf = nil // do not pin a large snapshot chunk
	}
	if err != nil {
		return fmt.Errorf("write %s frame: %w", f.Type, err)
	}
	return nil
}

// Decoder reads framed messages from a stream. It is not safe for
// concurrent use.
type Decoder struct {
	r        *bufio.Reader
	maxFrame int
}

// NewDecoder returns a Decoder reading from r that refuses payloads larger
// than maxFrame bytes (DefaultMaxFrame when maxFrame <= 0).
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Decoder{r: bufio.NewReaderSize(r, 4<<10), maxFrame: maxFrame}
}

// ReadFrame reads one frame. At a clean end of stream between frames it
// returns io.EOF; inside a frame, ErrTruncated.
func (d *Decoder) ReadFrame() (Frame, error) {
	var hdr [HeaderSize]byte
	n, err := io.ReadFull(d.r, hdr[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return Frame{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, fmt.Errorf("%w: header cut after %d bytes", ErrTruncated, n)
		}
		return Frame{}, fmt.Errorf("read frame header: %w", err)
	}
	t := Type(hdr[0])
	size := binary.BigEndian.Uint32(hdr[1:])
	if !t.Known() {
		return Frame{}, fmt.Errorf("%w: %d", ErrUnknownType, byte(t))
	}
	if uint64(size) > uint64(d.maxFrame) {
		return Frame{}, fmt.Errorf("%w: %s payload of %d bytes, limit %d", ErrFrameTooLarge, t, size, d.maxFrame)
	}
	// Grow the payload as bytes arrive rather than trusting the header, so
	// a peer announcing a large frame and sending nothing costs little.
	const step = 64 << 10
	payload := make([]byte, 0, min(int(size), step))
	for len(payload) < int(size) {
		want := min(int(size)-len(payload), step)
		if cap(payload)-len(payload) < want {
			payload = append(payload, make([]byte, want)...)[:len(payload)]
		}
		n, err := io.ReadFull(d.r, payload[len(payload):len(payload)+want])
		payload = payload[:len(payload)+n]
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return Frame{}, fmt.Errorf("%w: %s payload cut at %d of %d bytes", ErrTruncated, t, len(payload), size)
			}
			return Frame{}, fmt.Errorf("read %s payload: %w", t, err)
		}
	}
	return Frame{Type: t, Payload: payload}, nil
}

// ReadMessage reads and decodes one message.
func (d *Decoder) ReadMessage() (Message, error) {
	f, err := d.ReadFrame()
	if err != nil {
		return nil, err
	}
	return Unmarshal(f)
}
