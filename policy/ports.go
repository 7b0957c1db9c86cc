package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// IP protocol numbers used in port ranges and compiled verdicts.
const (
	ProtoAny    uint8 = 0
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// Limits on port specs, so that hostile input stays small.
const (
	maxPortSpecLen   = 4096
	maxPortSpecItems = 256
)

// PortRange is a protocol and an inclusive port range. Lo 0 and Hi 65535
// is every port; ICMP ranges are always 0-65535 (ICMP has no ports).
type PortRange struct {
	Proto uint8  `json:"proto"`
	Lo    uint16 `json:"lo"`
	Hi    uint16 `json:"hi"`
}

// AllPorts reports whether r covers every port.
func (r PortRange) AllPorts() bool { return r.Lo == 0 && r.Hi == 65535 }

// String renders r the way [ParsePorts] reads it ("tcp/80", "udp/1-9", "any").
func (r PortRange) String() string {
	name := ProtoName(r.Proto)
	switch {
	case r.AllPorts() && r.Proto == ProtoAny:
		return "any"
	case r.AllPorts():
		return name
	}
	p := strconv.Itoa(int(r.Lo))
	if r.Hi != r.Lo {
		p += "-" + strconv.Itoa(int(r.Hi))
	}
	if r.Proto == ProtoAny {
		return p
	}
	return name + "/" + p
}

// ProtoName returns the name of an IP protocol number ("tcp"), or the
// number itself.
func ProtoName(p uint8) string {
	switch p {
	case ProtoAny:
		return "any"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}

func parseProto(s string) (uint8, bool) {
	switch strings.ToLower(s) {
	case "tcp":
		return ProtoTCP, true
	case "udp":
		return ProtoUDP, true
	case "icmp":
		return ProtoICMP, true
	case "icmpv6", "icmp6":
		return ProtoICMPv6, true
	case "any":
		return ProtoAny, true
	}
	return 0, false
}

// ParsePorts reads a port spec: "any" (or empty), or a comma-separated list
// of items such as "tcp/80", "udp/53", "tcp/8000-8100", "tcp" (every TCP
// port), "tcp/any", "icmp", or a bare "443" (that port on any protocol). The
// result is sorted and free of duplicates.
func ParsePorts(s string) ([]PortRange, error) {
	if len(s) > maxPortSpecLen {
		return nil, fmt.Errorf("%w: spec is %d bytes long (limit %d)", ErrBadPorts, len(s), maxPortSpecLen)
	}
	s = strings.TrimSpace(s)
	if s == "" || strings.EqualFold(s, "any") {
		return []PortRange{{Proto: ProtoAny, Lo: 0, Hi: 65535}}, nil
	}
	items := strings.Split(s, ",")
	if len(items) > maxPortSpecItems {
		return nil, fmt.Errorf("%w: %d items (limit %d)", ErrBadPorts, len(items), maxPortSpecItems)
	}
	out := make([]PortRange, 0, len(items))
	for _, it := range items {
		r, err := parsePortItem(strings.TrimSpace(it))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, comparePortRange)
	return slices.Compact(out), nil
}

func comparePortRange(a, b PortRange) int {
	if a.Proto != b.Proto {
		return int(a.Proto) - int(b.Proto)
	}
	if a.Lo != b.Lo {
		return int(a.Lo) - int(b.Lo)
	}
	return int(a.Hi) - int(b.Hi)
}

func parsePortItem(it string) (PortRange, error) {
	if it == "" {
		return PortRange{}, fmt.Errorf("%w: empty item", ErrBadPorts)
	}
	proto, ports, hasSlash := strings.Cut(it, "/")
	if !hasSlash {
		if p, ok := parseProto(it); ok {
			if p == ProtoAny {
				return PortRange{Proto: ProtoAny, Lo: 0, Hi: 65535}, nil
			}
			return PortRange{Proto: p, Lo: 0, Hi: 65535}, nil
		}
		proto, ports = "any", it
	}
	p, ok := parseProto(proto)
	if !ok {
		return PortRange{}, fmt.Errorf("%w: %q has unknown protocol %q (want tcp, udp, icmp, icmpv6 or any)", ErrBadPorts, it, proto)
	}
	if p == ProtoICMP || p == ProtoICMPv6 {
		if !strings.EqualFold(ports, "any") {
			return PortRange{}, fmt.Errorf("%w: %q: %s has no ports", ErrBadPorts, it, ProtoName(p))
		}
		return PortRange{Proto: p, Lo: 0, Hi: 65535}, nil
	}
	if strings.EqualFold(ports, "any") {
		return PortRange{Proto: p, Lo: 0, Hi: 65535}, nil
	}
	loS, hiS, isRange := strings.Cut(ports, "-")
	lo, err := parsePort(it, loS)
	if err != nil {
		return PortRange{}, err
	}
	hi := lo
	if isRange {
		if hi, err = parsePort(it, hiS); err != nil {
			return PortRange{}, err
		}
		if hi < lo {
			return PortRange{}, fmt.Errorf("%w: %q: range ends before it starts", ErrBadPorts, it)
		}
		if hi == 0 {
			return PortRange{}, fmt.Errorf("%w: %q: port 0 is not a port", ErrBadPorts, it)
		}
	} else if lo == 0 {
		return PortRange{}, fmt.Errorf("%w: %q: port 0 is not a port", ErrBadPorts, it)
	}
	return PortRange{Proto: p, Lo: uint16(lo), Hi: uint16(hi)}, nil
}

func parsePort(item, s string) (int, error) {
	if s == "" || len(s) > 6 {
		if s == "" {
			return 0, fmt.Errorf("%w: %q: missing port number", ErrBadPorts, item)
		}
		return 0, fmt.Errorf("%w: %q is out of range", ErrBadPorts, item)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q: %q is not a port number", ErrBadPorts, item, s)
		}
	}
	n, _ := strconv.Atoi(s)
	if n > 65535 {
		return 0, fmt.Errorf("%w: %q is out of range", ErrBadPorts, item)
	}
	return n, nil
}

// FormatPorts renders ranges as a canonical port spec.
func FormatPorts(rs []PortRange) string {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, comparePortRange)
	rs = slices.Compact(rs)
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, ",")
}

// Covers reports whether the ranges rs cover protocol proto and port.
// A range for any protocol with every port covers ICMP too; a range for any
// protocol with specific ports covers only protocols that have ports.
func Covers(rs []PortRange, proto uint8, port uint16) bool {
	for _, r := range rs {
		if r.Proto != ProtoAny && r.Proto != proto {
			continue
		}
		if r.AllPorts() {
			return true
		}
		if proto == ProtoICMP || proto == ProtoICMPv6 {
			continue
		}
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}
