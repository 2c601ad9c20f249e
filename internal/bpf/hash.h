// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The hash of the open-addressed IPv4 tables: the ban table (bantable.h)
// and bench/drop's bucketized reference (gen.c), so that the benchmark's
// reference hashes as the product does. Userspace's twin is
// datapath.Hash32.

#ifndef XDPGUARD_HASH_H
#define XDPGUARD_HASH_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

// Multiply-add-shift (Dietzfelbinger): bits 32 and up of mul * key + add.
// A table of 2^l buckets masks the low l of them, which is the scheme with
// (32 + l)-bit arithmetic; with mul and add random it is strongly universal
// (Thorup, "High Speed Hashing for Integers and Strings"), so addresses an
// attacker picks collide no more than random ones. One multiply in front
// of the bucket's load, where murmur3's finalizer had two, each behind a
// shift and an xor.
static __always_inline __u32 hash32(__u32 key, __u64 mul, __u64 add)
{
	return ((__u64)key * mul + add) >> 32;
}

#endif
