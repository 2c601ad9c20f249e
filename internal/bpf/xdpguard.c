//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// xdpguard: drop banned sources and rate-limit new connections to the mail
// ports, per masked source, before the kernel allocates anything for them.
//
// Time is CLOCK_MONOTONIC at tick resolution: bpf_ktime_get_coarse_ns(),
// read at most once per tick and CPU (see now_ns). The precise clock costs
// ~30 ns per packet under virtualization and the coarse one ~14 ns, more
// than the rest of the ban path; bans and rate windows need no sub-tick time.
//
// Verdict order (the Go reference model, internal/datapath/model_test.go,
// mirrors it):
//   1. parse Ethernet (+2 VLAN tags) and IPv4/IPv6; no readable source: PASS.
//   2. CIDR trie, only when it holds rules: allow -> PASS, never counted;
//      deny -> DROP.
//   3. ban map, on the source masked to the ban granularity -> DROP while the
//      ban's monotonic deadline is in the future.
//   4. a TCP SYN to a protected port: a source that finds no slot in the
//      SYN tracker (syntrack.h) passes, untracked. A retransmission of one
//      of the source's last SYN_FPS counted SYNs passes uncounted. Under admission
//      (FLAG_ADMISSION), a source that is not known-good gets one new
//      connection per admit_interval_ns; the others drop, uncounted. Then
//      the source's rate limiter: over the rate, a source that is not
//      known-good is banned here and userspace hears of it through the ring
//      buffer; a known-good one passes.
// Monitor mode turns every DROP into PASS and counts it as "would drop".
// Malformed packets are never dropped for being malformed.

#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "parsing.h"
#include "xdpguard.h"
#include "bantable.h"
#include "syntrack.h"
#include "clock.h"
#include "shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Sizes are defaults: the loader overrides max_entries before loading.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 20);
	__type(key, struct in6_key);
	__type(value, struct ban);
} bans_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct cidr_v4_key);
	__type(value, struct cidr_rule);
} cidr_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct cidr_v6_key);
	__type(value, struct cidr_rule);
} cidr_v6 SEC(".maps");

// Number of rules per trie, kept by userspace, so that the common case of an
// empty trie costs an inlined array read instead of a trie walk.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} cidr_count SEC(".maps");

// One element: a packet reads its CPU's counters with a single lookup.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

// Types only userspace reads; naming them here puts them in BTF, from which
// bpf2go generates their Go twins.
const struct event *unused_event __attribute__((unused));
const enum origin *unused_origin __attribute__((unused));
const enum reason *unused_reason __attribute__((unused));
const enum cidr_action *unused_cidr_action __attribute__((unused));
const enum config_flags *unused_config_flags __attribute__((unused));
const enum stat *unused_stat __attribute__((unused));
const enum ban_table *unused_ban_table __attribute__((unused));
const enum syn_fp *unused_syn_fp __attribute__((unused));

static __always_inline void count(struct counters *c, __u32 idx)
{
	c->n[idx]++;
}

// What decide() reads of a packet's TCP header, copied out as numbers: a
// packet pointer kept for later would carry each parse path's offsets into
// decide(), and the verifier could no longer merge its states there. Two
// words, not a field each: they live across the CIDR trie's and the
// clock's helper calls, where every word is a stack spill and a reload.
struct pkt {
	__u32 tcp;	// destination port (host order) | TCP_SANE | TCP_SYN; 0: no TCP
	__u64 fp;	// a SYN's fingerprint: source port << 32 | sequence number
};

#define TCP_SANE (1U << 16)	// a sane TCP header was found
#define TCP_SYN (1U << 17)	// SYN without ACK, RST or FIN

// Every pass goes through here; see drop().
static __always_inline int pass(struct counters *c)
{
	count(c, STAT_PASS);
	return XDP_PASS;
}

static __always_inline void parse_tcp(struct counters *c, void *cur, void *data_end,
				      struct pkt *p)
{
	struct tcphdr *tcp = cur;

	if ((void *)(tcp + 1) > data_end || tcp->doff < 5) {
		count(c, STAT_MALFORMED);
		return;
	}
	p->tcp = bpf_ntohs(tcp->dest) | TCP_SANE;
	// The flags as one byte: the bitfields cost a shift and a mask each.
	if ((tcp_flag_byte(tcp) & (TCPHDR_SYN | TCPHDR_ACK | TCPHDR_RST | TCPHDR_FIN)) == TCPHDR_SYN) {
		p->tcp |= TCP_SYN;
		p->fp = (__u64)bpf_ntohs(tcp->source) << 32 | bpf_ntohl(tcp->seq);
	}
}

static __always_inline int port_protected(const struct config *cfg, __u16 port)
{
	return (cfg->ports[port >> 6] >> (port & 63)) & 1;
}

// Computed where it is used, not once on top of decide(): one value less
// to keep across the ban lookup.
static __always_inline int to_port(const struct config *cfg, const struct pkt *p)
{
	return (p->tcp & TCP_SANE) && port_protected(cfg, (__u16)p->tcp);
}

static __always_inline int expired(__u64 deadline, __u64 now)
{
	return deadline != 0 && deadline <= now;
}

// Whether the family's trie holds rules: the common case of an empty
// trie costs an inlined array read instead of a trie walk.
static __always_inline int cidr_rules(__u32 idx)
{
	__u32 *n = bpf_map_lookup_elem(&cidr_count, &idx);

	return n && *n;
}

// The verdict of a CIDR rule found for the unmasked source (an allow for
// one host inside a banned /64 must match that host): 0 when it has
// expired, else CIDR_ALLOW or CIDR_DENY.
static __always_inline int cidr_action(struct counters *c, const struct cidr_rule *r)
{
	if (!r || expired(r->expires_ns, now_ns(c)))
		return 0;
	return r->action;
}

static __always_inline int cidr_verdict_v4(struct counters *c, __u32 src)
{
	if (!cidr_rules(0))
		return 0;

	struct cidr_v4_key k = { .prefixlen = 32, .addr = src };

	return cidr_action(c, bpf_map_lookup_elem(&cidr_v4, &k));
}

static __always_inline int cidr_verdict_v6(struct counters *c, const struct in6_key *src)
{
	if (!cidr_rules(1))
		return 0;

	struct cidr_v6_key k = { .prefixlen = 128 };

	__builtin_memcpy(k.addr, src, sizeof(k.addr));
	return cidr_action(c, bpf_map_lookup_elem(&cidr_v6, &k));
}

static __always_inline void auto_ban(struct counters *c, const struct config *cfg,
				     struct syn_state *s, void *key, __u32 keylen, __u64 now)
{
	__u64 expires = now + cfg->ban_ns;

	if (keylen == 4) {
		// Rounded up: a ban never ends before its duration.
		__u64 exp = (expires + (1ULL << BAN_TICK_SHIFT) - 1) >> BAN_TICK_SHIFT;

		if (exp >= BAN_EXP_FOREVER)
			exp = BAN_EXP_FOREVER - 1;
		int written = ban_v4(cfg, *(__u32 *)key, exp, now >> BAN_TICK_SHIFT);

		if (written == 0)
			count(c, STAT_BAN_TABLE_FULL);
		else if (written < 0)
			count(c, STAT_BAN_DEFERRED);
		expires = exp << BAN_TICK_SHIFT;
	} else {
		struct ban b = {
			.expires_ns = expires,
			.origin = ORIGIN_KERNEL,
			.reason = REASON_SYN_RATE,
		};

		bpf_map_update_elem(&bans_v6, key, &b, BPF_ANY);
	}
	// A fresh start when the ban ends, not an instant re-ban. The source
	// keeps its slot, idle: any new source may take it.
	__builtin_memset(s, 0, sizeof(*s));
	count(c, STAT_AUTOBAN);

	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(c, STAT_EVENT_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	if (keylen == 4)
		__builtin_memcpy(e->addr, key, 4);
	else
		__builtin_memcpy(e->addr, key, 16);
	e->family = keylen == 4 ? 4 : 6;
	e->prefixlen = keylen == 4 ? cfg->prefix_v4 : cfg->prefix_v6;
	e->reason = REASON_SYN_RATE;
	e->threshold = cfg->rate_threshold;
	e->ts_ns = now;
	e->expires_ns = expires;
	bpf_ringbuf_submit(e, 0);
}

// Every drop goes through here, and every pass through pass(): each packet
// ends in exactly one of STAT_PASS, STAT_DROP_BAN, STAT_DROP_CIDR and
// STAT_DROP_ADMISSION, which Stats.Seen() relies on.
// Monitor mode turns the drop into a pass and counts `would` instead; each
// caller names both counters, so the order of enum stat carries no meaning.
// (One exit that records a verdict, as xdp-tools' xdp_stats_record_action()
// does, was tried twice. The second time decide() returned a packed
// verdict and every path met in one record(): unbanned non-SYN packets
// cost 2.48x the empty program against 2.15x here, SYNs 4.20x against
// 3.99x, in one interleaved bench-bpf run; the first attempt cost
// 0.2-0.4x as well. The compiler cannot fold the dispatch on the verdict
// into the paths that already know it.)
static __always_inline int drop(const struct config *cfg, struct counters *c, __u32 stat,
				__u32 would)
{
	if (cfg->flags & FLAG_MONITOR) {
		count(c, would);
		count(c, STAT_PASS);
		return XDP_PASS;
	}
	count(c, stat);
	return XDP_DROP;
}

// Whether the source's ban is in force; *now is read only when a ban's
// deadline has to be checked, and stays 0 otherwise.
static __always_inline int banned(const struct config *cfg, struct counters *c, void *key,
				  __u32 keylen, __u64 *now)
{
	if (keylen == 4)
		return lookup_v4(cfg, c, *(__u32 *)key, now);

	struct ban *b = bpf_map_lookup_elem(&bans_v6, key);

	if (!b)
		return 0;
	if (!b->expires_ns)
		return 1;
	*now = now_ns(c);
	return !expired(b->expires_ns, *now);
}

// Everything after parsing, for one family, given the CIDR rule's verdict
// on the unmasked source (cidr_verdict_v4/_v6). Inlined once per family with
// constant maps: a lookup whose map differs by path cannot be inlined by the
// verifier and costs an indirect call.
static __always_inline int decide(const struct config *cfg, struct counters *c, const struct pkt *p,
				  int cidr, void *good, void *key, __u32 keylen)
{
	__u64 now = 0;

	if (cidr == CIDR_ALLOW) {
		count(c, STAT_ALLOW);
		return pass(c);
	}
	if (cidr == CIDR_DENY)
		return drop(cfg, c, STAT_DROP_CIDR, STAT_WOULD_DROP_CIDR);
	if (banned(cfg, c, key, keylen, &now) &&
	    (!(cfg->flags & FLAG_SCOPE_PORTS) || to_port(cfg, p)))
		return drop(cfg, c, STAT_DROP_BAN, STAT_WOULD_DROP_BAN);

	if (!(p->tcp & TCP_SYN) || !to_port(cfg, p))
		goto pass;
	if (!cfg->rate_interval_ns && !(cfg->flags & FLAG_ADMISSION))
		goto pass;
	count(c, STAT_SYN);
	if (!now)
		now = now_ns(c);

	struct syn_state *s = keylen == 4 ? syn_track_v4(cfg, *(__u32 *)key, now) :
					    syn_track_v6(cfg, key, now);

	if (!s) {
		count(c, STAT_SYN_UNTRACKED);
		goto pass;
	}

	__u64 fp = p->fp;
	__u8 tick = now >> FP_TICK_SHIFT;

	if (retransmitted(s, cfg, fp, tick)) {
		count(c, STAT_SYN_RETRANS);
		goto pass;
	}

	// Known-good is looked up only where it changes the verdict: under
	// admission, or over the rate. A source both over the rate and under
	// admission is looked up twice; one flag less to carry keeps the
	// verifier's state count down.
	//
	// Under admission a source that is not known-good opens one connection
	// per interval. Its first SYN passes (a never-seen user gets in at
	// once, and its retransmissions with it), but a bot whose connection
	// was just evicted cannot take the slot straight back. A dropped SYN
	// is neither counted nor remembered: the client's retransmission of it
	// is a new try, which passes once the interval is over. Plain stores,
	// as in over_rate(): CPUs racing on one source may each admit one.
	if ((cfg->flags & FLAG_ADMISSION) && !bpf_map_lookup_elem(good, key)) {
		if (s->admit_ns > now)
			return drop(cfg, c, STAT_DROP_ADMISSION, STAT_WOULD_DROP_ADMISSION);
		s->admit_ns = now + cfg->admit_interval_ns;
	}
	if (cfg->rate_interval_ns && over_rate(s, cfg, now)) {
		if (!bpf_map_lookup_elem(good, key)) {
			auto_ban(c, cfg, s, key, keylen, now);
			return drop(cfg, c, STAT_DROP_BAN, STAT_WOULD_DROP_BAN);
		}
		count(c, STAT_KNOWN_GOOD);
	}
	s->fp[s->syns & (SYN_FPS - 1)] = (__u64)tick << 48 | fp;
	s->syns++;
pass:
	return pass(c);
}

// The IPv4 header at cur, and everything after it.
static __always_inline int ipv4(const struct config *cfg, struct counters *c, void *cur,
				void *data_end)
{
	struct iphdr *ip = cur;
	struct pkt p = {};

	if ((void *)(ip + 1) > data_end) {
		count(c, STAT_MALFORMED);
		return pass(c);
	}
	// The source sits at a fixed offset, so a ban applies even when the
	// rest of the header is nonsense; the stack drops such packets anyway.
	__u32 src = ip->saddr;

	if (ip->version != 4 || ip->ihl < 5)
		count(c, STAT_MALFORMED);
	else if (!(ip->frag_off & bpf_htons(IP_OFFSET)) && ip->protocol == IPPROTO_TCP)
		parse_tcp(c, cur + ip->ihl * 4, data_end, &p);

	int cidr = cidr_verdict_v4(c, src);
	__u32 key = src & cfg->mask_v4;

	return decide(cfg, c, &p, cidr, &good_v4, &key, sizeof(key));
}

// The IPv6 header at cur, and everything after it.
static __always_inline int ipv6(const struct config *cfg, struct counters *c, void *cur,
				void *data_end)
{
	struct ipv6hdr *ip6 = cur;
	struct pkt p = {};
	struct in6_key src;

	if ((void *)(ip6 + 1) > data_end) {
		count(c, STAT_MALFORMED);
		return pass(c);
	}
	__builtin_memcpy(&src, &ip6->saddr, sizeof(src));
	cur = ip6 + 1;

	int l4proto = skip_ipv6_exts(&cur, data_end, ip6->nexthdr);

	if (l4proto == L4_UNTRUSTED)
		count(c, STAT_MALFORMED);
	else if (l4proto == IPPROTO_TCP)
		parse_tcp(c, cur, data_end, &p);

	int cidr = cidr_verdict_v6(c, &src);
	struct in6_key key = {
		.hi = src.hi & cfg->mask_v6_hi,
		.lo = src.lo & cfg->mask_v6_lo,
	};

	return decide(cfg, c, &p, cidr, &good_v6, &key, sizeof(key));
}

SEC("xdp")
int xdpguard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&settings, &zero);
	struct counters *c = bpf_map_lookup_elem(&stats, &zero);
	void *cur = data + sizeof(struct ethhdr);
	__be16 proto;

	if (!cfg || !c)
		return XDP_PASS;
	if (cur > data_end)
		goto malformed;
	proto = eth_proto(data);
	if (skip_vlans(&cur, data_end, &proto) < 0)
		goto malformed;
	if (proto == bpf_htons(ETH_P_IP))
		return ipv4(cfg, c, cur, data_end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return ipv6(cfg, c, cur, data_end);
	// A third VLAN tag hides the network header: pass it, unparsed.
	if (!proto_is_vlan(proto))
		return pass(c);
malformed:
	count(c, STAT_MALFORMED);
	return pass(c);
}
