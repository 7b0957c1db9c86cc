//go:build linux

package datapath

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" for none
	}{
		{"default", func(*Config) {}, ""},
		{"sweeper off", func(c *Config) { c.SweepInterval = 0 }, ""},
		{"negative sweep interval", func(c *Config) { c.SweepInterval = -time.Second }, "SweepInterval"},
		{"zero established timeout", func(c *Config) { c.Timeouts.TCPEstablished = 0 }, "Timeouts.TCPEstablished"},
		{"negative udp timeout", func(c *Config) { c.Timeouts.UDP = -1 }, "Timeouts.UDP"},
		{"relative pin dir", func(c *Config) { c.PinDir = "bpf" }, "PinDir"},
		{"no conntrack room", func(c *Config) { c.ConntrackMaxEntries = 0 }, "ConntrackMaxEntries"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestTimeoutsByState(t *testing.T) {
	to := DefaultTimeouts()
	got := to.byState()
	for _, s := range []ConnState{ConnOther, ConnUDP, ConnTCPSyn, ConnTCPEstablished, ConnTCPHalfClosed, ConnTCPClosed, ConnDenied} {
		if time.Duration(got[s]) != to.timeout(s) {
			t.Errorf("state %s: programs get %s, sweeper uses %s", s, time.Duration(got[s]), to.timeout(s))
		}
	}
}

func TestParseApp(t *testing.T) {
	tests := []struct {
		in   string
		want App
		ok   bool
	}{
		{"HTTP", AppHTTP, true}, {"http2", AppHTTP2, true}, {"TLS", AppTLS, true}, {"ssl", AppTLS, true},
		{"SSH", AppSSH, true}, {" Redis ", AppRedis, true}, {"gRPC", AppGRPC, true}, {"DNS", AppDNS, true},
		{"PostgreSQL", AppPostgres, true}, {"postgres", AppPostgres, true}, {"MySQL", AppMySQL, true},
		{"mongodb", AppMongoDB, true}, {"kafka", AppKafka, true}, {"none", AppNone, false}, {"smtp", AppNone, false},
		{"", AppNone, false},
	}
	for _, tc := range tests {
		got, ok := ParseApp(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseApp(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
