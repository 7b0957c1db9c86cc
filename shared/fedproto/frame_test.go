package fedproto

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func allMessages() []Message {
	return []Message{
		&Hello{Version: Version{1, 0}, Cluster: "east", Labels: map[string]string{"env": "prod"}, Applied: 42},
		&Welcome{Version: Version{1, 0}, Primary: "hub"},
		&Refuse{Code: RefuseVersion, Reason: "too old"},
		&JoinRequest{Token: "pal1.x.y", Name: "east", PublicKeyPEM: []byte("-----BEGIN PUBLIC KEY-----\n")},
		&JoinResponse{CertPEM: []byte("c"), CAPEM: []byte("ca"), Name: "east"},
		&Delta{Revision: 7, Ops: []Op{{Kind: OpPut, Key: "fed/rules/a", Value: []byte{0, 1, 2}}, {Kind: OpDelete, Key: "fed/rules/b"}}},
		&Snapshot{Revision: 9, Seq: 2, Last: true, Objects: []Object{{Key: "k", Value: []byte("v")}}},
		&Ack{Revision: 9, Healthy: false, Error: "apply: boom"},
		&Dismiss{Reason: DismissKicked},
		&Ping{Nonce: 3},
		&Pong{Nonce: 3},
		&Request{Method: "GET", Path: "/v1/rules", Header: map[string][]string{"Accept": {"application/json"}}},
		&Response{Status: 200, Body: []byte("[]")},
		&Leave{Cluster: "east"},
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	msgs := allMessages()
	for _, m := range msgs {
		if err := enc.Encode(m); err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
	}
	dec := NewDecoder(&buf, 0)
	for _, want := range msgs {
		got, err := dec.ReadMessage()
		if err != nil {
			t.Fatalf("decode %T: %v", want, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip %s: got %+v, want %+v", want.Type(), got, want)
		}
	}
	if _, err := dec.ReadFrame(); err != io.EOF {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

func TestFrameErrors(t *testing.T) {
	good, err := Encode(&Ping{Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		in       []byte
		maxFrame int
		want     error
	}{
		{"truncated header", good[:3], 0, ErrTruncated},
		{"truncated payload", good[:len(good)-1], 0, ErrTruncated},
		{"oversized", []byte{byte(TypeDelta), 0x01, 0, 0, 0}, 1 << 20, ErrFrameTooLarge},
		{"oversized by default limit", []byte{byte(TypeDelta), 0xff, 0xff, 0xff, 0xff}, 0, ErrFrameTooLarge},
		{"unknown type", []byte{0xee, 0, 0, 0, 2, '{', '}'}, 0, ErrUnknownType},
		{"type zero", []byte{0, 0, 0, 0, 0}, 0, ErrUnknownType},
		{"garbage payload", []byte{byte(TypeHello), 0, 0, 0, 3, 'x', 'y', 'z'}, 0, ErrMalformed},
		{"delta without revision", frameOf(TypeDelta, `{"ops":[]}`), 0, ErrMalformed},
		{"delta with bad op", frameOf(TypeDelta, `{"revision":1,"ops":[{"kind":"zap","key":"k"}]}`), 0, ErrMalformed},
		{"dismiss with bad reason", frameOf(TypeDismiss, `{"reason":"bored"}`), 0, ErrMalformed},
		{"request with relative path", frameOf(TypeRequest, `{"method":"GET","path":"x"}`), 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDecoder(bytes.NewReader(tt.in), tt.maxFrame).ReadMessage()
			if !errors.Is(err, tt.want) {
				t.Fatalf("stream decoder: got %v, want %v", err, tt.want)
			}
			f, _, err := DecodeFrame(tt.in, tt.maxFrame)
			if err == nil {
				_, err = Unmarshal(f)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeFrame: got %v, want %v", err, tt.want)
			}
		})
	}
}

func frameOf(t Type, payload string) []byte {
	return AppendFrame(nil, Frame{Type: t, Payload: []byte(payload)})
}

func TestOversizedErrorNamesSizes(t *testing.T) {
	_, err := NewDecoder(bytes.NewReader([]byte{byte(TypeSnapshot), 0, 0x10, 0, 1}), 1024).ReadFrame()
	if err == nil || !strings.Contains(err.Error(), "1048577") || !strings.Contains(err.Error(), "1024") {
		t.Fatalf("got %v, want an error naming size 1048577 and limit 1024", err)
	}
}

func TestCompatible(t *testing.T) {
	server := Version{Major: 2, Minor: 3}
	tests := []struct {
		remote Version
		ok     bool
		word   string
	}{
		{Version{2, 3}, true, ""},
		{Version{2, 2}, true, ""},
		{Version{2, 1}, false, "too old"},
		{Version{1, 9}, false, "too old"},
		{Version{2, 4}, false, "too new"},
		{Version{3, 0}, false, "too new"},
	}
	for _, tt := range tests {
		err := Compatible(server, tt.remote)
		if (err == nil) != tt.ok {
			t.Fatalf("Compatible(%s, %s) = %v, want ok=%v", server, tt.remote, err, tt.ok)
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrVersionSkew) {
			t.Errorf("Compatible(%s, %s) = %v, want ErrVersionSkew", server, tt.remote, err)
		}
		for _, s := range []string{server.String(), tt.remote.String(), tt.word} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Compatible(%s, %s) = %q, want it to mention %q", server, tt.remote, err, s)
			}
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, m := range allMessages() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{byte(TypeDelta), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(TypeHello), 0, 0, 0, 1, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		dec := NewDecoder(bytes.NewReader(b), 1<<16)
		for i := 0; i < 64; i++ {
			fr, err := dec.ReadFrame()
			if err != nil {
				break
			}
			if len(fr.Payload) > 1<<16 {
				t.Fatalf("payload of %d bytes passed a 64 KiB limit", len(fr.Payload))
			}
			m, err := Unmarshal(fr)
			if err != nil {
				continue
			}
			// Whatever decodes must encode back to something that decodes.
			again, err := Encode(m)
			if err != nil {
				t.Fatalf("re-encode %T: %v", m, err)
			}
			if _, _, err := DecodeFrame(again, 0); err != nil {
				t.Fatalf("decode re-encoded %T: %v", m, err)
			}
		}
		if fr, n, err := DecodeFrame(b, 1<<16); err == nil && (n < HeaderSize || n > len(b) || len(fr.Payload) != n-HeaderSize) {
			t.Fatalf("DecodeFrame used %d bytes of %d for payload %d", n, len(b), len(fr.Payload))
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, m := range allMessages() {
		fr, err := Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(fr.Type), fr.Payload)
	}
	f.Add(byte(TypeDelta), []byte(`{"revision":1,"ops":[{"kind":"put"}]}`))
	f.Add(byte(200), []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ byte, payload []byte) {
		m, err := Unmarshal(Frame{Type: Type(typ), Payload: payload})
		if err == nil && m.Type() != Type(typ) {
			t.Fatalf("type %d decoded into %T", typ, m)
		}
	})
}

func TestLargeFrameRoundTrip(t *testing.T) {
	big := &Snapshot{Revision: 1, Last: true, Objects: []Object{{Key: "k", Value: bytes.Repeat([]byte{7}, 300<<10)}}}
	var buf bytes.Buffer
	if err := NewEncoder(&buf).Encode(big); err != nil {
		t.Fatal(err)
	}
	got, err := NewDecoder(&buf, 0).ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, big) {
		t.Fatal("300 KiB snapshot did not round-trip")
	}
	wire, _ := Encode(big)
	_, err = NewDecoder(bytes.NewReader(wire[:len(wire)-10]), 0).ReadFrame()
	if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "cut at") {
		t.Fatalf("cut large frame: got %v, want ErrTruncated", err)
	}
}
