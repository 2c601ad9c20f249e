// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The program's clock: CLOCK_MONOTONIC at tick resolution (see the top of
// xdpguard.c for why not the precise clock).

#ifndef XDPGUARD_CLOCK_H
#define XDPGUARD_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// The coarse clock only moves when jiffies does, so a per-CPU copy keyed by
// jiffies (whose read the verifier inlines) is the same clock, cheaper.
struct clock_cache {
	__u64 jiffies;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clock_cache);
} clock SEC(".maps");

static __always_inline __u64 now_ns(void)
{
	__u32 zero = 0;
	struct clock_cache *c = bpf_map_lookup_elem(&clock, &zero);
	__u64 j = bpf_jiffies64();

	if (!c)
		return bpf_ktime_get_coarse_ns();
	if (c->jiffies != j) {
		c->jiffies = j;
		c->ns = bpf_ktime_get_coarse_ns();
	}
	return c->ns;
}

#endif
