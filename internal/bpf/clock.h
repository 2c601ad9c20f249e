// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The program's clock: CLOCK_MONOTONIC at tick resolution (see the top of
// xdpguard.c for why not the precise clock).

#ifndef XDPGUARD_CLOCK_H
#define XDPGUARD_CLOCK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xdpguard.h"

// The coarse clock only moves when jiffies does, so a per-CPU copy keyed by
// jiffies (whose read the verifier inlines) is the same clock, cheaper. The
// copy lives in the CPU's counters (struct counters).
static __always_inline __u64 now_ns(struct counters *c)
{
	__u64 j = bpf_jiffies64();

	if (c->clock_jiffies != j) {
		c->clock_jiffies = j;
		c->clock_ns = bpf_ktime_get_coarse_ns();
	}
	return c->clock_ns;
}

#endif
