//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Priority steering: a known-good source's new connection to a protected
// port goes to the accept queue of a second listener of the same Dovecot
// login service (its priority listener, bound to loopback) instead of the
// port's public one. A Dovecot login process accepts from its listeners in
// their configured order, and the priority listener comes first, so while
// the login slots run out a source that has logged in before is served
// ahead of the queue of connections that never did, however long that
// queue is. The connection keeps its addresses: Dovecot sees the same local
// and remote address and port as without steering.
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

// Which priority listener serves a protected port, per address family:
// Dovecot's IPv6 listening sockets are IPv6-only, so each family has its own.
struct priority_key {
	__u16 port;	// the protected port, host byte order (sk_lookup's local_port)
	__u8 family;	// AF_INET or AF_INET6
	__u8 pad;
};

enum priority_stat {
	PRIORITY_STEERED = 0,	// a known-good SYN handed to a priority listener
	PRIORITY_FAILED = 1,	// bpf_sk_assign refused (the listener is closing)
	PRIORITY_STATS = 2,
};

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

		if (!bpf_map_lookup_elem(&good_v4, &key4))
			return SK_PASS;
		k.family = AF_INET;
	} else if (ctx->family == AF_INET6) {
		// in6_key holds the address's bytes as two little-endian
		// words, as the XDP program loads them from the packet.
		struct in6_key key6 = {
			.hi = ((__u64)ctx->remote_ip6[1] << 32 | ctx->remote_ip6[0]) & cfg->mask_v6_hi,
			.lo = ((__u64)ctx->remote_ip6[3] << 32 | ctx->remote_ip6[2]) & cfg->mask_v6_lo,
		};

		if (!bpf_map_lookup_elem(&good_v6, &key6))
			return SK_PASS;
		k.family = AF_INET6;
	} else {
		return SK_PASS;
	}
	sk = bpf_map_lookup_elem(&priority_socks, &k);
	if (!sk)
		return SK_PASS;
	count_priority(bpf_sk_assign(ctx, sk, 0) ? PRIORITY_FAILED : PRIORITY_STEERED);
	bpf_sk_release(sk);
	return SK_PASS;
}
