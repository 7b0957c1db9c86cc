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
 *      a hit whose policy generation is current passes on that one lookup
 *   -> otherwise: endpoint (ifindex or cgroup) -> identity and mode,
 *      remote address -> identity (LPM trie), policy LPM trie keyed by
 *      (client identity, server identity, protocol, server port prefix),
 *      decision by mode, ring buffer event, conntrack entries for both
 *      directions.
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
	COUNTER_MAX,
};

/* Flags in ct_entry.flags and flow_event.flags. */
#define FLAG_REPLY 0x1     /* packet goes from server to client */
#define FLAG_VIOLATION 0x2 /* flow allowed only because of Discover/Monitor */
#define FLAG_DROPPED 0x4   /* packet was dropped */
#define FLAG_FRAGMENT 0x8  /* packet is a non-first fragment */

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

struct policy_value {
	__u32 rule_id;
	__u8 action;
	__u8 pad[3];
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
	__u32 generation;
	__u32 rule_id;
	__u32 src_id; /* client identity */
	__u32 dst_id; /* server identity */
	__u8 flags;
	__u8 sampled;
	__u16 pad;
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
	__u8 pad;
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
};

static __always_inline void evaluate(struct pkt *p, __u32 ep_id, __u32 dir, int reply, struct eval *e)
{
	struct lpm_key lk = {.prefixlen = 128};
	struct policy_key pk = {.prefixlen = 88};
	struct policy_value *pv;
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

	pk.src_id = e->src_id;
	pk.dst_id = e->dst_id;
	pk.proto = p->proto;
	pk.port[0] = port >> 8;
	pk.port[1] = port & 0xff;
	pv = bpf_map_lookup_elem(&policy, &pk);
	if (!pv) {
		pk.proto = 0;
		pv = bpf_map_lookup_elem(&policy, &pk);
	}
	if (pv) {
		e->rule_id = pv->rule_id;
		e->action = pv->action;
	} else {
		e->rule_id = 0;
		e->action = ACTION_NONE;
	}
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
	ev->pad = 0;
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

static __always_inline void ct_create(struct pkt *p, __u64 ep, __u32 dir, struct eval *e, __u32 gen,
				      __u8 flags, int sampled)
{
	struct ct_key k = {};
	struct ct_entry v = {};

	v.created_ns = bpf_ktime_get_ns();
	v.generation = gen;
	v.rule_id = e->rule_id;
	v.src_id = e->src_id;
	v.dst_id = e->dst_id;

	k.endpoint = ep;
	k.proto = p->proto;
	__builtin_memcpy(k.saddr, p->saddr, 16);
	__builtin_memcpy(k.daddr, p->daddr, 16);
	k.sport = p->sport;
	k.dport = p->dport;
	k.dir = dir;
	v.flags = flags;
	v.sampled = sampled;
	bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);

	__builtin_memcpy(k.saddr, p->daddr, 16);
	__builtin_memcpy(k.daddr, p->saddr, 16);
	k.sport = p->dport;
	k.dport = p->sport;
	k.dir = dir ^ 1;
	v.flags = flags ^ FLAG_REPLY;
	v.sampled = 0;
	bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);
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
	int reply = 0;

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
	if (ce && ce->generation == gen) {
		count(COUNTER_CT_PASS);
		if (p.payload_len && !ce->sampled) {
			ce->sampled = 1;
			e.src_id = ce->src_id;
			e.dst_id = ce->dst_id;
			e.rule_id = ce->rule_id;
			e.action = ACTION_ALLOW;
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
		 * flow's own orientation. */
		__u8 flags = ce->flags;

		reply = flags & FLAG_REPLY;
		evaluate(&p, epv->identity, dir, reply, &e);
		count(COUNTER_REVALIDATED);
		if (e.action == ACTION_ALLOW) {
			ce->generation = gen;
			ce->rule_id = e.rule_id;
			ce->src_id = e.src_id;
			ce->dst_id = e.dst_id;
			ce->flags = flags & ~FLAG_VIOLATION;
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
		ce->flags = flags | FLAG_VIOLATION;
		return 1;
	}

	evaluate(&p, epv->identity, dir, 0, &e);
	if (e.action != ACTION_ALLOW && p.proto == IPPROTO_TCP && !(p.tcp_flags & TCP_SYN)) {
		/* Mid-stream TCP with no conntrack entry (entry evicted, or flow
		 * older than the program): the packet may be a reply of an
		 * allowed flow. A non-SYN packet cannot open a connection. */
		struct eval r = {};

		evaluate(&p, epv->identity, dir, 1, &r);
		if (r.action == ACTION_ALLOW) {
			e = r;
			reply = 1;
		}
	}
	count_rule(e.rule_id);

	if (e.action == ACTION_ALLOW) {
		if (mode == MODE_DISCOVER) {
			count(COUNTER_DISCOVER_PASS);
			emit(skb, &p, ep, dir, EVENT_NEW_FLOW, &e, mode, reply ? FLAG_REPLY : 0);
		} else {
			count(COUNTER_NEW_ALLOW);
			if (p.payload_len)
				emit(skb, &p, ep, dir, EVENT_SAMPLE, &e, mode, reply ? FLAG_REPLY : 0);
		}
		ct_create(&p, ep, dir, &e, gen, reply ? FLAG_REPLY : 0, p.payload_len != 0);
		return 1;
	}
	switch (mode) {
	case MODE_PROTECT:
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
	ct_create(&p, ep, dir, &e, gen, FLAG_VIOLATION, p.payload_len != 0);
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
