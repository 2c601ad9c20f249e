//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Priority steering: a new connection to a protected port goes to the
// accept queue of one of the port's listeners in the same Dovecot login
// service, by tier:
//   - TIER_KNOWN_GOOD: the source has logged in before (the known-good maps);
//   - TIER_FRESH: any other source, while the login slots run out (the
//     daemon puts this tier's listener in the map only then);
//   - no entry: the port's public listener, as without this program.
// A Dovecot login process accepts from its listeners in their configured
// order, and the tiers' listeners come first (README, "Users first"). So a
// returning user is served ahead of everyone, and a connection that arrives
// while the slots are short ahead of the queue that filled them: an attack
// that took the slots at once cannot keep a later user waiting behind it,
// nor, by the rules below, come back to fill the fresh queue. The connection keeps its
// addresses: Dovecot sees the same local and remote address and port as
// without steering.
//
// Under pressure the fresh queue is for new users, so two kinds of
// sources are kept out of it (never a known-good one):
//   - a source the daemon evicted before it authenticated (refused_v4/v6)
//     is refused: otherwise it reconnects at once into the fresh queue and
//     a spread-out attack keeps the slots by cycling through it. The
//     refusal (SK_DROP: the SYN is answered with a reset) lasts until the
//     entry's deadline or the end of pressure, whichever comes first;
//   - a source past its first FRESH_NS under pressure goes to the public
//     queue (see FRESH_NS), and so does one whose first SYN under pressure
//     finds the fresh queue's rate used up (fresh_rate): an attack that
//     brings hundreds of new sources at once fills the fresh queue with a
//     handful of them, not all, and new users who come later are not
//     stuck behind the rest.
//
// An sk_lookup program runs only where no established socket matches, that
// is for a SYN: established traffic never comes here. Every path returns
// SK_PASS: with no socket in priority_socks (Dovecot has no priority
// listener, or was restarted and the daemon has not found the new one yet)
// the kernel's own lookup runs, as if the program were not attached.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

enum priority_tier {
	TIER_KNOWN_GOOD = 0,
	TIER_FRESH = 1,
};

// Which listener serves a protected port's tier, per address family:
// Dovecot's IPv6 listening sockets are IPv6-only, so each family has its own.
struct priority_key {
	__u16 port;	// the protected port, host byte order (sk_lookup's local_port)
	__u8 family;	// AF_INET or AF_INET6
	__u8 tier;	// enum priority_tier
};

// Counters, per CPU: steered to TIER_KNOWN_GOOD's listener, to
// TIER_FRESH's, refused by bpf_sk_assign (the listener is closing), reset
// because the source was evicted (refused_v4/v6), and left to the public
// listener because the source is past its fresh period (fresh_since_v4/v6)
// or came while the fresh queue took no more (fresh_rate).
enum priority_stat {
	PRIORITY_STEERED = 0,
	PRIORITY_FRESH = 1,
	PRIORITY_FAILED = 2,
	PRIORITY_REFUSED = 3,
	PRIORITY_LATE = 4,
	PRIORITY_FRESH_FULL = 5,
	PRIORITY_STATS = 6,
};

// Sources evicted before authenticating, masked like the known-good keys;
// the value is the refusal's deadline (CLOCK_MONOTONIC ns). Written only
// by the daemon, so an LRU bound is enough: an attacker cannot fill it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} refused_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct in6_key);
	__type(value, __u64);
} refused_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 256);
	__type(key, struct priority_key);
	__type(value, __u64);
} priority_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PRIORITY_STATS);
	__type(key, __u32);
	__type(value, __u64);
} priority_stats SEC(".maps");

static __always_inline void count_priority(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&priority_stats, &stat);

	if (n)
		(*n)++;
}

// Where a fresh-tier source's connection goes under pressure.
enum fresh_verdict {
	FRESH_QUEUE = 0,	// the fresh listener
	FRESH_LATE = 1,		// the public listener: past its first FRESH_NS
	FRESH_REFUSED = 2,	// reset: evicted (refused_v4/v6)
	FRESH_FULL = 3,		// the public listener: over fresh_rate
};

// A source is fresh for FRESH_NS from its first SYN under pressure: long
// enough for that SYN and its first resend (the initial RTO is 1 s, RFC
// 6298), so that a new user's one connection reaches the fresh queue even
// if its first SYN found it full. Sources that keep connecting, as an
// attack that spreads out does from its first second, wait in the public
// queue after that, behind the new users that come later; the slots still
// serve them whenever no new user waits. After FRESH_RESET_NS the source
// counts as new again, so an old entry does not outlast its attack.
#define FRESH_NS (2ULL * 1000000000)
#define FRESH_RESET_NS (600ULL * 1000000000)

// A source's first SYN under pressure (CLOCK_MONOTONIC ns), and the end of
// its fresh period: 0 if the fresh queue's rate turned it away.
struct fresh_entry {
	__u64 first;
	__u64 until;
};

// Per source, masked like the known-good keys. LRU: a flood of new sources
// only makes older ones new again, which is as without this map.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct fresh_entry);
} fresh_since_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct in6_key);
	__type(value, struct fresh_entry);
} fresh_since_v6 SEC(".maps");

// How many new sources a second the fresh queue takes under pressure
// (slot_holders.pressure.evict.fresh_rate), as a cell rate: one source per
// interval_ns, up to burst_ns ahead. Written by the daemon; interval 0
// takes every source.
struct fresh_limit {
	__u64 interval_ns;
	__u64 burst_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fresh_limit);
} fresh_rate SEC(".maps");

// The rate's theoretical arrival time. One for all CPUs, with plain
// stores: racing CPUs can each let one extra source in, which errs
// towards the new user.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fresh_tat SEC(".maps");

static __always_inline int fresh_admit(__u64 now)
{
	__u32 zero = 0;
	struct fresh_limit *r = bpf_map_lookup_elem(&fresh_rate, &zero);
	__u64 *tat = bpf_map_lookup_elem(&fresh_tat, &zero);
	__u64 t;

	if (!r || !tat || !r->interval_ns)
		return 1;
	t = *tat < now ? now : *tat;
	if (t - now > r->burst_ns)
		return 0;
	*tat = t + r->interval_ns;
	return 1;
}

// Inlined per family, so each call site sees one map: what the verifier
// needs to inline the lookups.
static __always_inline enum fresh_verdict fresh_verdict(void *refused_map, void *since_map,
							 const void *key)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	__u64 *t = bpf_map_lookup_elem(refused_map, key);
	struct fresh_entry *e, n;

	if (t && *t > now)
		return FRESH_REFUSED;
	e = bpf_map_lookup_elem(since_map, key);
	if (e && now - e->first <= FRESH_RESET_NS)
		return now < e->until ? FRESH_QUEUE : FRESH_LATE;
	// The source's first SYN under pressure (or since FRESH_RESET_NS).
	n.first = now;
	n.until = fresh_admit(now) ? now + FRESH_NS : 0;
	bpf_map_update_elem(since_map, key, &n, BPF_ANY);
	return n.until ? FRESH_QUEUE : FRESH_FULL;
}

SEC("sk_lookup")
int priority(struct bpf_sk_lookup *ctx)
{
	enum fresh_verdict verdict = FRESH_QUEUE;
	struct priority_key k = { .port = ctx->local_port };
	struct in6_key key6 = {};
	struct bpf_sock *sk;
	struct config *cfg;
	__u32 key4 = 0;
	__u32 zero = 0;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!cfg)
		return SK_PASS;
	// The source masked like the XDP program masks it, so the same
	// known-good keys match.
	if (ctx->family == AF_INET) {
		key4 = ctx->remote_ip4 & cfg->mask_v4;
		k.family = AF_INET;
		k.tier = bpf_map_lookup_elem(&good_v4, &key4) ? TIER_KNOWN_GOOD : TIER_FRESH;
	} else if (ctx->family == AF_INET6) {
		// in6_key holds the address's bytes as two little-endian
		// words, as the XDP program loads them from the packet.
		key6.hi = ((__u64)ctx->remote_ip6[1] << 32 | ctx->remote_ip6[0]) & cfg->mask_v6_hi;
		key6.lo = ((__u64)ctx->remote_ip6[3] << 32 | ctx->remote_ip6[2]) & cfg->mask_v6_lo;
		k.family = AF_INET6;
		k.tier = bpf_map_lookup_elem(&good_v6, &key6) ? TIER_KNOWN_GOOD : TIER_FRESH;
	} else {
		return SK_PASS;
	}
	sk = bpf_map_lookup_elem(&priority_socks, &k);
	if (!sk)
		return SK_PASS;
	// The fresh tier's listener is in the map only under pressure, so
	// from here on a fresh-tier source is under pressure.
	if (k.tier == TIER_FRESH) {
		if (k.family == AF_INET)
			verdict = fresh_verdict(&refused_v4, &fresh_since_v4, &key4);
		else
			verdict = fresh_verdict(&refused_v6, &fresh_since_v6, &key6);
	}
	if (verdict == FRESH_REFUSED) {
		count_priority(PRIORITY_REFUSED);
	} else if (verdict == FRESH_LATE) {
		count_priority(PRIORITY_LATE);
	} else if (verdict == FRESH_FULL) {
		count_priority(PRIORITY_FRESH_FULL);
	} else if (bpf_sk_assign(ctx, sk, 0)) {
		count_priority(PRIORITY_FAILED);
	} else {
		count_priority(k.tier == TIER_KNOWN_GOOD ? PRIORITY_STEERED : PRIORITY_FRESH);
	}
	bpf_sk_release(sk);
	return verdict == FRESH_REFUSED ? SK_DROP : SK_PASS;
}
