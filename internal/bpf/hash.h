// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The murmur3 finalizer, the hash of the open-addressed IPv4 tables: the
// ban table (bantable.h) and bench/drop's bucketized reference (gen.c),
// so that the benchmark's reference hashes as the product does.
// Userspace's twin is datapath.Fmix32.

#ifndef XDPGUARD_HASH_H
#define XDPGUARD_HASH_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

#endif
