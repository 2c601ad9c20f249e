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
// and under the admission limit (xdpguard.c) the same sources cannot come
// back at once to fill the fresh queue. The connection keeps its
// addresses: Dovecot sees the same local and remote address and port as
// without steering.
//
// A source the daemon evicted before it authenticated (refused_v4/v6) is
// refused while the fresh tier is on: otherwise it reconnects at once into
// the fresh queue, ahead of the new users that queue is for, and a
// spread-out attack keeps the slots by cycling through it. The refusal
// (SK_DROP: the SYN is answered with a reset) lasts until the entry's
// deadline or the end of pressure, whichever comes first, and never
// touches a known-good source.
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
// TIER_FRESH's, refused by bpf_sk_assign (the listener is closing), and
// refused because the source was evicted (refused_v4/v6).
enum priority_stat {
	PRIORITY_STEERED = 0,
	PRIORITY_FRESH = 1,
	PRIORITY_FAILED = 2,
	PRIORITY_REFUSED = 3,
	PRIORITY_STATS = 4,
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

SEC("sk_lookup")
int priority(struct bpf_sk_lookup *ctx)
{
	struct priority_key k = { .port = ctx->local_port };
	struct bpf_sock *sk;
	struct config *cfg;
	__u64 *refused;
	__u32 zero = 0;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!cfg)
		return SK_PASS;
	// The source masked like the XDP program masks it, so the same
	// known-good keys match.
	if (ctx->family == AF_INET) {
		__u32 key4 = ctx->remote_ip4 & cfg->mask_v4;

		k.family = AF_INET;
		k.tier = bpf_map_lookup_elem(&good_v4, &key4) ? TIER_KNOWN_GOOD : TIER_FRESH;
		refused = k.tier == TIER_FRESH ? bpf_map_lookup_elem(&refused_v4, &key4) : NULL;
	} else if (ctx->family == AF_INET6) {
		// in6_key holds the address's bytes as two little-endian
		// words, as the XDP program loads them from the packet.
		struct in6_key key6 = {
			.hi = ((__u64)ctx->remote_ip6[1] << 32 | ctx->remote_ip6[0]) & cfg->mask_v6_hi,
			.lo = ((__u64)ctx->remote_ip6[3] << 32 | ctx->remote_ip6[2]) & cfg->mask_v6_lo,
		};

		k.family = AF_INET6;
		k.tier = bpf_map_lookup_elem(&good_v6, &key6) ? TIER_KNOWN_GOOD : TIER_FRESH;
		refused = k.tier == TIER_FRESH ? bpf_map_lookup_elem(&refused_v6, &key6) : NULL;
	} else {
		return SK_PASS;
	}
	sk = bpf_map_lookup_elem(&priority_socks, &k);
	if (!sk)
		return SK_PASS;
	// The fresh tier's listener is in the map only under pressure, so its
	// presence is the pressure signal here.
	if (refused && *refused > bpf_ktime_get_coarse_ns()) {
		bpf_sk_release(sk);
		count_priority(PRIORITY_REFUSED);
		return SK_DROP;
	}
	if (bpf_sk_assign(ctx, sk, 0))
		count_priority(PRIORITY_FAILED);
	else
		count_priority(k.tier == TIER_KNOWN_GOOD ? PRIORITY_STEERED : PRIORITY_FRESH);
	bpf_sk_release(sk);
	return SK_PASS;
}
