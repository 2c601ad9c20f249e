// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The IPv4 ban table (struct ban_bucket in xdpguard.h): its maps, its seeded
// hash, and the program's two uses of it, the lookup on every packet and the
// kernel's own auto-ban. Userspace's side is internal/datapath/table.go.

#ifndef XDPGUARD_BANTABLE_H
#define XDPGUARD_BANTABLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "hash.h"
#include "xdpguard.h"

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))

// Sizes are defaults: the loader overrides max_entries before loading.
// The IPv4 ban table: two sides of 2^18 buckets of 8 slots, each holding
// 1M bans at half load in 16 MiB (see struct config's v4_* fields).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 << 18);
	__type(key, __u32);
	__type(value, struct ban_bucket);
} bans_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 << 18);
	__type(key, __u32);
	__type(value, struct ban_meta);
} bans_v4_meta SEC(".maps");

// The murmur3 finalizer over the seeded key (internal/datapath/table.go has
// its twin).
// The seed is random per table, so addresses an attacker picks do not
// pile into one bucket.
static __always_inline __u32 ban_hash(__u32 key, __u32 seed)
{
	return fmix32(key ^ seed);
}

static __always_inline int slot_live(__u64 w, __u64 tick)
{
	__u32 exp = w >> 32;

	return exp == BAN_EXP_FOREVER || exp > tick;
}

// The side of the IPv4 ban table in use: its first bucket and its mask.
static __always_inline __u32 side_of(const struct config *cfg, __u32 *mask)
{
	__u32 a = cfg->v4_active & 1;

	*mask = cfg->v4_mask[a];
	return a * cfg->v4_side;
}

// The IPv4 ban on key, read as one word: 0 when there is none.
static __always_inline __u64 lookup_v4(const struct config *cfg, __u32 key)
{
	__u32 h = ban_hash(key, cfg->v4_seed);
	__u32 mask;
	__u32 base = side_of(cfg, &mask);

	for (__u32 p = 0; p < BAN_PROBES; p++) {
		__u32 idx = base + ((h + p) & mask);
		struct ban_bucket *bk = bpf_map_lookup_elem(&bans_v4, &idx);

		if (!bk)
			return 0;
#pragma unroll
		for (int i = 0; i < BAN_WAYS; i++) {
			__u64 w = READ_ONCE(bk->slot[i]);

			if (w == 0)
				return 0;
			if ((__u32)w == key)
				return w;
		}
	}
	return 0;
}

// Claims the first slot in key's probe sequence that is free or already
// key's, with one CAS per attempt: a slot another CPU or userspace wrote
// meanwhile is skipped, never overwritten. 0 when every slot is live.
static __always_inline int ban_v4(const struct config *cfg, __u32 key, __u32 exp,
				  __u64 tick)
{
	__u32 h = ban_hash(key, cfg->v4_seed);
	__u32 mask;
	__u32 base = side_of(cfg, &mask);
	__u64 nw = (__u64)exp << 32 | key;

	for (__u32 p = 0; p < BAN_PROBES; p++) {
		__u32 idx = base + ((h + p) & mask);
		struct ban_bucket *bk = bpf_map_lookup_elem(&bans_v4, &idx);

		if (!bk)
			return 0;
		for (int i = 0; i < BAN_WAYS; i++) {
			__u64 w = READ_ONCE(bk->slot[i]);

			if (w != 0 && (__u32)w != key && slot_live(w, tick))
				continue;
			if (__sync_val_compare_and_swap(&bk->slot[i], w, nw) != w)
				continue;

			struct ban_meta *m = bpf_map_lookup_elem(&bans_v4_meta, &idx);

			if (m) {
				m->origin[i] = ORIGIN_KERNEL;
				m->reason[i] = REASON_SYN_RATE;
			}
			return 1;
		}
	}
	return 0;
}

#endif
