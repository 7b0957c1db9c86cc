package agentproto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleMessages() []Message {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	return []Message{
		&Enroll{Version: Version, Token: "tok", Node: "n1", PublicKeyPEM: []byte("pem")},
		&Enrolled{CertPEM: []byte("c"), CAPEM: []byte("ca")},
		&Refuse{Code: RefuseToken, Reason: "expired"},
		&Hello{Version: Version, Node: "n1", Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},
		&Table{Seq: 1, Table: json.RawMessage(`{"verdicts":[]}`), Version: Version},
		&Diff{Seq: 2, Diff: json.RawMessage(`{}`), Sent: 5},
		&Ack{Seq: 2},
		&Workloads{Workloads: []Workload{{ID: "shop/orders", Name: "orders", Namespace: "shop", Addresses: []netip.Addr{netip.MustParseAddr("10.231.1.2")}}}},
		&Flows{Flows: []Flow{{Client: netip.MustParseAddr("10.231.1.2"), Server: netip.MustParseAddr("10.231.2.2"), Proto: 6, Port: 80, App: "http", Mode: "discover", Flows: 3, FirstSeen: t0, LastSeen: t0}}},
		&Events{Events: []Event{{Time: t0, Kind: EventViolation, Action: "deny", Mode: "protect", Client: netip.MustParseAddr("10.231.2.2"), Server: netip.MustParseAddr("10.231.1.2"), Proto: 6, Port: 8080},
			{Time: t0, Kind: EventFileDenied, Action: "deny", Mode: "protect", Workload: "shop/orders", Path: "/etc/secret.conf", Rule: 12, Message: "denied"}}},
		&Processes{Processes: []Process{{Workload: "shop/orders", Path: "/usr/bin/sleep", Name: "sleep", Time: t0}}},
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	msgs := sampleMessages()
	for _, m := range msgs {
		if err := enc.Encode(m); err != nil {
			t.Fatalf("encode %s: %v", m.Type(), err)
		}
	}
	dec := NewDecoder(&buf, 0)
	for _, want := range msgs {
		got, err := dec.Decode()
		if err != nil {
			t.Fatalf("decode %s: %v", want.Type(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", want.Type(), got, want)
		}
	}
	if _, err := dec.Decode(); err != io.EOF {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := Encode(&Ack{Seq: 1})
	tests := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"short header", []byte{7, 0}, 0, ErrTruncated},
		{"short payload", good[:len(good)-1], 0, ErrTruncated},
		{"too large", good, 3, ErrFrameTooLarge},
		{"unknown type", append([]byte{99}, good[1:]...), 0, ErrUnknownType},
		{"bad json", []byte{byte(TypeAck), 0, 0, 0, 1, '{'}, 0, ErrMalformed},
		{"missing field", []byte{byte(TypeHello), 0, 0, 0, 2, '{', '}'}, 0, ErrMalformed},
		{"process without workload", frame(TypeProcesses, `{"processes":[{"path":"/bin/sh"}]}`), 0, ErrMalformed},
		{"relative process path", frame(TypeProcesses, `{"processes":[{"workload":"w","path":"sh"}]}`), 0, ErrMalformed},
		{"process path with NUL", frame(TypeProcesses, `{"processes":[{"workload":"w","path":"/bin/s\u0000h"}]}`), 0, ErrMalformed},
		{"long process path", frame(TypeProcesses, `{"processes":[{"workload":"w","path":"/`+strings.Repeat("a", MaxPathLen)+`"}]}`), 0, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Decode(tc.in, tc.max)
			if !errors.Is(err, tc.want) {
				t.Errorf("Decode: got %v, want %v", err, tc.want)
			}
			_, err = NewDecoder(bytes.NewReader(tc.in), tc.max).Decode()
			if !errors.Is(err, tc.want) {
				t.Errorf("Decoder.Decode: got %v, want %v", err, tc.want)
			}
		})
	}
}

// frame builds a frame of type t around a raw payload.
func frame(t Type, payload string) []byte {
	b := []byte{byte(t), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{byte(TypeFlows), 0, 0, 0, 4, 'n', 'u', 'l', 'l'})
	f.Add(frame(TypeProcesses, `{"processes":[{"workload":"w","path":"/bin/../sh"}]}`))
	f.Add(frame(TypeProcesses, `{"processes":null}`))
	f.Add(frame(TypeTable, `{"seq":1,"table":{},"version":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := Decode(b, 1<<16)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, _, err := Decode(again, 0)
		if err != nil {
			t.Fatalf("decode re-encoded %s: %v", m.Type(), err)
		}
		if m2.Type() != m.Type() {
			t.Fatalf("type changed: %s -> %s", m.Type(), m2.Type())
		}
	})
}
