package policy

import (
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    string // FormatPorts of the result
		wantErr string
	}{
		{in: "", want: "any"},
		{in: "any", want: "any"},
		{in: "ANY", want: "any"},
		{in: "tcp/80", want: "tcp/80"},
		{in: "udp/53", want: "udp/53"},
		{in: "tcp/8000-8100", want: "tcp/8000-8100"},
		{in: "tcp/80, udp/53 ,tcp/80", want: "tcp/80,udp/53"},
		{in: "tcp", want: "tcp"},
		{in: "tcp/any", want: "tcp"},
		{in: "443", want: "443"},
		{in: "icmp", want: "icmp"},
		{in: "icmpv6", want: "icmpv6"},
		{in: "tcp/0-1023", want: "tcp/0-1023"},
		{in: "tcp/65535", want: "tcp/65535"},
		{in: "tcp/99999", wantErr: `"tcp/99999" is out of range`},
		{in: "tcp/65536", wantErr: `"tcp/65536" is out of range`},
		{in: "tcp/123456789", wantErr: `"tcp/123456789" is out of range`},
		{in: "tcp/0", wantErr: `port 0 is not a port`},
		{in: "0-0", wantErr: `port 0 is not a port`},
		{in: "tcp/90-80", wantErr: `range ends before it starts`},
		{in: "sctp/80", wantErr: `unknown protocol "sctp"`},
		{in: "icmp/8", wantErr: `icmp has no ports`},
		{in: "tcp/", wantErr: `missing port number`},
		{in: "tcp/8a", wantErr: `"8a" is not a port number`},
		{in: "tcp/-5", wantErr: `missing port number`},
		{in: "tcp/80,,udp/53", wantErr: `empty item`},
		{in: "tcp/+80", wantErr: `is not a port number`},
		{in: strings.Repeat("tcp/1,", 300) + "tcp/2", wantErr: `items (limit 256)`},
		{in: strings.Repeat("x", 5000), wantErr: `bytes long`},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePorts(%.40q) error = %v, want containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePorts(%q) error: %v", tt.in, err)
			continue
		}
		if s := FormatPorts(got); s != tt.want {
			t.Errorf("ParsePorts(%q) = %s, want %s", tt.in, s, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		spec  string
		proto uint8
		port  uint16
		want  bool
	}{
		{"any", ProtoTCP, 80, true},
		{"any", ProtoICMP, 0, true},
		{"tcp/80", ProtoTCP, 80, true},
		{"tcp/80", ProtoUDP, 80, false},
		{"tcp/80", ProtoTCP, 81, false},
		{"tcp/8000-8100", ProtoTCP, 8050, true},
		{"tcp/8000-8100", ProtoTCP, 8101, false},
		{"443", ProtoUDP, 443, true},
		{"443", ProtoICMP, 0, false},
		{"tcp", ProtoTCP, 1, true},
		{"icmp", ProtoICMP, 0, true},
		{"icmp", ProtoICMPv6, 0, false},
	}
	for _, tt := range tests {
		rs, err := ParsePorts(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := Covers(rs, tt.proto, tt.port); got != tt.want {
			t.Errorf("Covers(%q, %d, %d) = %v, want %v", tt.spec, tt.proto, tt.port, got, tt.want)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"any", "tcp/80", "udp/53,tcp/8000-8100", "icmp", "443", "tcp/99999", "tcp/-", ",", "tcp/1-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParsePorts(s)
		if err != nil {
			return
		}
		// The canonical form parses back to the same ranges.
		again, err := ParsePorts(FormatPorts(rs))
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", FormatPorts(rs), s, err)
		}
		if FormatPorts(again) != FormatPorts(rs) {
			t.Fatalf("round trip of %q: %q != %q", s, FormatPorts(again), FormatPorts(rs))
		}
		for _, r := range rs {
			if r.Lo > r.Hi {
				t.Fatalf("range %v ends before it starts", r)
			}
		}
	})
}
