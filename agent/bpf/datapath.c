//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Palisade node datapath: identity-based L3/L4 enforcement for one node.
 *
 * The same core runs from four entry points: tcx ingress/egress on the host
 * side of a workload's veth, and cgroup_skb ingress/egress on a workload's
 * cgroup. Per packet:
 *
 *   parse (IPv4 with options, IPv6 with extension headers, fragments)
 *   -> connection tracking (LRU hash, keyed by endpoint, direction, 5-tuple):
 *      a hit whose policy generation is current passes on that one lookup;
 *      entries carry a TCP state (SYN, established, half closed, closed)
 *      and expire after an idle timeout that depends on it, checked on
 *      lookup with the coarse monotonic clock (a sweeper in user space
 *      removes expired entries nobody looks up); a SYN is always decided
 *      afresh, so a new connection on the 5-tuple of an old one meets the
 *      current policy
 *   -> otherwise: endpoint (ifindex or cgroup) -> identity and mode,
 *      remote address -> identity (LPM trie), policy LPM trie keyed by
 *      (client identity, server identity, protocol, server port prefix),
 *      decision by mode, ring buffer event, conntrack entries for both
 *      directions.
 *   -> application rules: when the policy entry says some applications are
 *      decided otherwise than the port, a TCP or UDP flow is admitted
 *      pending and its first payload packet (either direction) is
 *      classified here; the flow is then confirmed, or reported and
 *      (Protect) dropped for good. HTTP/2 whose policy tells gRPC apart
 *      stays pending past the preface: the client's next frames are walked
 *      up to the first HEADERS frame, whose header block is read field by
 *      field (HPACK): a content-type field naming application/grpc in
 *      any ASCII case, raw or Huffman coded (decoded in the kernel), makes
 *      it gRPC, the whole block without one HTTP/2 (a gRPC server takes
 *      any of several content-type fields); a block that packet cannot
 *      decide names no application (the port's own action decides).
 *
 * Unparseable packets are never let through in Protect mode.
 */
#include "common.h"
#include <linux/if_ether.h>
#include <linux/in.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define TCX_NEXT (-1)
#define TCX_DROP 2

#define PAYLOAD_MAX 128
#define CLASSIFY_MAX 128 /* payload bytes the classifier reads: a sample's worth */
#define APP_SLOTS 16
#define APP_UNCLASSIFIED 0xff
#define APP_WAIT 0xfe /* classifier: the server spoke first, the client's bytes decide */
#define APP_RETRY 0xfc /* classifier: busy on this CPU, judge a later packet */

/* The HTTP/2 frame walk that tells gRPC from other HTTP/2. */
#define H2_PREFACE_LEN 24
#define H2_WALK_PACKETS 8 /* client payload packets after the preface packet; the last decides */
#define H2_WALK_FRAMES 4  /* frames per packet */
#define H2_MORE 0xfd	  /* walk result: control frames only, next boundary in bits 8.. */
#define WALK_SERVER 0x80  /* ct_entry.walk of the reply entry: pass, the client decides */
#define IPV6_EXT_MAX 6

/* Direction relative to the workload. */
#define DIR_IN 0  /* towards the workload */
#define DIR_OUT 1 /* from the workload */

enum mode {
	MODE_DISCOVER = 0, /* also the mode of an identity with no entry */
	MODE_MONITOR = 1,
	MODE_PROTECT = 2,
};

enum action {
	ACTION_NONE = 0, /* no entry matched */
	ACTION_ALLOW = 1,
	ACTION_DENY = 2,
};

/* Applications the classifier names, agent/appdetect's. */
enum app {
	APP_NONE = 0, /* classified: none of those below */
	APP_HTTP = 1,
	APP_HTTP2 = 2,
	APP_TLS = 3,
	APP_SSH = 4,
	APP_REDIS = 5,
	APP_DNS = 6,
	APP_POSTGRES = 7,
	APP_MYSQL = 8,
	APP_MONGODB = 9,
	APP_KAFKA = 10,
	APP_GRPC = 11,
};

/* Connection states; each has its own idle timeout in dp_config. */
enum ct_state {
	CT_OTHER = 0, /* neither TCP nor UDP */
	CT_UDP = 1,
	CT_TCP_SYN = 2,	       /* SYN seen, no reply yet */
	CT_TCP_ESTABLISHED = 3,
	CT_TCP_HALF_CLOSED = 4, /* FIN from one side */
	CT_TCP_CLOSED = 5,      /* FIN from both sides, or RST */
	CT_DENIED = 6,	       /* application check failed in Protect: drop until expiry */
	CT_STATE_MAX = 8,
};

#define FIN_CLIENT 0x1
#define FIN_SERVER 0x2

enum event_kind {
	EVENT_NEW_FLOW = 1,  /* Discover: every new flow */
	EVENT_VIOLATION = 2, /* Monitor and Protect: a flow the policy does not allow */
	EVENT_SAMPLE = 3,    /* first payload bytes of one direction of a flow */
	EVENT_MALFORMED = 4, /* a packet that could not be parsed */
};

enum counter {
	COUNTER_CT_PASS = 0,
	COUNTER_NEW_ALLOW,
	COUNTER_DISCOVER_PASS,
	COUNTER_MONITOR_PASS,
	COUNTER_PROTECT_DROP,
	COUNTER_MALFORMED_PASS,
	COUNTER_MALFORMED_DROP,
	COUNTER_NO_ENDPOINT,
	COUNTER_NON_IP,
	COUNTER_ND_PASS,
	COUNTER_FRAG_UNKNOWN,
	COUNTER_REVALIDATED,
	COUNTER_EVENTS_LOST,
	COUNTER_CT_EXPIRED,
	COUNTER_APP_ALLOWED,
	COUNTER_APP_VIOLATION,
	COUNTER_LOCAL_REDIRECT, /* delivered straight into a workload of this node */
	COUNTER_MAX,
};

/* Flags in ct_entry.flags and flow_event.flags. */
#define FLAG_REPLY 0x1     /* packet goes from server to client */
#define FLAG_VIOLATION 0x2 /* flow allowed only because of Discover/Monitor */
#define FLAG_DROPPED 0x4   /* packet was dropped */
#define FLAG_FRAGMENT 0x8  /* packet is a non-first fragment */
#define FLAG_PENDING 0x10  /* admitted until its application is classified */
#define FLAG_MIDSTREAM 0x20 /* conntrack only: entry created from a packet past the handshake */
#define FLAG_CLASSIFIED 0x40 /* conntrack only: app holds the classifier's answer */
#define FLAG_SEQ 0x80 /* conntrack only: seq holds the first payload byte's sequence number */

#define CGROUP_KEY_BIT (1ULL << 63)

struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16]; /* IPv6, or IPv4-mapped IPv6 (::ffff:a.b.c.d) */
};

/* Policy LPM key. Data bits: src_id(32) dst_id(32) proto(8) port(16, big
 * endian), so a prefix length of 72+n matches the top n bits of the port. */
struct policy_key {
	__u32 prefixlen;
	__u32 src_id;
	__u32 dst_id;
	__u8 proto;
	__u8 port[2];
	__u8 pad;
};

/* rule_id and action decide a flow whose application is not known. A set
 * bit a of app_mask says a flow of application a (TCP; UDP: DNS only) is
 * decided otherwise: allowed if bit a of app_allow is set, denied
 * otherwise, by rule app_rule[a]. 76 bytes. */
struct policy_value {
	__u32 rule_id;
	__u8 action;
	__u8 pad;
	__u16 app_mask;
	__u16 app_allow;
	__u16 pad2;
	__u32 app_rule[APP_SLOTS];
};

struct endpoint {
	__u32 identity;
	__u32 flags;
};

struct mode_value {
	__u32 mode;
};

struct dp_config {
	__u32 generation; /* bumped by the loader after every policy change */
	__u32 pad;
	__u64 timeout_ns[CT_STATE_MAX]; /* idle timeout per ct_state; 0: none */
};

struct ct_key {
	__u64 endpoint;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 dir;
	__u16 pad;
};

struct ct_entry {
	__u64 created_ns;
	__u64 seen_ns; /* coarse monotonic time the entry was last refreshed */
	__u32 generation;
	__u32 rule_id;
	__u32 src_id; /* client identity */
	__u32 dst_id; /* server identity */
	__u8 flags;
	__u8 sampled;
	__u8 state; /* enum ct_state */
	__u8 fin;   /* FIN_CLIENT, FIN_SERVER */
	__u8 app;   /* enum app, once classified */
	__u8 mode;  /* mode of the endpoint when the flow was decided */
	/* HTTP/2 frame walk of a pending flow. Client entry: payload packets
	 * left, seq holds the next frame boundary. Reply entry: WALK_SERVER,
	 * the server's packets pass until the client's decide. */
	__u8 walk;
	__u8 pad;
	__u32 seq; /* TCP: sequence number of this direction's first payload byte */
	__u32 pad2;
};

/* A workload of this node that packets of other guarded workloads are
 * delivered to directly (bpf_redirect_peer), keyed by one of its addresses
 * (IPv6, or IPv4-mapped). Written by user space only: never learned from
 * packets, whose source address a workload could forge. */
struct local_key {
	__u8 addr[16];
};

struct local_endpoint {
	__u32 ifindex;	    /* host side of the workload's veth */
	__u8 mac[6];	    /* the workload's own interface */
	__u8 host_mac[6];   /* the host side of the veth */
};

struct frag_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 id;
	__u8 proto;
	__u8 pad[3];
};

struct frag_ports {
	__u16 sport;
	__u16 dport;
};

struct rule_counter {
	__u64 flows;
};

struct flow_event {
	__u64 ts_ns;
	__u64 endpoint;
	__u32 src_id; /* client identity */
	__u32 dst_id; /* server identity */
	__u32 rule_id;
	__u8 saddr[16]; /* packet orientation */
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u8 dir;
	__u8 kind;
	__u8 action;
	__u8 mode;
	__u8 flags;
	__u8 app; /* enum app, as classified in the kernel */
	__u16 payload_len;
	__u16 pad2;
	__u8 payload[PAYLOAD_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct lpm_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} identities SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1048576);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct mode_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} modes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dp_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct local_key);
	__type(value, struct local_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} local_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} fragments SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct rule_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rule_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flow_events SEC(".maps");

/* Make the event type visible to bpf2go. */
const struct flow_event *unused_flow_event __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum mode *unused_mode __attribute__((unused));
const enum action *unused_action __attribute__((unused));
const enum event_kind *unused_event_kind __attribute__((unused));
const enum app *unused_app __attribute__((unused));
const enum ct_state *unused_ct_state __attribute__((unused));
const struct local_key *unused_local_key __attribute__((unused));
const struct local_endpoint *unused_local_endpoint __attribute__((unused));

struct pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 tcp_flags;
	__u8 fragment; /* non-first fragment */
	__u32 payload_off;
	__u32 payload_len;
	__u32 seq;     /* TCP sequence number */
	__u8 any_frag; /* first or later fragment */
	__u8 pad[3];
};

#define PARSE_OK 0
#define PARSE_NON_IP 1
#define PARSE_ND 2
#define PARSE_MALFORMED (-1)

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &c);
	if (v)
		*v += 1;
}

static __always_inline void count_rule(__u32 rule_id)
{
	struct rule_counter *rc, zero = {};

	if (!rule_id)
		return;
	rc = bpf_map_lookup_elem(&rule_counters, &rule_id);
	if (!rc) {
		bpf_map_update_elem(&rule_counters, &rule_id, &zero, BPF_NOEXIST);
		rc = bpf_map_lookup_elem(&rule_counters, &rule_id);
		if (!rc)
			return;
	}
	rc->flows += 1;
}

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* parse_l4 reads ports (TCP, UDP, SCTP) and the payload bounds. l4off is the
 * offset of the L4 header, end the offset one past the IP payload. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct pkt *p, __u32 l4off, __u32 end,
				     __u32 frag_id, int first_fragment)
{
	struct frag_key fk = {};
	__u8 hdr[14];

	if (p->fragment) {
		struct frag_ports *fp;

		p->any_frag = 1;
		__builtin_memcpy(fk.saddr, p->saddr, 16);
		__builtin_memcpy(fk.daddr, p->daddr, 16);
		fk.id = frag_id;
		fk.proto = p->proto;
		fp = bpf_map_lookup_elem(&fragments, &fk);
		if (fp) {
			p->sport = fp->sport;
			p->dport = fp->dport;
		} else {
			count(COUNTER_FRAG_UNKNOWN);
		}
		return PARSE_OK;
	}

	switch (p->proto) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, l4off, hdr, 14))
			return PARSE_MALFORMED;
		p->sport = ((__u16)hdr[0] << 8) | hdr[1];
		p->dport = ((__u16)hdr[2] << 8) | hdr[3];
		p->tcp_flags = hdr[13];
		p->seq = ((__u32)hdr[4] << 24) | ((__u32)hdr[5] << 16) | ((__u32)hdr[6] << 8) | hdr[7];
		{
			__u32 doff = (hdr[12] >> 4) * 4;
			if (doff < 20)
				return PARSE_MALFORMED;
			l4off += doff;
		}
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, l4off, hdr, 8))
			return PARSE_MALFORMED;
		p->sport = ((__u16)hdr[0] << 8) | hdr[1];
		p->dport = ((__u16)hdr[2] << 8) | hdr[3];
		l4off += p->proto == IPPROTO_UDP ? 8 : 12;
		break;
	default:
		return PARSE_OK;
	}
	if (end > l4off) {
		p->payload_off = l4off;
		p->payload_len = end - l4off;
	}
	if (first_fragment) {
		struct frag_ports fp = {.sport = p->sport, .dport = p->dport};

		__builtin_memcpy(fk.saddr, p->saddr, 16);
		__builtin_memcpy(fk.daddr, p->daddr, 16);
		fk.id = frag_id;
		fk.proto = p->proto;
		bpf_map_update_elem(&fragments, &fk, &fp, BPF_ANY);
		/* Payload of a fragment is incomplete: no sample from it. */
		p->payload_len = 0;
		p->any_frag = 1;
	}
	return PARSE_OK;
}

/* ipv4_header takes the protocol and the addresses (IPv4-mapped) from the
 * IPv4 header at h, in the packet or copied out of it. */
static __always_inline void ipv4_header(struct pkt *p, __u8 *h)
{
	p->family = 4;
	p->proto = h[9];
	p->saddr[10] = 0xff;
	p->saddr[11] = 0xff;
	__builtin_memcpy(&p->saddr[12], &h[12], 4);
	p->daddr[10] = 0xff;
	p->daddr[11] = 0xff;
	__builtin_memcpy(&p->daddr[12], &h[16], 4);
}

/* parse_ipv4_direct reads the common case, an unfragmented IPv4 packet
 * without options carrying TCP or UDP whose headers lie in the linear part
 * of the buffer, straight from the packet. It returns PARSE_NON_IP for
 * anything else, which parse_ipv4 then reads with bpf_skb_load_bytes. */
static __always_inline int parse_ipv4_direct(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *h = data + off;
	__u8 *l4 = h + 20;
	__u32 tot, l4len = 8;

	if ((void *)(l4 + 20) > data_end)
		return PARSE_NON_IP;
	if (h[0] != 0x45 || (h[6] & 0x3f) || h[7])
		return PARSE_NON_IP;
	if (h[9] != IPPROTO_TCP && h[9] != IPPROTO_UDP)
		return PARSE_NON_IP;
	/* From here on, what parse_ipv4 and parse_l4 would do, in their order:
	 * a malformed packet reports the same fields either way. */
	tot = ((__u32)h[2] << 8) | h[3];
	if (tot < 20)
		return PARSE_MALFORMED;
	ipv4_header(p, h);
	p->sport = ((__u16)l4[0] << 8) | l4[1];
	p->dport = ((__u16)l4[2] << 8) | l4[3];
	if (h[9] == IPPROTO_TCP) {
		p->tcp_flags = l4[13];
		p->seq = ((__u32)l4[4] << 24) | ((__u32)l4[5] << 16) | ((__u32)l4[6] << 8) | l4[7];
		l4len = (l4[12] >> 4) * 4;
		if (l4len < 20)
			return PARSE_MALFORMED;
	}
	if (tot > 20 + l4len) {
		p->payload_off = off + 20 + l4len;
		p->payload_len = tot - 20 - l4len;
	}
	return PARSE_OK;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 h[20];
	__u32 ihl, tot, fo;
	int rc;

	rc = parse_ipv4_direct(skb, off, p);
	if (rc != PARSE_NON_IP)
		return rc;
	if (bpf_skb_load_bytes(skb, off, h, 20))
		return PARSE_MALFORMED;
	if ((h[0] >> 4) != 4)
		return PARSE_MALFORMED;
	ihl = (h[0] & 0xf) * 4;
	tot = ((__u32)h[2] << 8) | h[3];
	if (ihl < 20 || tot < ihl)
		return PARSE_MALFORMED;
	fo = ((__u32)h[6] << 8) | h[7];
	ipv4_header(p, h);
	p->fragment = (fo & 0x1fff) != 0;
	return parse_l4(skb, p, off + ihl, off + tot, ((__u32)h[4] << 8) | h[5],
			!p->fragment && (fo & 0x2000));
}

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define NEXTHDR_ICMPV6 58

static __always_inline int parse_ipv6(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 h[40];
	__u8 nexthdr;
	__u32 l4off, end, frag_id = 0;
	int first_fragment = 0, i;

	if (bpf_skb_load_bytes(skb, off, h, 40))
		return PARSE_MALFORMED;
	if ((h[0] >> 4) != 6)
		return PARSE_MALFORMED;
	p->family = 6;
	__builtin_memcpy(p->saddr, &h[8], 16);
	__builtin_memcpy(p->daddr, &h[24], 16);
	end = off + 40 + (((__u32)h[4] << 8) | h[5]);
	nexthdr = h[6];
	l4off = off + 40;

#pragma unroll
	for (i = 0; i < IPV6_EXT_MAX; i++) {
		__u8 e[8];

		if (nexthdr != NEXTHDR_HOP && nexthdr != NEXTHDR_ROUTING && nexthdr != NEXTHDR_DEST &&
		    nexthdr != NEXTHDR_AUTH && nexthdr != NEXTHDR_FRAGMENT)
			break;
		if (bpf_skb_load_bytes(skb, l4off, e, 8))
			return PARSE_MALFORMED;
		if (nexthdr == NEXTHDR_FRAGMENT) {
			__u32 fo = ((__u32)e[2] << 8) | e[3];

			frag_id = ((__u32)e[4] << 24) | ((__u32)e[5] << 16) | ((__u32)e[6] << 8) | e[7];
			if (fo & 0xfff8)
				p->fragment = 1;
			else if (fo & 1)
				first_fragment = 1;
			l4off += 8;
		} else if (nexthdr == NEXTHDR_AUTH) {
			l4off += ((__u32)e[1] + 2) * 4;
		} else {
			l4off += ((__u32)e[1] + 1) * 8;
		}
		nexthdr = e[0];
	}
	if (nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_ROUTING || nexthdr == NEXTHDR_DEST ||
	    nexthdr == NEXTHDR_AUTH || nexthdr == NEXTHDR_FRAGMENT)
		return PARSE_MALFORMED; /* too many extension headers */
	if (l4off > end)
		return PARSE_MALFORMED;
	p->proto = nexthdr;
	if (nexthdr == NEXTHDR_ICMPV6 && !p->fragment) {
		__u8 type;

		if (bpf_skb_load_bytes(skb, l4off, &type, 1))
			return PARSE_MALFORMED;
		/* Multicast listener discovery (130-132, 143), router and
		 * neighbour solicitation and advertisement, redirect (133-137):
		 * IPv6 does not work without them. */
		if ((type >= 130 && type <= 137) || type == 143)
			return PARSE_ND;
	}
	return parse_l4(skb, p, l4off, end, frag_id, first_fragment);
}

static __always_inline int parse(struct __sk_buff *skb, __u32 l3off, struct pkt *p)
{
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, l3off, p);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, l3off, p);
	/* A tagged frame could carry IP past the parser: refuse it. */
	if (skb->protocol == bpf_htons(ETH_P_8021Q) || skb->protocol == bpf_htons(ETH_P_8021AD) ||
	    skb->vlan_present)
		return PARSE_MALFORMED;
	return PARSE_NON_IP;
}

static __always_inline __u32 endpoint_mode(__u32 identity)
{
	struct mode_value *m = bpf_map_lookup_elem(&modes, &identity);

	return m ? m->mode : MODE_DISCOVER;
}

struct eval {
	__u32 src_id; /* client */
	__u32 dst_id; /* server */
	__u32 rule_id;
	__u32 action;
	__u32 app;     /* the flow's application, APP_NONE if not classified */
	__u32 pending; /* admitted until the application is known */
};

/* app_mask_of returns the applications pv decides otherwise for protocol
 * proto: any over TCP, DNS over UDP, none over anything else. */
static __always_inline __u32 app_mask_of(struct policy_value *pv, __u8 proto)
{
	if (proto == IPPROTO_TCP)
		return pv->app_mask;
	if (proto == IPPROTO_UDP)
		return pv->app_mask & (1 << APP_DNS);
	return 0;
}

/* decide sets the verdict of pv for a flow of application app
 * (APP_UNCLASSIFIED: not known yet). */
static __always_inline void decide(struct policy_value *pv, __u8 proto, __u32 app, struct eval *e)
{
	__u32 mask;

	e->pending = 0;
	e->app = app == APP_UNCLASSIFIED ? APP_NONE : app;
	if (!pv) {
		e->rule_id = 0;
		e->action = ACTION_NONE;
		return;
	}
	e->rule_id = pv->rule_id;
	e->action = pv->action;
	mask = app_mask_of(pv, proto);
	if (!mask)
		return;
	if (app == APP_UNCLASSIFIED) {
		/* Some application is decided otherwise: admit the flow while
		 * any outcome can still be allow, and decide on its payload. */
		if (pv->action == ACTION_ALLOW || (pv->app_allow & mask)) {
			e->action = ACTION_ALLOW;
			e->pending = 1;
		}
		return;
	}
	if (app < APP_SLOTS && (mask & (1 << app))) {
		__u32 slot = app;

		/* Keep the mask: the verifier must see the index bound. */
		asm volatile("" : "+r"(slot));
		e->rule_id = pv->app_rule[slot & (APP_SLOTS - 1)];
		e->action = (pv->app_allow & (1 << app)) ? ACTION_ALLOW : ACTION_DENY;
	}
}

/* lookup_policy finds the entry for (src, dst, proto, port), falling back
 * to any protocol. */
static __always_inline struct policy_value *lookup_policy(__u32 src, __u32 dst, __u8 proto, __u16 port)
{
	struct policy_key pk = {.prefixlen = 88};
	struct policy_value *pv;

	pk.src_id = src;
	pk.dst_id = dst;
	pk.proto = proto;
	pk.port[0] = port >> 8;
	pk.port[1] = port & 0xff;
	pv = bpf_map_lookup_elem(&policy, &pk);
	if (!pv) {
		pk.proto = 0;
		pv = bpf_map_lookup_elem(&policy, &pk);
	}
	return pv;
}

static __always_inline void evaluate(struct pkt *p, __u32 ep_id, __u32 dir, int reply, __u32 app, struct eval *e)
{
	struct lpm_key lk = {.prefixlen = 128};
	__u32 *rid, remote_id = 0;
	__u16 port;
	int ep_is_client;

	if (dir == DIR_OUT)
		__builtin_memcpy(lk.addr, p->daddr, 16);
	else
		__builtin_memcpy(lk.addr, p->saddr, 16);
	rid = bpf_map_lookup_elem(&identities, &lk);
	if (rid)
		remote_id = *rid;

	ep_is_client = (dir == DIR_OUT) ^ (reply != 0);
	e->src_id = ep_is_client ? ep_id : remote_id;
	e->dst_id = ep_is_client ? remote_id : ep_id;
	port = reply ? p->sport : p->dport;
	decide(lookup_policy(e->src_id, e->dst_id, p->proto, port), p->proto, app, e);
}

static __always_inline void emit(struct __sk_buff *skb, struct pkt *p, __u64 ep, __u32 dir, __u32 kind,
				 struct eval *e, __u32 mode, __u32 flags)
{
	struct flow_event *ev;
	__u32 n;

	ev = bpf_ringbuf_reserve(&flow_events, sizeof(*ev), 0);
	if (!ev) {
		count(COUNTER_EVENTS_LOST);
		return;
	}
	ev->ts_ns = bpf_ktime_get_ns();
	ev->endpoint = ep;
	ev->src_id = e->src_id;
	ev->dst_id = e->dst_id;
	ev->rule_id = e->rule_id;
	__builtin_memcpy(ev->saddr, p->saddr, 16);
	__builtin_memcpy(ev->daddr, p->daddr, 16);
	ev->sport = p->sport;
	ev->dport = p->dport;
	ev->proto = p->proto;
	ev->family = p->family;
	ev->dir = dir;
	ev->kind = kind;
	ev->action = e->action;
	ev->mode = mode;
	ev->flags = flags | (p->fragment ? FLAG_FRAGMENT : 0);
	ev->app = e->app;
	ev->pad2 = 0;
	n = p->payload_len;
	if (n > PAYLOAD_MAX)
		n = PAYLOAD_MAX;
	ev->payload_len = 0;
	if (n > 0) {
		/* Spelled so the verifier sees 1 <= n <= PAYLOAD_MAX. */
		n = ((n - 1) & (PAYLOAD_MAX - 1)) + 1;
		if (bpf_skb_load_bytes(skb, p->payload_off, ev->payload, n) == 0)
			ev->payload_len = n;
	}
	bpf_ringbuf_submit(ev, 0);
}

/* initial_state is the conntrack state of a flow whose first seen packet is p. */
static __always_inline __u8 initial_state(struct pkt *p)
{
	if (p->proto == IPPROTO_UDP)
		return CT_UDP;
	if (p->proto != IPPROTO_TCP)
		return CT_OTHER;
	if (p->tcp_flags & TCP_RST)
		return CT_TCP_CLOSED;
	if (p->tcp_flags & TCP_FIN)
		return CT_TCP_HALF_CLOSED;
	if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return CT_TCP_SYN;
	return CT_TCP_ESTABLISHED; /* flow older than its entries */
}

static __always_inline void ct_reverse(struct ct_key *k, struct ct_key *r)
{
	r->endpoint = k->endpoint;
	__builtin_memcpy(r->saddr, k->daddr, 16);
	__builtin_memcpy(r->daddr, k->saddr, 16);
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->dir = k->dir ^ 1;
	r->pad = 0;
}

/* ct_delete removes both entries of the flow of k. */
static __always_inline void ct_delete(struct ct_key *k)
{
	struct ct_key r;

	ct_reverse(k, &r);
	bpf_map_delete_elem(&conntrack, k);
	bpf_map_delete_elem(&conntrack, &r);
}

static __always_inline void ct_create(struct pkt *p, __u64 ep, __u32 dir, struct eval *e, __u32 gen,
				      __u8 flags, __u32 mode, int sampled)
{
	struct ct_key k = {};
	struct ct_entry v = {};

	v.created_ns = bpf_ktime_get_ns();
	v.seen_ns = bpf_ktime_get_coarse_ns();
	v.generation = gen;
	v.rule_id = e->rule_id;
	v.src_id = e->src_id;
	v.dst_id = e->dst_id;
	v.state = initial_state(p);
	v.app = e->app;
	v.mode = mode;

	k.endpoint = ep;
	k.proto = p->proto;
	__builtin_memcpy(k.saddr, p->saddr, 16);
	__builtin_memcpy(k.daddr, p->daddr, 16);
	k.sport = p->sport;
	k.dport = p->dport;
	k.dir = dir;
	v.flags = flags;
	v.sampled = sampled;
	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		v.seq = p->seq + 1;
		v.flags |= FLAG_SEQ;
	}
	bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);
	v.seq = 0;

	__builtin_memcpy(k.saddr, p->daddr, 16);
	__builtin_memcpy(k.daddr, p->saddr, 16);
	k.sport = p->dport;
	k.dport = p->sport;
	k.dir = dir ^ 1;
	v.flags = flags ^ FLAG_REPLY;
	v.sampled = 0;
	bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);
}

/* ct_tcp_track moves the TCP state of a flow on packet p. A change is
 * written to both entries of the flow: the second lookup happens a few
 * times per connection, never on an established flow's data. */
static __always_inline void ct_tcp_track(struct ct_key *k, struct ct_entry *ce, struct pkt *p)
{
	__u8 st = ce->state, nst = st, fin = ce->fin, f = p->tcp_flags;
	int reply = ce->flags & FLAG_REPLY;
	struct ct_entry *rce;
	struct ct_key r;

	if (st == CT_DENIED || st == CT_TCP_CLOSED)
		return;
	if (f & TCP_RST) {
		nst = CT_TCP_CLOSED;
	} else {
		if (f & TCP_FIN)
			fin |= reply ? FIN_SERVER : FIN_CLIENT;
		if (st == CT_TCP_SYN && reply) {
			nst = CT_TCP_ESTABLISHED;
			if (f & TCP_SYN) {
				ce->seq = p->seq + 1;
				ce->flags |= FLAG_SEQ;
			}
		}
		if (fin == (FIN_CLIENT | FIN_SERVER))
			nst = CT_TCP_CLOSED;
		else if (fin)
			nst = CT_TCP_HALF_CLOSED;
	}
	if (nst == st && fin == ce->fin)
		return;
	ce->state = nst;
	ce->fin = fin;
	ct_reverse(k, &r);
	rce = bpf_map_lookup_elem(&conntrack, &r);
	if (rce && rce->state != CT_DENIED) {
		rce->state = nst;
		rce->fin = fin;
	}
}

/* The classifier: a few distinctive openings, as agent/appdetect reads
 * them, over the first CLASSIFY_MAX payload bytes (what a sample holds).
 * It runs in a global function, verified once per program, and only for
 * pending flows. */
struct cls {
	__u8 b[CLASSIFY_MAX + 16]; /* zero past n */
	__u32 n;		   /* bytes read */
	/* DNS name walk (bpf_loop): position of the next label length, name
	 * length so far, result (0 running, 1 DNS, 2 not DNS). */
	__u32 next;
	__u32 total;
	__u32 res;
	/* Byte scans (bpf_loop): from start to end, what they found. */
	__u32 start;
	__u32 end;
	__u32 kind;
	__u32 found;
	__u32 bad;
};

/* B reads byte i of the sample, masked where the verifier sees it. */
static __always_inline __u8 B(struct cls *c, __u32 i)
{
	asm volatile("" : "+r"(i));
	return c->b[i & (CLASSIFY_MAX - 1)];
}

static __always_inline int is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int printable(__u8 c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* http_step is one byte of a request line (bpf_loop callback): found is
 * " HTTP/1." seen on the line, bad a space or control character seen. */
static long http_step(__u64 idx, void *ctx)
{
	struct cls *c = *(struct cls **)ctx;
	__u32 j = c->start + (__u32)idx;
	__u8 ch;

	if (j >= c->n || j >= CLASSIFY_MAX)
		return 1;
	ch = B(c, j);
	if (ch == '\n') {
		c->res = c->found ? 1 : 2;
		return 1;
	}
	if (!c->found && ch == ' ' && j + 8 <= c->n && B(c, j + 1) == 'H' && B(c, j + 2) == 'T' &&
	    B(c, j + 3) == 'T' && B(c, j + 4) == 'P' && B(c, j + 5) == '/' && B(c, j + 6) == '1' && B(c, j + 7) == '.')
		c->found = 1;
	if (ch <= ' ' || ch == 0x7f)
		c->bad = 1;
	return 0;
}

/* http_line checks what follows a request method (from start): a request
 * line naming HTTP/1, or, when the line runs past the sample, a target
 * with no spaces or control characters. */
static __always_inline int http_line(struct cls *c, __u32 start)
{
	c->start = start;
	c->found = 0;
	c->bad = 0;
	c->res = 0;
	bpf_loop(CLASSIFY_MAX, http_step, &c, 0);
	if (c->res)
		return c->res == 1;
	return !c->bad && c->n > start;
}

#define SCAN_LOWER 1	 /* a-z and '_' up to a NUL */
#define SCAN_PRINT_NUL 2 /* printable up to a NUL */
#define SCAN_PRINT 3	 /* printable */
#define SCAN_CRLF 4	 /* find "\r\n" */

/* scan_step is one byte of a scan (bpf_loop callback) from start to end. */
static long scan_step(__u64 idx, void *ctx)
{
	struct cls *c = *(struct cls **)ctx;
	__u32 j = c->start + (__u32)idx;
	__u8 ch;

	if (j >= c->end || j >= c->n || j >= CLASSIFY_MAX)
		return 1;
	ch = B(c, j);
	switch (c->kind) {
	case SCAN_CRLF:
		if (ch == '\r' && j + 2 <= c->n && B(c, j + 1) == '\n') {
			c->found = 1;
			return 1;
		}
		return 0;
	case SCAN_LOWER:
		if (ch == 0)
			return 1;
		if ((ch < 'a' || ch > 'z') && ch != '_')
			goto bad;
		return 0;
	case SCAN_PRINT_NUL:
		if (ch == 0)
			return 1;
		/* fall through */
	default:
		if (!printable(ch))
			goto bad;
		return 0;
	}
bad:
	c->bad = 1;
	return 1;
}

/* scan runs a scan of kind over bytes start..end and returns whether it
 * found (SCAN_CRLF) or passed (the others). */
static __always_inline int scan(struct cls *c, __u32 kind, __u32 start, __u32 end)
{
	c->kind = kind;
	c->start = start;
	c->end = end;
	c->found = 0;
	c->bad = 0;
	bpf_loop(CLASSIFY_MAX, scan_step, &c, 0);
	return kind == SCAN_CRLF ? c->found : !c->bad;
}

static __always_inline int is_http_request(struct cls *c)
{
	__u8 *b = c->b;
	__u32 start = 0;

	if (b[0] == 'G' && b[1] == 'E' && b[2] == 'T' && b[3] == ' ')
		start = 4;
	else if (b[0] == 'P' && b[1] == 'U' && b[2] == 'T' && b[3] == ' ')
		start = 4;
	else if (b[0] == 'P' && b[1] == 'O' && b[2] == 'S' && b[3] == 'T' && b[4] == ' ')
		start = 5;
	else if (b[0] == 'H' && b[1] == 'E' && b[2] == 'A' && b[3] == 'D' && b[4] == ' ')
		start = 5;
	else if (b[0] == 'P' && b[1] == 'A' && b[2] == 'T' && b[3] == 'C' && b[4] == 'H' && b[5] == ' ')
		start = 6;
	else if (b[0] == 'T' && b[1] == 'R' && b[2] == 'A' && b[3] == 'C' && b[4] == 'E' && b[5] == ' ')
		start = 6;
	else if (b[0] == 'D' && b[1] == 'E' && b[2] == 'L' && b[3] == 'E' && b[4] == 'T' && b[5] == 'E' && b[6] == ' ')
		start = 7;
	else if (b[0] == 'O' && b[1] == 'P' && b[2] == 'T' && b[3] == 'I' && b[4] == 'O' && b[5] == 'N' &&
		 b[6] == 'S' && b[7] == ' ')
		start = 8;
	else if (b[0] == 'C' && b[1] == 'O' && b[2] == 'N' && b[3] == 'N' && b[4] == 'E' && b[5] == 'C' &&
		 b[6] == 'T' && b[7] == ' ')
		start = 8;
	return start && c->n >= start && http_line(c, start);
}

static __always_inline int is_tls(__u8 *b, __u8 hs)
{
	__u32 n = ((__u32)b[3] << 8) | b[4];

	return b[0] == 0x16 && b[1] == 3 && b[2] <= 4 && n >= 4 && n <= (1 << 14) + 2048 && b[5] == hs;
}

/* is_tls_record matches the header of any TLS record (change cipher spec,
 * alert, handshake, application data): what a TLS flow met mid-stream
 * shows. */
static __always_inline int is_tls_record(__u8 *b)
{
	__u32 n = ((__u32)b[3] << 8) | b[4];

	return b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 3 && b[2] <= 4 && n >= 1 && n <= (1 << 14) + 2048;
}

static __always_inline int is_h2_preface(__u8 *b)
{
	return b[0] == 'P' && b[1] == 'R' && b[2] == 'I' && b[3] == ' ' && b[4] == '*' && b[5] == ' ' && b[6] == 'H' &&
	       b[7] == 'T' && b[8] == 'T' && b[9] == 'P' && b[10] == '/' && b[11] == '2' && b[12] == '.' &&
	       b[13] == '0' && b[14] == '\r' && b[15] == '\n' && b[16] == '\r' && b[17] == '\n' && b[18] == 'S' &&
	       b[19] == 'M' && b[20] == '\r' && b[21] == '\n' && b[22] == '\r' && b[23] == '\n';
}

/* has_crlf reports whether "\r\n" occurs at or after start. */
static __always_inline int has_crlf(struct cls *c, __u32 start)
{
	return scan(c, SCAN_CRLF, start, CLASSIFY_MAX);
}

static __always_inline int resp_tail(__u8 a, __u8 b, __u8 c)
{
	return a == '\r' && b == '\n' && c == '$';
}

static __always_inline int is_redis(struct cls *c)
{
	__u8 *b = c->b;

	if (b[0] == '*') {
		/* RESP array: one to five digits, then "\r\n$" (as much of it
		 * as the sample holds). */
		__u32 i;

		if (c->n < 4 || !is_digit(b[1]))
			return 0;
		if (!is_digit(b[2]))
			i = 2;
		else if (!is_digit(b[3]))
			i = 3;
		else if (!is_digit(b[4]))
			i = 4;
		else if (!is_digit(b[5]))
			i = 5;
		else if (!is_digit(b[6]))
			i = 6;
		else
			return 0;
		if (c->n >= i + 3)
			return resp_tail(B(c, i), B(c, i + 1), B(c, i + 2));
		if (c->n == i + 2)
			return B(c, i) == '\r' && B(c, i + 1) == '\n';
		if (c->n == i + 1)
			return B(c, i) == '\r';
		return 1;
	}
#define UP(c) ((c) & 0xdf)
	if ((UP(b[0]) == 'P' && UP(b[1]) == 'I' && UP(b[2]) == 'N' && UP(b[3]) == 'G') ||
	    (UP(b[0]) == 'I' && UP(b[1]) == 'N' && UP(b[2]) == 'F' && UP(b[3]) == 'O'))
		return b[4] == '\r' && b[5] == '\n';
	/* Inline commands with arguments: the command, then a line end. */
	if (UP(b[0]) == 'A' && UP(b[1]) == 'U' && UP(b[2]) == 'T' && UP(b[3]) == 'H' && b[4] == ' ')
		return has_crlf(c, 5);
	if (UP(b[0]) == 'H' && UP(b[1]) == 'E' && UP(b[2]) == 'L' && UP(b[3]) == 'L' && UP(b[4]) == 'O' &&
	    b[5] == ' ')
		return has_crlf(c, 6);
	if (UP(b[0]) == 'S' && UP(b[1]) == 'E' && UP(b[2]) == 'L' && UP(b[3]) == 'E' && UP(b[4]) == 'C' &&
	    UP(b[5]) == 'T' && b[6] == ' ')
		return has_crlf(c, 7);
	return 0;
#undef UP
}

static __always_inline __u32 be32(__u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | b[3];
}

static __always_inline __u32 le32(__u8 *b)
{
	return ((__u32)b[3] << 24) | ((__u32)b[2] << 16) | ((__u32)b[1] << 8) | b[0];
}

/* is_postgres matches a startup message (protocol 3.0, then a parameter
 * name of a-z and '_'), an SSLRequest, a GSSENCRequest or a CancelRequest. */
static __always_inline int is_postgres(struct cls *c)
{
	__u32 n = be32(c->b), code = be32(&c->b[4]);

	if (c->n < 8)
		return 0;
	if (code == 80877103 || code == 80877104)
		return n == 8;
	if (code == 80877102)
		return n == 16;
	if (code != 0x00030000 || n < 9 || n > 10000 || c->n < 9 || c->b[8] == 0)
		return 0;
	return scan(c, SCAN_LOWER, 8, CLASSIFY_MAX);
}

/* is_mysql_greeting matches the server's initial handshake (protocol 10)
 * with a printable server version starting with a digit. */
static __always_inline int is_mysql_greeting(struct cls *c)
{
	__u8 *b = c->b;
	__u32 n = (__u32)b[0] | ((__u32)b[1] << 8) | ((__u32)b[2] << 16);

	if (c->n < 6 || n < 20 || n > 1024 || b[3] != 0 || b[4] != 10 || !is_digit(b[5]))
		return 0;
	return scan(c, SCAN_PRINT_NUL, 5, CLASSIFY_MAX);
}

/* is_mongo matches a wire protocol header with a known opcode. */
static __always_inline int is_mongo(struct cls *c)
{
	__u32 n = le32(c->b), op = le32(&c->b[12]);

	if (c->n < 16 || n < 21 || n > (48 << 20))
		return 0;
	if (op == 2013) /* OP_MSG: flag bits, then section kind 0 or 1 */
		return c->n < 21 || c->b[20] <= 1;
	return op == 2004 || op == 2012 || op == 1;
}

/* is_kafka matches a request header: size, API key and version in range,
 * then a client ID that is null or printable. */
static __always_inline int is_kafka(struct cls *c)
{
	__u8 *b = c->b;
	__u32 size = be32(b);
	__s16 key = (__s16)(((__u16)b[4] << 8) | b[5]);
	__s16 ver = (__s16)(((__u16)b[6] << 8) | b[7]);
	__s16 cl = (__s16)(((__u16)b[12] << 8) | b[13]);

	if (c->n < 14 || size < 10 || size > (100 << 20) || key < 0 || key > 90 || ver < 0 || ver > 20)
		return 0;
	if (cl == -1)
		return 1;
	if (cl <= 0 || (__u32)cl > size - 10 || c->n == 14)
		return 0;
	return scan(c, SCAN_PRINT, 14, 14 + (__u32)cl);
}

/* dns_step is one byte of the first question name (bpf_loop callback). */
static long dns_step(__u64 idx, void *ctx)
{
	struct cls *c = *(struct cls **)ctx;
	__u32 j = c->next, l;

	if (idx >= CLASSIFY_MAX || j >= c->n || j >= CLASSIFY_MAX) {
		c->res = c->total > 0 ? 1 : 2; /* the name runs past the sample */
		return 1;
	}
	l = B(c, j);
	if (l == 0) {
		__u32 class;

		if (j + 5 > c->n) {
			c->res = 1; /* type and class run past the sample */
			return 1;
		}
		class = (((__u32)B(c, j + 3) << 8) | B(c, j + 4)) & 0x7fff; /* mDNS unicast-response bit */
		c->res = class == 1 || class == 3 || class == 4 || class == 254 || class == 255 ? 1 : 2;
		return 1;
	}
	if (l > 63)
		goto bad;
	c->total += l + 1;
	if (c->total > 255)
		goto bad;
	c->next = j + l + 1;
	return 0;
bad:
	c->res = 2;
	return 1;
}

/* label_step checks one byte of the first question name for printable
 * label characters (bpf_loop callback); length bytes are checked by
 * dns_step. */
static long label_step(__u64 idx, void *ctx)
{
	struct cls *c = *(struct cls **)ctx;
	__u32 j = (__u32)idx + c->total; /* total: the name's first byte here */

	if (j >= c->n || j >= CLASSIFY_MAX)
		return 1;
	if (j == c->next) {
		__u8 l = B(c, j);

		if (l == 0 || l > 63)
			return 1;
		c->next = j + l + 1;
		return 0;
	}
	if (!printable(B(c, j))) {
		c->res = 2;
		return 1;
	}
	return 0;
}

/* is_dns matches a DNS message (after the two-byte length of DNS over
 * TCP when tcp is set): a plausible header and a well-formed first name. */
static __always_inline int is_dns(struct cls *c, int tcp)
{
	__u32 base = tcp ? 2 : 0, flags, opcode, qd, an, ns, ar;

	if (tcp) {
		__u32 mlen = ((__u32)c->b[0] << 8) | c->b[1];

		if (c->n < 2 || mlen < 12 || mlen < c->n - 2)
			return 0;
	}
	if (c->n < base + 17)
		return 0;
	flags = ((__u32)B(c, base + 2) << 8) | B(c, base + 3);
	opcode = (flags >> 11) & 0xf;
	if (opcode != 0 && opcode != 2 && opcode != 4 && opcode != 5)
		return 0;
	if (flags & 0x0040) /* Z bit must be zero */
		return 0;
	qd = ((__u32)B(c, base + 4) << 8) | B(c, base + 5);
	an = ((__u32)B(c, base + 6) << 8) | B(c, base + 7);
	ns = ((__u32)B(c, base + 8) << 8) | B(c, base + 9);
	ar = ((__u32)B(c, base + 10) << 8) | B(c, base + 11);
	if (qd == 0 || qd > 8 || an > 256 || ns > 256 || ar > 256)
		return 0;
	/* Label characters first, then lengths and the class. */
	c->res = 0;
	c->next = base + 12;
	c->total = base + 12;
	bpf_loop(CLASSIFY_MAX, label_step, &c, 0);
	if (c->res == 2)
		return 0;
	c->next = base + 12;
	c->total = 0;
	c->res = 0;
	bpf_loop(CLASSIFY_MAX / 2 + 1, dns_step, &c, 0);
	return c->res == 1;
}

/* is_h2_settings matches the SETTINGS frame an HTTP/2 server opens with. */
static __always_inline int is_h2_settings(struct cls *c)
{
	__u8 *b = c->b;
	__u32 n = ((__u32)b[0] << 16) | ((__u32)b[1] << 8) | b[2];

	return c->n >= 9 && b[3] == 4 && b[4] == 0 && !b[5] && !b[6] && !b[7] && !b[8] && n % 6 == 0 && n <= 96;
}

/* The walk of the client's HTTP/2 frames (h2_walk) and of the first
 * HEADERS frame's header block (HPACK, RFC 7541 section 6): field
 * representations are read one by one from the packet, strings skipped by
 * their length but a content-type value, matched (a Huffman coded one
 * decoded bit by bit), until a content-type field naming gRPC or the
 * block's end. Both run as bpf_loop callbacks over this state, kept off
 * the stack. */
struct hpack_walk {
	__u32 off;   /* packet offset of the payload */
	__u32 len;   /* payload bytes */
	__u32 fpos;  /* payload offset of the next frame header */
	__u32 state; /* H2_* */
	__u32 r;     /* h2_walk's result when state is H2_DONE */
	__u32 flags; /* the HEADERS frame's flags */
	__u32 bend;  /* payload offset where its block ends, maybe past len */
	__u32 pos;   /* packet offset of the next byte of the block */
	__u32 end;   /* packet offset where the block ends in this packet */
	__u32 res;   /* HP_* */
	__u32 huff;  /* the last string read is Huffman coded */
	__u32 fields; /* field representations read */
	/* The Huffman decoding of a content-type value (huff_bit). */
	__u32 hpos;  /* packet offset of the value */
	__u32 hbit;  /* next bit of the value */
	__u32 hlim;  /* bits of the value read at most; 0: not decoding */
	__u32 hcode; /* bits of the symbol read so far */
	__u32 hclen; /* how many */
	__u32 hsyms; /* symbols decoded, each matching application/grpc */
	__u8 b[16];
};

/* The classifier's buffers: too large for the stack beside the programs'
 * own. Per CPU; busy guards against a program that interrupts another on
 * the same CPU (a softirq over a cgroup egress program): the interrupting
 * one does not classify (APP_RETRY) rather than overwrite. */
struct scratch {
	__u32 busy;
	__u32 pad;
	struct cls c;
	struct hpack_walk w;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

#define CLS_REPLY 0x1	  /* sent by the server */
#define CLS_MIDSTREAM 0x2 /* the flow was met past its opening */
#define CLS_UDP 0x4

/* classify_in names the application of a flow from its first payload
 * packet (len bytes at off), in the order of agent/appdetect's Detect. A
 * flow met mid-stream (entries lost) is past its opening: any TLS record
 * names TLS. APP_WAIT: an HTTP/2 server's SETTINGS, sent before the
 * client's preface; the client's first bytes decide. */
static __always_inline int classify_in(struct __sk_buff *skb, struct cls *c, __u32 off, __u32 len, __u32 how)
{
	__u32 n = len;
	int reply = how & CLS_REPLY;

	if (n == 0)
		return APP_NONE;
	if (n > CLASSIFY_MAX)
		n = CLASSIFY_MAX;
	__builtin_memset(c->b, 0, sizeof(c->b));
	n = ((n - 1) & (CLASSIFY_MAX - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, c->b, n))
		return APP_NONE;
	c->n = n;
	if (how & CLS_UDP)
		return is_dns(c, 0) ? APP_DNS : APP_NONE;
	if (c->b[0] == 'S' && c->b[1] == 'S' && c->b[2] == 'H' && c->b[3] == '-')
		return APP_SSH;
	if (is_tls(c->b, reply ? 2 : 1) || ((how & CLS_MIDSTREAM) && is_tls_record(c->b)))
		return APP_TLS;
	if (reply) {
		if (c->b[0] == 'H' && c->b[1] == 'T' && c->b[2] == 'T' && c->b[3] == 'P' && c->b[4] == '/' &&
		    c->b[5] == '1' && c->b[6] == '.')
			return APP_HTTP;
		if (is_mysql_greeting(c))
			return APP_MYSQL;
		if (is_mongo(c))
			return APP_MONGODB;
		if (is_dns(c, 1))
			return APP_DNS;
		if (is_h2_settings(c))
			return APP_WAIT;
		return APP_NONE;
	}
	if (is_h2_preface(c->b))
		return APP_HTTP2;
	if (is_http_request(c))
		return APP_HTTP;
	if (is_postgres(c))
		return APP_POSTGRES;
	if (is_mongo(c))
		return APP_MONGODB;
	if (is_kafka(c))
		return APP_KAFKA;
	if (is_redis(c))
		return APP_REDIS;
	if (is_dns(c, 1))
		return APP_DNS;
	return APP_NONE;
}

/* classify_payload runs classify_in on this CPU's scratch; APP_RETRY when
 * it is busy. */
__attribute__((noinline)) int classify_payload(struct __sk_buff *skb, __u32 off, __u32 len, __u32 how)
{
	struct scratch *s;
	__u32 zero = 0;
	int app;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!skb || !s || s->busy)
		return APP_RETRY;
	s->busy = 1;
	app = classify_in(skb, &s->c, off, len, how);
	s->busy = 0;
	return app;
}

/* hpack_walk.state: frames still walked, walk over (r), or the first
 * HEADERS frame's block to walk. */
#define H2_FRAMES 0
#define H2_DONE 1
#define H2_BLOCK 2

/* hpack_walk.res: still walking, or what the block names. */
#define HP_GOING 0
#define HP_GRPC 1
#define HP_UNKNOWN 2 /* undecidable here: no application */

#define HPACK_FIELDS 64	      /* field representations walked per packet */
#define HPACK_INT_MORE 4      /* continuation bytes of an integer; more is malformed */
#define HPACK_STATIC 62	      /* first index of the dynamic table */
#define HPACK_CONTENT_TYPE 31 /* static table index of content-type */
#define H2_END_HEADERS 0x4
#define H2_PADDED 0x8
#define H2_PRIORITY 0x20

/* hp_ctx is what the walk's callbacks are given: the packet and the walk. */
struct hp_ctx {
	struct __sk_buff *skb;
	struct hpack_walk *w;
};

/* hp_byte reads the next byte of the block; -1 past its end. */
static __always_inline long hp_byte(struct __sk_buff *skb, struct hpack_walk *w)
{
	if (w->pos >= w->end || bpf_skb_load_bytes(skb, w->pos, w->b, 1))
		return -1;
	w->pos++;
	return w->b[0];
}

/* hp_int reads an HPACK integer whose prefix (mask) is in first; -1 when
 * it runs past the block or is longer than HPACK_INT_MORE bytes more. */
static __always_inline long hp_int(struct __sk_buff *skb, struct hpack_walk *w, long first, __u32 mask)
{
	__u32 v = (__u32)first & mask;
	int k;

	if (v < mask)
		return v;
#pragma unroll
	for (k = 0; k < HPACK_INT_MORE; k++) {
		long b = hp_byte(skb, w);

		if (b < 0)
			return -1;
		v += ((__u32)b & 0x7f) << (7 * k);
		if (!(b & 0x80))
			return v;
	}
	return -1;
}

/* hp_string reads a string's length (and whether it is Huffman coded,
 * into w->huff); -1 when the string runs past the block. */
static __always_inline long hp_string(struct __sk_buff *skb, struct hpack_walk *w)
{
	long x = hp_byte(skb, w), n;

	if (x < 0)
		return -1;
	w->huff = x & 0x80;
	n = hp_int(skb, w, x, 0x7f);
	if (n < 0 || n > w->end - w->pos)
		return -1;
	return n;
}

/* hp_is_content_type tells whether the literal name of n bytes at w->pos
 * is content-type, raw or Huffman coded. */
static __always_inline int hp_is_content_type(struct __sk_buff *skb, struct hpack_walk *w, long n)
{
	static const __u8 huf[] = {0x21, 0xea, 0x49, 0x6a, 0x4a, 0xc9, 0xf5, 0x59, 0x7f};
	static const char lit[] = "content-type";
	int k;

	if (w->huff) {
		if (n != sizeof(huf) || bpf_skb_load_bytes(skb, w->pos, w->b, sizeof(huf)))
			return 0;
		for (k = 0; k < sizeof(huf); k++)
			if (w->b[k] != huf[k])
				return 0;
		return 1;
	}
	if (n != sizeof(lit) - 1 || bpf_skb_load_bytes(skb, w->pos, w->b, sizeof(lit) - 1))
		return 0;
	for (k = 0; k < sizeof(lit) - 1; k++)
		if (w->b[k] != (__u8)lit[k])
			return 0;
	return 1;
}

/* The HPACK Huffman code (RFC 7541 Appendix B) is canonical: the codes of
 * one length are consecutive, and come after the prefixes of all shorter
 * ones. huff_first holds the first code of each length, huff_index the
 * index in huff_syms (the symbols in code order) of its symbol; the codes
 * of length l are the huff_index[l + 1] - huff_index[l] from
 * huff_first[l]. EOS, the last of the longest codes, is no symbol.
 * agent/bpf's tests hold these tables to x/net's coder. */
#define HUFF_MAXLEN 30

static const __u32 huff_first[32] = {
	0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x14, 0x5c,
	0xf8, 0x0, 0x3f8, 0x7fa, 0xffa, 0x1ff8, 0x3ffc, 0x7ffc,
	0x0, 0x0, 0x0, 0x7fff0, 0xfffe6, 0x1fffdc, 0x3fffd2, 0x7fffd8,
	0xffffea, 0x1ffffec, 0x3ffffe0, 0x7ffffde, 0xfffffe2, 0x0, 0x3ffffffc, 0x0,
};

static const __u16 huff_index[32] = {
	0, 0, 0, 0, 0, 0, 10, 36, 68, 74, 74, 79, 82, 84, 90, 92,
	95, 95, 95, 95, 98, 106, 119, 145, 174, 186, 190, 205, 224, 253, 253, 256,
};

static const __u8 huff_syms[256] = {
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
};

/* The gRPC content type, matched case-insensitively (as grpc-java, which
 * lower-cases the value before its check) on the value's first
 * GRPC_CT_LEN characters. */
static const char grpc_ct[] = "application/grpc";
#define GRPC_CT_LEN (sizeof(grpc_ct) - 1)
#define HUFF_BYTES_MAX ((GRPC_CT_LEN * HUFF_MAXLEN + 7) / 8) /* the value's bytes GRPC_CT_LEN symbols may take */
/* hpack_step's runs per packet: each field, and each bit of a Huffman coded
 * content-type value. */
#define HPACK_STEPS (HPACK_FIELDS * (1 + GRPC_CT_LEN * HUFF_MAXLEN))

/* ascii_lower folds an ASCII upper-case letter to lower case, and only
 * that. */
static __always_inline __u8 ascii_lower(__u8 x)
{
	return x >= 'A' && x <= 'Z' ? x + ('a' - 'A') : x;
}

/* huff_bit reads one bit of the Huffman coded content-type value at
 * w->hpos, and decodes a symbol when the bits read make one, which must
 * fold to the next character of grpc_ct: GRPC_CT_LEN such symbols decide
 * gRPC (1). The decoding stops (w->hlim = 0) at a symbol that does not
 * fold to it, at the value's end (a value that ends sooner is too short,
 * and its padding is no symbol), or when the bits read are longer than
 * any code (EOS). Not inlined, as hp_is_grpc. */
static __attribute__((noinline)) long huff_bit(struct __sk_buff *skb, struct hpack_walk *w)
{
	__u32 l, k, n, i;

	if (w->hbit >= w->hlim)
		goto stop;
	if (!(w->hbit & 7) && bpf_skb_load_bytes(skb, w->hpos + (w->hbit >> 3), w->b, 1))
		goto stop;
	w->hcode = (w->hcode << 1) | ((w->b[0] >> (7 - (w->hbit & 7))) & 1);
	w->hbit++;
	l = ++w->hclen;
	if (l > HUFF_MAXLEN)
		goto stop;
	/* Keep the masks: the verifier must see the indexes bound. */
	asm volatile("" : "+r"(l));
	l &= 31;
	k = w->hcode - huff_first[l];
	n = (__u32)huff_index[(l + 1) & 31] - huff_index[l];
	if (k >= n)
		return 0;
	i = (huff_index[l] + k) & 0xff;
	if (ascii_lower(huff_syms[i]) != (__u8)grpc_ct[w->hsyms & 15])
		goto stop;
	w->hcode = 0;
	w->hclen = 0;
	if (++w->hsyms < GRPC_CT_LEN)
		return 0;
	w->res = HP_GRPC;
	return 1;
stop:
	w->hlim = 0;
	return 0;
}

/* hp_is_grpc tells whether the content-type value of n bytes at w->pos
 * starts with application/grpc in any ASCII case: raw, from its first
 * GRPC_CT_LEN bytes; Huffman coded, the next steps decode it (huff_bit).
 * Not inlined: hpack_step's stack is what the programs have left. */
static __attribute__((noinline)) int hp_is_grpc(struct __sk_buff *skb, struct hpack_walk *w, __u32 n)
{
	int k;

	if (w->huff) {
		w->hpos = w->pos;
		w->hbit = 0;
		w->hlim = (n < HUFF_BYTES_MAX ? n : HUFF_BYTES_MAX) * 8;
		w->hcode = 0;
		w->hclen = 0;
		w->hsyms = 0;
		return 0;
	}
	if (n < GRPC_CT_LEN || bpf_skb_load_bytes(skb, w->pos, w->b, GRPC_CT_LEN))
		return 0;
	for (k = 0; k < GRPC_CT_LEN; k++)
		if (ascii_lower(w->b[k]) != (__u8)grpc_ct[k])
			return 0;
	return 1;
}

/* hpack_step reads one field representation (bpf_loop callback), or one
 * bit of a Huffman coded content-type value (huff_bit) while that is
 * decoded: an indexed field, a dynamic table size update, or a literal
 * field with an indexed or literal name. A content-type field naming
 * application/grpc in any ASCII case (as grpc-java, which lower-cases the
 * value before its check), raw or Huffman coded, decides gRPC; any other
 * field, content-type too, is passed over; a name in the dynamic table or
 * a malformed representation is undecidable. It stops after
 * HPACK_FIELDS field representations. */
static long hpack_step(__u64 idx, void *ctx)
{
	struct hp_ctx *c = ctx;
	struct __sk_buff *skb = c->skb;
	struct hpack_walk *w = c->w;
	long x, name, n;
	int ct;

	if (w->hlim)
		return huff_bit(skb, w);
	if (w->pos >= w->end || w->fields >= HPACK_FIELDS)
		return 1;
	w->fields++;
	x = hp_byte(skb, w);
	if (x < 0)
		goto undecidable;
	if (x & 0x80) {
		/* Indexed field: content-type from the static table has an
		 * empty value. */
		name = hp_int(skb, w, x, 0x7f);
		if (name <= 0 || name >= HPACK_STATIC)
			goto undecidable;
		return 0;
	}
	if ((x & 0xe0) == 0x20) {
		/* Dynamic table size update. */
		if (hp_int(skb, w, x, 0x1f) < 0)
			goto undecidable;
		return 0;
	}
	/* Literal field, with incremental indexing (01), without indexing
	 * (0000) or never indexed (0001). */
	name = hp_int(skb, w, x, (x & 0x40) ? 0x3f : 0x0f);
	if (name < 0 || name >= HPACK_STATIC)
		goto undecidable;
	if (name == 0) {
		n = hp_string(skb, w);
		if (n < 0)
			goto undecidable;
		ct = hp_is_content_type(skb, w, n);
		w->pos += n;
	} else {
		ct = name == HPACK_CONTENT_TYPE;
	}
	n = hp_string(skb, w);
	if (n < 0)
		goto undecidable;
	if (ct && hp_is_grpc(skb, w, n)) {
		w->res = HP_GRPC;
		return 1;
	}
	w->pos += n;
	return 0;
undecidable:
	w->res = HP_UNKNOWN;
	return 1;
}

/* h2_headers starts the walk of the client's first HEADERS frame (flen
 * bytes of payload, flags given) whose frame header is at w->fpos: its
 * padding and priority fields are not the block. A malformed frame is
 * undecidable (APP_NONE). */
static __always_inline void h2_headers(struct __sk_buff *skb, struct hpack_walk *w, __u32 flen, __u8 flags)
{
	__u32 lead = 0, pad = 0, p = w->fpos + 9;

	w->state = H2_DONE;
	w->r = APP_NONE;
	if (flags & H2_PADDED) {
		if (p >= w->len || bpf_skb_load_bytes(skb, w->off + p, w->b, 1))
			return;
		pad = w->b[0];
		lead = 1;
	}
	if (flags & H2_PRIORITY)
		lead += 5;
	if (lead + pad > flen)
		return;
	w->flags = flags;
	w->bend = p + flen - pad;
	w->pos = w->off + p + lead;
	w->end = w->off + (w->bend < w->len ? w->bend : w->len);
	w->res = HP_GOING;
	w->huff = 0;
	w->fields = 0;
	w->hlim = 0;
	w->state = H2_BLOCK;
}

/* h2_frame_step reads one frame header of the client's packet (bpf_loop
 * callback): control frames (SETTINGS, WINDOW_UPDATE, PING, PRIORITY, of
 * their lawful sizes) are skipped, the first HEADERS frame is walked
 * next; anything else first, or a frame header split across packets,
 * is undecidable (APP_NONE: a client could hide its HEADERS behind it);
 * past the last frame, the next packet goes on (H2_MORE). */
static long h2_frame_step(__u64 idx, void *ctx)
{
	struct hp_ctx *c = ctx;
	struct hpack_walk *w = c->w;
	__u32 flen;

	w->state = H2_DONE;
	if (w->fpos >= w->len) {
		w->r = (w->fpos << 8) | H2_MORE;
		return 1;
	}
	w->r = APP_NONE;
	if (w->fpos + 9 > w->len || w->fpos > 0xffff || bpf_skb_load_bytes(c->skb, w->off + w->fpos, w->b, 9))
		return 1;
	flen = ((__u32)w->b[0] << 16) | ((__u32)w->b[1] << 8) | w->b[2];
	switch (w->b[3]) {
	case 4: /* SETTINGS */
		if (flen % 6 || flen > 96)
			return 1;
		break;
	case 8: /* WINDOW_UPDATE */
		if (flen != 4)
			return 1;
		break;
	case 6: /* PING */
		if (flen != 8)
			return 1;
		break;
	case 2: /* PRIORITY */
		if (flen != 5)
			return 1;
		break;
	case 1: /* HEADERS */
		h2_headers(c->skb, w, flen, w->b[4]);
		return 1;
	default:
		return 1;
	}
	w->fpos += 9 + flen;
	w->state = H2_FRAMES;
	return 0;
}

/* h2_walk walks the HTTP/2 frames of a client packet (len payload bytes at
 * off) from offset start, up to H2_WALK_FRAMES frames (more: APP_NONE),
 * and the first HEADERS frame's header block: a content-type field naming
 * application/grpc in any ASCII case names gRPC, a whole block
 * (END_HEADERS) without one HTTP/2. APP_NONE (no application: the port decides) when the block is
 * undecidable here: it goes on past this packet or in CONTINUATION frames
 * before a gRPC content-type, names a field of the dynamic table, holds
 * more than HPACK_FIELDS fields, or is malformed. H2_MORE with the offset of
 * the next frame (in bits 8..): control frames only, the next packet goes
 * on. APP_RETRY when this CPU's scratch is busy. */
__attribute__((noinline)) int h2_walk(struct __sk_buff *skb, __u32 off, __u32 len, __u32 start)
{
	struct hp_ctx c = {.skb = skb};
	struct hpack_walk *w;
	struct scratch *s;
	__u32 zero = 0;
	int r = APP_NONE;

	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!skb || !s || s->busy)
		return APP_RETRY;
	s->busy = 1;
	w = &s->w;
	c.w = w;
	w->off = off;
	w->len = len;
	w->fpos = start;
	w->state = H2_FRAMES;
	bpf_loop(H2_WALK_FRAMES, h2_frame_step, &c, 0);
	if (w->state == H2_FRAMES) {
		r = w->fpos >= len ? (int)((w->fpos << 8) | H2_MORE) : APP_NONE;
	} else if (w->state == H2_DONE) {
		r = w->r;
	} else {
		bpf_loop(HPACK_STEPS, hpack_step, &c, 0);
		if (w->res == HP_GRPC)
			r = APP_GRPC;
		else if (w->res == HP_GOING && w->pos >= w->end && w->bend <= len && (w->flags & H2_END_HEADERS))
			r = APP_HTTP2;
	}
	s->busy = 0;
	return r;
}

/* ct_settle writes the outcome of the application check to both entries
 * of the flow. */
static __always_inline void ct_settle(struct ct_key *k, struct ct_entry *ce, struct eval *e, __u8 set_flags,
				      __u8 state)
{
	struct ct_entry *rce;
	struct ct_key r;

	set_flags |= FLAG_CLASSIFIED;
	ce->flags = (ce->flags & ~(FLAG_PENDING | FLAG_MIDSTREAM)) | set_flags;
	ce->app = e->app;
	ce->rule_id = e->rule_id;
	ce->walk = 0;
	if (state)
		ce->state = state;
	ct_reverse(k, &r);
	rce = bpf_map_lookup_elem(&conntrack, &r);
	if (rce) {
		rce->flags = (rce->flags & ~(FLAG_PENDING | FLAG_MIDSTREAM)) | set_flags;
		rce->app = e->app;
		rce->rule_id = e->rule_id;
		rce->walk = 0;
		if (state)
			rce->state = state;
	}
}

/* ct_walk_server marks the reply entry of the flow of k (or ce itself when
 * it is the reply entry): the server's packets pass until the client's
 * bytes decide. */
static __always_inline void ct_walk_server(struct ct_key *k, struct ct_entry *ce, int reply)
{
	struct ct_entry *rce;
	struct ct_key r;

	if (reply) {
		ce->walk = WALK_SERVER;
		return;
	}
	ct_reverse(k, &r);
	rce = bpf_map_lookup_elem(&conntrack, &r);
	if (rce)
		rce->walk = WALK_SERVER;
}

/* h2_split reports whether pv decides gRPC otherwise than other HTTP/2. */
static __always_inline int h2_split(struct policy_value *pv, __u8 proto)
{
	struct eval a = {}, b = {};

	decide(pv, proto, APP_HTTP2, &a);
	decide(pv, proto, APP_GRPC, &b);
	return a.action != b.action || a.rule_id != b.rule_id;
}

/* hold drops a packet of a pending flow that is not the next one to judge
 * in Protect, and passes it otherwise. */
static __always_inline int hold(__u32 mode)
{
	if (mode == MODE_PROTECT) {
		count(COUNTER_PROTECT_DROP);
		return 0;
	}
	return 1;
}

/* check_app decides a pending flow on its first payload packet (for
 * HTTP/2 whose policy tells gRPC apart, on the client's first HEADERS
 * frame). */
static __always_inline int check_app(struct __sk_buff *skb, struct pkt *p, struct ct_key *k, struct ct_entry *ce,
				     __u64 ep, __u32 dir)
{
	int reply = ce->flags & FLAG_REPLY, r, walked = 0;
	__u32 mode = ce->mode, app, how = 0;
	__u16 port = reply ? p->sport : p->dport;
	struct policy_value *pv = NULL; /* looked up once, where needed */
	struct eval e = {};

	if (ce->walk && reply) {
		/* The server's side of an HTTP/2 flow the client's frames
		 * decide. */
		count(COUNTER_CT_PASS);
		return 1;
	}
	if (ce->walk) {
		/* Walking the client's HTTP/2 frames: seq is the next frame
		 * boundary. */
		__s32 d = (__s32)(p->seq - ce->seq);
		__u32 start = 0;

		walked = 1;
		if (p->any_frag) {
			app = APP_NONE;
			goto decided;
		}
		if (d > 0)
			return hold(mode); /* out of order: not the next frame */
		if (d < 0) {
			if ((__u32)(-d) >= p->payload_len)
				return 1; /* retransmitted bytes already judged */
			start = (__u32)(-d);
		}
		r = h2_walk(skb, p->payload_off, p->payload_len, start);
		if ((r & 0xff) == APP_RETRY)
			return hold(mode);
		if ((r & 0xff) == H2_MORE && ce->walk > 1) {
			ce->seq = p->seq + ((__u32)r >> 8);
			ce->walk--;
			return 1;
		}
		app = (r & 0xff) == H2_MORE ? APP_NONE : (__u32)r & 0xff;
		goto decided;
	}
	if (p->any_frag) {
		/* An IP fragment cannot be classified: it counts as no
		 * application (a TCP stack that fragments is not a client). */
		app = APP_NONE;
	} else if ((ce->flags & FLAG_SEQ) && p->seq != ce->seq) {
		/* Not the first payload bytes of this direction: out of order,
		 * or forged to be classified instead of them. Decide on the
		 * real ones; until then nothing passes in Protect. A keepalive
		 * probe (one byte below, at most one byte) passes. */
		if (p->seq == ce->seq - 1 && p->payload_len <= 1)
			return 1;
		return hold(mode);
	} else {
		if (reply)
			how |= CLS_REPLY;
		if (ce->flags & FLAG_MIDSTREAM)
			how |= CLS_MIDSTREAM;
		if (p->proto == IPPROTO_UDP)
			how |= CLS_UDP;
		app = classify_payload(skb, p->payload_off, p->payload_len, how);
		if (app == APP_RETRY)
			return hold(mode);
		if (app == APP_WAIT) {
			/* Only where the policy decides HTTP/2 or gRPC
			 * otherwise: elsewhere such bytes are no
			 * application. */
			pv = lookup_policy(ce->src_id, ce->dst_id, p->proto, port);
			if (pv && (app_mask_of(pv, p->proto) & ((1 << APP_HTTP2) | (1 << APP_GRPC)))) {
				ct_walk_server(k, ce, reply);
				return 1;
			}
			app = APP_NONE;
		}
		if (app == APP_HTTP2 && !reply && p->proto == IPPROTO_TCP) {
			if (!pv)
				pv = lookup_policy(ce->src_id, ce->dst_id, p->proto, port);
			if (pv && h2_split(pv, p->proto)) {
				r = h2_walk(skb, p->payload_off, p->payload_len, H2_PREFACE_LEN);
				if ((r & 0xff) == APP_RETRY)
					return hold(mode);
				if ((r & 0xff) != H2_MORE) {
					app = (__u32)r & 0xff;
				} else if (!(ce->flags & FLAG_MIDSTREAM)) {
					/* Preface and control frames only: the
					 * next packets go on. */
					ce->seq = p->seq + ((__u32)r >> 8);
					ce->walk = H2_WALK_PACKETS;
					ct_walk_server(k, ce, 0);
					if (!ce->sampled) {
						/* The client's first bytes, still
						 * pending; the decision reports
						 * again. */
						ce->sampled = 1;
						e.src_id = ce->src_id;
						e.dst_id = ce->dst_id;
						e.rule_id = ce->rule_id;
						e.action = ACTION_ALLOW;
						e.app = APP_HTTP2;
						emit(skb, p, ep, dir, EVENT_SAMPLE, &e, mode, FLAG_PENDING);
					}
					return 1;
				} else {
					/* Met mid-stream: the frames that
					 * decide cannot be followed. */
					app = APP_NONE;
				}
			}
		}
	}
decided:
	e.src_id = ce->src_id;
	e.dst_id = ce->dst_id;
	if (!pv)
		pv = lookup_policy(e.src_id, e.dst_id, p->proto, port);
	decide(pv, p->proto, app, &e);
	count_rule(e.rule_id);
	if (e.action == ACTION_ALLOW) {
		count(COUNTER_APP_ALLOWED);
		ct_settle(k, ce, &e, 0, 0);
		if (!ce->sampled || walked) {
			ce->sampled = 1;
			emit(skb, p, ep, dir, EVENT_SAMPLE, &e, mode, reply ? FLAG_REPLY : 0);
		}
		return 1;
	}
	count(COUNTER_APP_VIOLATION);
	if (mode == MODE_PROTECT) {
		ct_settle(k, ce, &e, 0, CT_DENIED);
		emit(skb, p, ep, dir, EVENT_VIOLATION, &e, mode, (reply ? FLAG_REPLY : 0) | FLAG_DROPPED);
		return 0;
	}
	ct_settle(k, ce, &e, FLAG_VIOLATION, 0);
	ce->sampled = 1;
	emit(skb, p, ep, dir, EVENT_VIOLATION, &e, mode, (reply ? FLAG_REPLY : 0) | FLAG_VIOLATION);
	return 1;
}

/* handle returns 1 to pass the packet, 0 to drop it. */
static __always_inline int handle(struct __sk_buff *skb, __u32 l3off, __u64 ep, __u32 dir)
{
	struct pkt p = {};
	struct ct_key k = {};
	struct ct_entry *ce;
	struct endpoint *epv;
	struct dp_config *cfg;
	struct eval e = {};
	__u32 zero = 0, gen = 0, mode, rc;
	__u64 now = 0, to = 0;
	int reply = 0, old_flow = 0;

	rc = parse(skb, l3off, &p);
	if (rc == PARSE_NON_IP) {
		count(COUNTER_NON_IP);
		return 1;
	}
	if (rc == PARSE_ND) {
		count(COUNTER_ND_PASS);
		return 1;
	}
	if (rc != PARSE_OK) {
		epv = bpf_map_lookup_elem(&endpoints, &ep);
		if (!epv) {
			count(COUNTER_NO_ENDPOINT);
			return 1;
		}
		mode = endpoint_mode(epv->identity);
		e.src_id = epv->identity;
		if (mode == MODE_PROTECT) {
			count(COUNTER_MALFORMED_DROP);
			emit(skb, &p, ep, dir, EVENT_MALFORMED, &e, mode, FLAG_DROPPED);
			return 0;
		}
		count(COUNTER_MALFORMED_PASS);
		emit(skb, &p, ep, dir, EVENT_MALFORMED, &e, mode, 0);
		return 1;
	}

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg)
		gen = cfg->generation;

	k.endpoint = ep;
	__builtin_memcpy(k.saddr, p.saddr, 16);
	__builtin_memcpy(k.daddr, p.daddr, 16);
	k.sport = p.sport;
	k.dport = p.dport;
	k.proto = p.proto;
	k.dir = dir;
	ce = bpf_map_lookup_elem(&conntrack, &k);
	if (ce) {
		now = bpf_ktime_get_coarse_ns();
		if (cfg)
			to = cfg->timeout_ns[ce->state & (CT_STATE_MAX - 1)];
		/* Another CPU may have refreshed the entry after now was read:
		 * seen_ns can be ahead of now. */
		if (to && now > ce->seen_ns && now - ce->seen_ns > to) {
			count(COUNTER_CT_EXPIRED);
			ct_delete(&k);
			ce = NULL;
		} else if (p.proto == IPPROTO_TCP && (p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
			/* A SYN opens a connection, also on the 5-tuple of a
			 * closed one: it is decided against the policy now. */
			ce = NULL;
			old_flow = 1;
		}
	}
	if (ce && ce->generation == gen) {
		if (ce->state == CT_DENIED) {
			count(COUNTER_PROTECT_DROP);
			return 0;
		}
		if (p.proto == IPPROTO_TCP)
			ct_tcp_track(&k, ce, &p);
		if (now > ce->seen_ns && now - ce->seen_ns > (to >> 4))
			ce->seen_ns = now;
		if ((p.payload_len || p.any_frag) && (ce->flags & FLAG_PENDING))
			return check_app(skb, &p, &k, ce, ep, dir);
		count(COUNTER_CT_PASS);
		if (p.payload_len && !ce->sampled) {
			ce->sampled = 1;
			e.src_id = ce->src_id;
			e.dst_id = ce->dst_id;
			e.rule_id = ce->rule_id;
			e.action = ACTION_ALLOW;
			e.app = ce->app;
			emit(skb, &p, ep, dir, EVENT_SAMPLE, &e, 0, ce->flags & (FLAG_REPLY | FLAG_VIOLATION));
		}
		return 1;
	}

	epv = bpf_map_lookup_elem(&endpoints, &ep);
	if (!epv) {
		if (ce)
			bpf_map_delete_elem(&conntrack, &k);
		count(COUNTER_NO_ENDPOINT);
		return 1;
	}
	mode = endpoint_mode(epv->identity);

	if (ce) {
		/* Policy changed since this flow was admitted: decide again in the
		 * flow's own orientation, with its application if known. */
		__u8 flags = ce->flags;

		reply = flags & FLAG_REPLY;
		evaluate(&p, epv->identity, dir, reply, (flags & FLAG_CLASSIFIED) ? ce->app : APP_UNCLASSIFIED, &e);
		if (mode == MODE_DISCOVER)
			e.pending = 0;
		count(COUNTER_REVALIDATED);
		if (e.action == ACTION_ALLOW) {
			ce->generation = gen;
			ce->rule_id = e.rule_id;
			ce->src_id = e.src_id;
			ce->dst_id = e.dst_id;
			ce->mode = mode;
			ce->flags = flags & ~(FLAG_VIOLATION | FLAG_PENDING);
			if (!e.pending)
				ce->walk = 0;
			if (e.pending && !(flags & FLAG_PENDING)) {
				/* Admitted before the rule. Once payload went by, or
				 * if the SYN was never seen, the next payload is
				 * mid-stream. */
				ce->flags |= FLAG_PENDING;
				if (ce->sampled || !(flags & FLAG_SEQ))
					ce->flags = (ce->flags | FLAG_MIDSTREAM) & ~FLAG_SEQ;
			} else if (e.pending) {
				ce->flags |= FLAG_PENDING;
			}
			if (ce->state == CT_DENIED)
				ce->state = CT_TCP_ESTABLISHED;
			if (p.proto == IPPROTO_TCP)
				ct_tcp_track(&k, ce, &p);
			ce->seen_ns = now;
			if (e.pending && (p.payload_len || p.any_frag))
				return check_app(skb, &p, &k, ce, ep, dir);
			return 1;
		}
		if (mode == MODE_PROTECT) {
			bpf_map_delete_elem(&conntrack, &k);
			count(COUNTER_PROTECT_DROP);
			emit(skb, &p, ep, dir, EVENT_VIOLATION, &e, mode, (reply ? FLAG_REPLY : 0) | FLAG_DROPPED);
			return 0;
		}
		if (!(flags & FLAG_VIOLATION) && mode == MODE_MONITOR)
			emit(skb, &p, ep, dir, EVENT_VIOLATION, &e, mode, (reply ? FLAG_REPLY : 0) | FLAG_VIOLATION);
		ce->generation = gen;
		ce->rule_id = e.rule_id;
		ce->src_id = e.src_id;
		ce->dst_id = e.dst_id;
		ce->mode = mode;
		ce->flags = (flags & ~FLAG_PENDING) | FLAG_VIOLATION;
		ce->walk = 0;
		if (ce->state == CT_DENIED)
			ce->state = CT_TCP_ESTABLISHED;
		ce->seen_ns = now;
		return 1;
	}

	evaluate(&p, epv->identity, dir, 0, APP_UNCLASSIFIED, &e);
	if (e.action != ACTION_ALLOW && p.proto == IPPROTO_TCP && !(p.tcp_flags & TCP_SYN)) {
		/* Mid-stream TCP with no conntrack entry (entry evicted, or flow
		 * older than the program): the packet may be a reply of an
		 * allowed flow. A non-SYN packet cannot open a connection. */
		struct eval r = {};

		evaluate(&p, epv->identity, dir, 1, APP_UNCLASSIFIED, &r);
		if (r.action == ACTION_ALLOW) {
			e = r;
			reply = 1;
		}
	}
	if (mode == MODE_DISCOVER)
		e.pending = 0;
	if (!e.pending)
		count_rule(e.rule_id);

	if (e.action == ACTION_ALLOW) {
		__u8 flags = (reply ? FLAG_REPLY : 0) | (e.pending ? FLAG_PENDING : 0);

		if (mode == MODE_DISCOVER) {
			count(COUNTER_DISCOVER_PASS);
			emit(skb, &p, ep, dir, EVENT_NEW_FLOW, &e, mode, flags);
		} else {
			count(COUNTER_NEW_ALLOW);
			if (p.payload_len && !e.pending)
				emit(skb, &p, ep, dir, EVENT_SAMPLE, &e, mode, flags);
		}
		if (e.pending && p.proto == IPPROTO_TCP && !(p.tcp_flags & TCP_SYN))
			flags |= FLAG_MIDSTREAM;
		ct_create(&p, ep, dir, &e, gen, flags, mode, p.payload_len != 0 && !e.pending);
		if (e.pending && (p.payload_len || p.any_frag)) {
			ce = bpf_map_lookup_elem(&conntrack, &k);
			if (ce)
				return check_app(skb, &p, &k, ce, ep, dir);
		}
		return 1;
	}
	switch (mode) {
	case MODE_PROTECT:
		if (old_flow)
			ct_delete(&k);
		count(COUNTER_PROTECT_DROP);
		emit(skb, &p, ep, dir, EVENT_VIOLATION, &e, mode, FLAG_DROPPED);
		return 0;
	case MODE_MONITOR:
		count(COUNTER_MONITOR_PASS);
		emit(skb, &p, ep, dir, EVENT_VIOLATION, &e, mode, FLAG_VIOLATION);
		break;
	default:
		count(COUNTER_DISCOVER_PASS);
		emit(skb, &p, ep, dir, EVENT_NEW_FLOW, &e, mode, FLAG_VIOLATION);
		break;
	}
	ct_create(&p, ep, dir, &e, gen, FLAG_VIOLATION, mode, p.payload_len != 0);
	return 1;
}

/* handle_tcx is handle for the tcx programs, one copy verified once: the
 * ingress program runs it twice, for the sender and for a local receiver,
 * which inline would not fit the stack. */
__attribute__((noinline)) int handle_tcx(struct __sk_buff *skb, __u64 ep, __u32 dir)
{
	if (!skb)
		return 1;
	return handle(skb, ETH_HLEN, ep, dir);
}

/* local_target returns the local endpoint a packet that left the workload
 * behind ifindex may be delivered to directly, or NULL for the routed path:
 * not plain IPv4 or IPv6, a fragment, IPv4 options or IPv6 extension
 * headers, neighbour discovery, TTL or hop limit that routing would
 * exhaust, a destination that is not a workload of this node, or the
 * sender itself. */
static __always_inline struct local_endpoint *local_target(struct __sk_buff *skb, __u32 ifindex, __u8 *h)
{
	struct local_key lk = {};
	struct local_endpoint *le;

	if (skb->vlan_present)
		return NULL;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, h, 20))
			return NULL;
		/* Options (source routes, record route) are the host's to
		 * process: only a plain header is delivered directly. */
		if (h[0] != 0x45)
			return NULL;
		if ((h[6] & 0x3f) || h[7]) /* MF or a fragment offset */
			return NULL;
		if (h[8] <= 1)
			return NULL;
		lk.addr[10] = 0xff;
		lk.addr[11] = 0xff;
		__builtin_memcpy(&lk.addr[12], &h[16], 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, h, 40))
			return NULL;
		if ((h[0] >> 4) != 6 || h[7] <= 1)
			return NULL;
		if (h[6] == NEXTHDR_ICMPV6) {
			__u8 type;

			if (bpf_skb_load_bytes(skb, ETH_HLEN + 40, &type, 1))
				return NULL;
			if ((type >= 130 && type <= 137) || type == 143)
				return NULL;
		} else if (h[6] != IPPROTO_TCP && h[6] != IPPROTO_UDP) {
			return NULL;
		}
		__builtin_memcpy(lk.addr, &h[24], 16);
	} else {
		return NULL;
	}
	le = bpf_map_lookup_elem(&local_endpoints, &lk);
	if (!le || le->ifindex == ifindex || !le->ifindex)
		return NULL;
	return le;
}

/* local_deliver hands a packet that left the workload behind ifindex, and
 * passed its own decision, straight to a workload of this node: the
 * receiver's decision (what its egress hook would decide), then the header
 * routing would write (MACs, TTL or hop limit), then bpf_redirect_peer into
 * the receiver's namespace. Anything else takes the routed path. */
static __always_inline int local_deliver(struct __sk_buff *skb, __u32 ifindex)
{
	struct local_endpoint *le;
	__u8 h[40];
	__u8 macs[12];
	__u32 to;

	le = local_target(skb, ifindex, h);
	if (!le)
		return TCX_NEXT;
	to = le->ifindex;
	__builtin_memcpy(macs, le->mac, 12);
	if (!handle_tcx(skb, to, DIR_IN))
		return TCX_DROP;
	if (bpf_skb_store_bytes(skb, 0, macs, 12, 0))
		return TCX_NEXT;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u16 old = bpf_htons(((__u16)h[8] << 8) | h[9]);
		__u16 new = bpf_htons(((__u16)(h[8] - 1) << 8) | h[9]);
		__u8 ttl = h[8] - 1;

		if (bpf_l3_csum_replace(skb, ETH_HLEN + 10, old, new, 2))
			return TCX_DROP;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + 8, &ttl, 1, 0))
			return TCX_DROP;
	} else {
		__u8 hops = h[7] - 1;

		if (bpf_skb_store_bytes(skb, ETH_HLEN + 7, &hops, 1, 0))
			return TCX_DROP;
	}
	count(COUNTER_LOCAL_REDIRECT);
	return bpf_redirect_peer(to, 0);
}

/* tcx on the host side of a workload's veth: ingress carries packets that
 * leave the workload, egress packets that go to it. A packet to another
 * workload of this node is decided for both ends at the sender's ingress
 * and delivered into the receiver's namespace, past host routing and the
 * receiver's egress hook. */
SEC("tc")
int palisade_tcx_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;

	if (!handle_tcx(skb, ifindex, DIR_OUT))
		return TCX_DROP;
	return local_deliver(skb, ifindex);
}

SEC("tc")
int palisade_tcx_egress(struct __sk_buff *skb)
{
	return handle_tcx(skb, skb->ifindex, DIR_IN) ? TCX_NEXT : TCX_DROP;
}

/* cgroup_skb on a workload's cgroup, for workloads without a veth. The
 * packet starts at the network header. */
SEC("cgroup_skb/ingress")
int palisade_cgroup_ingress(struct __sk_buff *skb)
{
	return handle(skb, 0, bpf_skb_cgroup_id(skb) | CGROUP_KEY_BIT, DIR_IN);
}

SEC("cgroup_skb/egress")
int palisade_cgroup_egress(struct __sk_buff *skb)
{
	return handle(skb, 0, bpf_skb_cgroup_id(skb) | CGROUP_KEY_BIT, DIR_OUT);
}
