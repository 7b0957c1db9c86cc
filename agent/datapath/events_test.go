package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/palisade-sec/palisade/agent/bpf"
)

func TestDecodeFlowEvent(t *testing.T) {
	raw := bpf.DatapathFlowEvent{
		Endpoint: 7, SrcId: 100, DstId: 200, RuleId: 3, Sport: 40000, Dport: 443,
		Proto: 6, Family: 4, Dir: 1, Kind: 3, Action: 1, Mode: 2, Flags: flagReply | flagViolation,
		PayloadLen: 3, App: uint8(bpf.DatapathAppAPP_GRPC),
	}
	copy(raw.Saddr[:], netip.MustParseAddr("::ffff:10.0.0.1").AsSlice())
	copy(raw.Daddr[:], netip.MustParseAddr("::ffff:10.0.0.2").AsSlice())
	copy(raw.Payload[:], "abc")
	buf, err := binary.Append(nil, binary.LittleEndian, &raw)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	got, err := DecodeFlowEvent(buf)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if got.SrcAddr != netip.MustParseAddr("10.0.0.1") || got.DstAddr != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("addresses %s -> %s", got.SrcAddr, got.DstAddr)
	}
	if got.Kind != EventSample || got.Src != 100 || got.Dst != 200 || got.RuleID != 3 || got.Mode != ModeProtect ||
		got.Dir != DirOut || !got.Reply || !got.Violation || got.Dropped || string(got.Payload) != "abc" ||
		got.App != AppGRPC || got.App.String() != "grpc" {
		t.Errorf("decoded %+v", got)
	}
	if _, err := DecodeFlowEvent(buf[:10]); err == nil {
		t.Errorf("short record decoded without error")
	}
	raw.PayloadLen = 9999
	buf, _ = binary.Append(nil, binary.LittleEndian, &raw)
	if got, err := DecodeFlowEvent(buf); err != nil || len(got.Payload) != 128 {
		t.Errorf("oversized payload length: %d bytes, err %v", len(got.Payload), err)
	}
}

// TestAppsMatchKernel checks the applications against the programs' enum.
func TestAppsMatchKernel(t *testing.T) {
	for _, c := range []struct {
		app    App
		kernel bpf.DatapathApp
	}{
		{AppNone, bpf.DatapathAppAPP_NONE}, {AppHTTP, bpf.DatapathAppAPP_HTTP}, {AppHTTP2, bpf.DatapathAppAPP_HTTP2},
		{AppTLS, bpf.DatapathAppAPP_TLS}, {AppSSH, bpf.DatapathAppAPP_SSH}, {AppRedis, bpf.DatapathAppAPP_REDIS},
		{AppDNS, bpf.DatapathAppAPP_DNS}, {AppPostgres, bpf.DatapathAppAPP_POSTGRES}, {AppMySQL, bpf.DatapathAppAPP_MYSQL},
		{AppMongoDB, bpf.DatapathAppAPP_MONGODB}, {AppKafka, bpf.DatapathAppAPP_KAFKA}, {AppGRPC, bpf.DatapathAppAPP_GRPC},
	} {
		if uint32(c.app) != uint32(c.kernel) {
			t.Errorf("%s is %d, the programs' %d", c.app, c.app, c.kernel)
		}
	}
	var v bpf.DatapathPolicyValue
	if got, want := len(v.AppRule), int(appMax)+1; got != want {
		t.Errorf("policy value has %d application slots, want %d", got, want)
	}
}
