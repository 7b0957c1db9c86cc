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
 *      decided otherwise than the port, a TCP flow is admitted pending and
 *      its first payload packet (either direction) is classified here; the
 *      flow is then confirmed, or reported and (Protect) dropped for good.
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
#define CLASSIFY_MAX 32 /* payload bytes the classifier reads */
#define APP_SLOTS 8
#define APP_UNCLASSIFIED 0xff
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

/* Applications the classifier names. Others are enforced by port only. */
enum app {
	APP_NONE = 0, /* classified: none of those below */
	APP_HTTP = 1,
	APP_HTTP2 = 2,
	APP_TLS = 3,
	APP_SSH = 4,
	APP_REDIS = 5,
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
 * bit a of app_mask says a flow of application a (TCP) is decided
 * otherwise: allowed if bit a of app_allow is set, denied otherwise, by
 * rule app_rule[a]. */
struct policy_value {
	__u32 rule_id;
	__u8 action;
	__u8 app_mask;
	__u8 app_allow;
	__u8 pad;
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
	__u16 pad;
	__u32 seq; /* TCP: sequence number of this direction's first payload byte */
	__u32 pad2;
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

static __always_inline int parse_ipv4(struct __sk_buff *skb, __u32 off, struct pkt *p)
{
	__u8 h[20];
	__u32 ihl, tot, fo;

	if (bpf_skb_load_bytes(skb, off, h, 20))
		return PARSE_MALFORMED;
	if ((h[0] >> 4) != 4)
		return PARSE_MALFORMED;
	ihl = (h[0] & 0xf) * 4;
	tot = ((__u32)h[2] << 8) | h[3];
	if (ihl < 20 || tot < ihl)
		return PARSE_MALFORMED;
	fo = ((__u32)h[6] << 8) | h[7];
	p->family = 4;
	p->proto = h[9];
	p->saddr[10] = 0xff;
	p->saddr[11] = 0xff;
	__builtin_memcpy(&p->saddr[12], &h[12], 4);
	p->daddr[10] = 0xff;
	p->daddr[11] = 0xff;
	__builtin_memcpy(&p->daddr[12], &h[16], 4);
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

/* decide sets the verdict of pv for a flow of application app
 * (APP_UNCLASSIFIED: not known yet). */
static __always_inline void decide(struct policy_value *pv, __u8 proto, __u32 app, struct eval *e)
{
	e->pending = 0;
	e->app = app == APP_UNCLASSIFIED ? APP_NONE : app;
	if (!pv) {
		e->rule_id = 0;
		e->action = ACTION_NONE;
		return;
	}
	e->rule_id = pv->rule_id;
	e->action = pv->action;
	if (!pv->app_mask || proto != IPPROTO_TCP)
		return;
	if (app == APP_UNCLASSIFIED) {
		/* Some application is decided otherwise: admit the flow while
		 * any outcome can still be allow, and decide on its payload. */
		if (pv->action == ACTION_ALLOW || pv->app_allow) {
			e->action = ACTION_ALLOW;
			e->pending = 1;
		}
		return;
	}
	if (app < APP_SLOTS && (pv->app_mask & (1 << app))) {
		e->rule_id = pv->app_rule[app & (APP_SLOTS - 1)];
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
 * them. b holds the first CLASSIFY_MAX payload bytes, zero past the end. */
/* http_target checks what follows a request method: one space, then the
 * first byte of a request target. */
static __always_inline int http_target(__u8 sp, __u8 c)
{
	return sp == ' ' && c > ' ' && c != 0x7f;
}

static __always_inline int is_http_request(__u8 *b)
{
	if (b[0] == 'G' && b[1] == 'E' && b[2] == 'T')
		return http_target(b[3], b[4]);
	if (b[0] == 'P' && b[1] == 'U' && b[2] == 'T')
		return http_target(b[3], b[4]);
	if (b[0] == 'P' && b[1] == 'O' && b[2] == 'S' && b[3] == 'T')
		return http_target(b[4], b[5]);
	if (b[0] == 'H' && b[1] == 'E' && b[2] == 'A' && b[3] == 'D')
		return http_target(b[4], b[5]);
	if (b[0] == 'P' && b[1] == 'A' && b[2] == 'T' && b[3] == 'C' && b[4] == 'H')
		return http_target(b[5], b[6]);
	if (b[0] == 'T' && b[1] == 'R' && b[2] == 'A' && b[3] == 'C' && b[4] == 'E')
		return http_target(b[5], b[6]);
	if (b[0] == 'D' && b[1] == 'E' && b[2] == 'L' && b[3] == 'E' && b[4] == 'T' && b[5] == 'E')
		return http_target(b[6], b[7]);
	if (b[0] == 'O' && b[1] == 'P' && b[2] == 'T' && b[3] == 'I' && b[4] == 'O' && b[5] == 'N' && b[6] == 'S')
		return http_target(b[7], b[8]);
	if (b[0] == 'C' && b[1] == 'O' && b[2] == 'N' && b[3] == 'N' && b[4] == 'E' && b[5] == 'C' && b[6] == 'T')
		return http_target(b[7], b[8]);
	return 0;
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

static __always_inline int is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int resp_tail(__u8 a, __u8 b, __u8 c)
{
	return a == '\r' && b == '\n' && c == '$';
}

static __always_inline int is_redis(__u8 *b)
{
	if (b[0] == '*') {
		/* RESP array: one to five digits, then "\r\n$". */
		if (!is_digit(b[1]))
			return 0;
		if (!is_digit(b[2]))
			return resp_tail(b[2], b[3], b[4]);
		if (!is_digit(b[3]))
			return resp_tail(b[3], b[4], b[5]);
		if (!is_digit(b[4]))
			return resp_tail(b[4], b[5], b[6]);
		if (!is_digit(b[5]))
			return resp_tail(b[5], b[6], b[7]);
		if (!is_digit(b[6]))
			return resp_tail(b[6], b[7], b[8]);
		return 0;
	}
#define UP(c) ((c) & 0xdf)
	if ((UP(b[0]) == 'P' && UP(b[1]) == 'I' && UP(b[2]) == 'N' && UP(b[3]) == 'G') ||
	    (UP(b[0]) == 'I' && UP(b[1]) == 'N' && UP(b[2]) == 'F' && UP(b[3]) == 'O'))
		return b[4] == '\r' && b[5] == '\n';
	/* Inline commands with arguments: matched on the command alone. */
	if (UP(b[0]) == 'A' && UP(b[1]) == 'U' && UP(b[2]) == 'T' && UP(b[3]) == 'H' && b[4] == ' ')
		return 1;
	if (UP(b[0]) == 'H' && UP(b[1]) == 'E' && UP(b[2]) == 'L' && UP(b[3]) == 'L' && UP(b[4]) == 'O' &&
	    b[5] == ' ')
		return 1;
	return UP(b[0]) == 'S' && UP(b[1]) == 'E' && UP(b[2]) == 'L' && UP(b[3]) == 'E' && UP(b[4]) == 'C' &&
	       UP(b[5]) == 'T' && b[6] == ' ';
#undef UP
}

/* classify names the application of a flow from its first payload packet
 * (p has payload), sent by the client unless reply. A flow met mid-stream
 * (entries lost) is past its opening: any TLS record names TLS. */
static __always_inline __u32 classify(struct __sk_buff *skb, struct pkt *p, int reply, int midstream)
{
	__u8 b[CLASSIFY_MAX + 8] = {};
	__u32 n = p->payload_len;

	if (n > CLASSIFY_MAX)
		n = CLASSIFY_MAX;
	n = ((n - 1) & (CLASSIFY_MAX - 1)) + 1;
	if (bpf_skb_load_bytes(skb, p->payload_off, b, n))
		return APP_NONE;
	if (b[0] == 'S' && b[1] == 'S' && b[2] == 'H' && b[3] == '-')
		return APP_SSH;
	if (is_tls(b, reply ? 2 : 1) || (midstream && is_tls_record(b)))
		return APP_TLS;
	if (reply)
		return b[0] == 'H' && b[1] == 'T' && b[2] == 'T' && b[3] == 'P' && b[4] == '/' && b[5] == '1' &&
			       b[6] == '.'
			   ? APP_HTTP
			   : APP_NONE;
	if (b[0] == 'P' && b[1] == 'R' && b[2] == 'I' && b[3] == ' ' && b[4] == '*' && b[5] == ' ' && b[6] == 'H' &&
	    b[7] == 'T' && b[8] == 'T' && b[9] == 'P' && b[10] == '/' && b[11] == '2' && b[12] == '.' && b[13] == '0')
		return APP_HTTP2;
	if (is_http_request(b))
		return APP_HTTP;
	if (is_redis(b))
		return APP_REDIS;
	return APP_NONE;
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
	if (state)
		ce->state = state;
	ct_reverse(k, &r);
	rce = bpf_map_lookup_elem(&conntrack, &r);
	if (rce) {
		rce->flags = (rce->flags & ~(FLAG_PENDING | FLAG_MIDSTREAM)) | set_flags;
		rce->app = e->app;
		rce->rule_id = e->rule_id;
		if (state)
			rce->state = state;
	}
}

/* check_app decides a pending flow on its first payload packet. */
static __always_inline int check_app(struct __sk_buff *skb, struct pkt *p, struct ct_key *k, struct ct_entry *ce,
				     __u64 ep, __u32 dir)
{
	int reply = ce->flags & FLAG_REPLY;
	__u32 mode = ce->mode, app;
	struct eval e = {};

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
		if (mode == MODE_PROTECT) {
			count(COUNTER_PROTECT_DROP);
			return 0;
		}
		return 1;
	} else {
		app = classify(skb, p, reply, ce->flags & FLAG_MIDSTREAM);
	}
	e.src_id = ce->src_id;
	e.dst_id = ce->dst_id;
	decide(lookup_policy(e.src_id, e.dst_id, p->proto, reply ? p->sport : p->dport), p->proto, app, &e);
	count_rule(e.rule_id);
	if (e.action == ACTION_ALLOW) {
		count(COUNTER_APP_ALLOWED);
		ct_settle(k, ce, &e, 0, 0);
		if (!ce->sampled) {
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
		if (e.pending && !(p.tcp_flags & TCP_SYN))
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

/* tcx on the host side of a workload's veth: ingress carries packets that
 * leave the workload, egress packets that go to it. */
SEC("tc")
int palisade_tcx_ingress(struct __sk_buff *skb)
{
	return handle(skb, ETH_HLEN, skb->ifindex, DIR_OUT) ? TCX_NEXT : TCX_DROP;
}

SEC("tc")
int palisade_tcx_egress(struct __sk_buff *skb)
{
	return handle(skb, ETH_HLEN, skb->ifindex, DIR_IN) ? TCX_NEXT : TCX_DROP;
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
