// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The IPv4 ban table (struct ban_bucket in xdpguard.h): its maps, its seeded
// hash, and the program's two uses of it, the lookup on every packet and the
// kernel's own auto-ban. Userspace's side is internal/datapath/table.go.

#ifndef XDPGUARD_BANTABLE_H
#define XDPGUARD_BANTABLE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "clock.h"
#include "hash.h"
#include "xdpguard.h"

#define READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

// Sizes are defaults: the loader overrides max_entries before loading.
// The IPv4 ban table: two sides of 2^17 buckets of 14 keys, each holding
// 1M bans at 0.57 load in 8 MiB (see struct config's v4_* fields).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 << 17);
	__type(key, __u32);
	__type(value, struct ban_bucket);
} bans_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 << 17);
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

static __always_inline int exp_live(__u32 exp, __u64 tick)
{
	return exp == BAN_EXP_FOREVER || exp > tick;
}

// The side of the IPv4 ban table in use: its first bucket and its mask.
static __always_inline __u32 side_of(const struct config *cfg, __u32 *mask)
{
	__u32 a = cfg->v4_active & 1;

	*mask = cfg->v4_mask[a];
	return a * cfg->v4_side;
}

// Whether key is banned. The clock is read (into *now) only when key is in
// the table and its bucket has a ban that may have expired; only then is
// the ban's own deadline read, from the second array.
static __always_inline int lookup_v4(const struct config *cfg, struct counters *c, __u32 key,
				     __u64 *now)
{
	__u32 h = ban_hash(key, cfg->v4_seed);
	__u32 tag = 1U << (h >> BAN_TAG_SHIFT);
	__u32 mask;
	__u32 base = side_of(cfg, &mask);

	// A tombstone would match it. (0 cannot: a free slot ends the search.)
	if (key == BAN_KEY_TOMB)
		return 0;
	for (__u32 p = 0; p < BAN_PROBES; p++) {
		__u32 idx = base + ((h + p) & mask);
		struct ban_bucket *bk = bpf_map_lookup_elem(&bans_v4, &idx);
		int i;

		if (!bk)
			return 0;
		// Not in this bucket. A key lies past a bucket only if the
		// bucket had no free slot left when it was written, and a slot
		// frees only after the next one has.
		if (!(READ_ONCE(bk->tags) & tag)) {
			if (READ_ONCE(bk->key[BAN_WAYS - 1]) == BAN_KEY_FREE)
				return 0;
			continue;
		}
#pragma unroll
		for (i = 0; i < BAN_WAYS; i++) {
			__u32 k = READ_ONCE(bk->key[i]);

			if (k == BAN_KEY_FREE)
				return 0;
			if (k == key)
				goto found;
		}
		continue;
found:;
		__u32 min = READ_ONCE(bk->min_exp);

		if (min == BAN_EXP_FOREVER)
			return 1;
		*now = now_ns(c);

		__u64 tick = *now >> BAN_TICK_SHIFT;

		if (min > tick)
			return 1;

		struct ban_meta *m = bpf_map_lookup_elem(&bans_v4_meta, &idx);

		return m && i < BAN_WAYS && exp_live(READ_ONCE(m->exp[i]), tick);
	}
	return 0;
}

// Another CPU holds a bucket's lock for nanoseconds, userspace for about
// a hundred unless it is preempted: spin a little, then give up.
static __always_inline int lock_bucket(struct ban_meta *m)
{
	for (int i = 0; i < 256; i++)
		if (__sync_val_compare_and_swap(&m->lock, BAN_UNLOCKED, BAN_LOCK_KERNEL) ==
		    BAN_UNLOCKED)
			return 1;
	return 0;
}

// Bans key until exp in the first slot of its probe sequence that is
// free, expired or already key's, under the bucket's lock: 1. 0 when every
// slot is live; -1 when a writer held the bucket's lock past the spin
// (userspace, preempted while it held it). Either way the ban is not in
// the table, and the daemon applies it from the event (Guard.EnsureBan).
static __always_inline int ban_v4(const struct config *cfg, __u32 key, __u32 exp,
				  __u64 tick)
{
	__u32 h = ban_hash(key, cfg->v4_seed);
	__u32 mask;
	__u32 base = side_of(cfg, &mask);

	if (key == BAN_KEY_FREE || key == BAN_KEY_TOMB)
		return 0;
	for (__u32 p = 0; p < BAN_PROBES; p++) {
		__u32 idx = base + ((h + p) & mask);
		struct ban_bucket *bk = bpf_map_lookup_elem(&bans_v4, &idx);
		struct ban_meta *m = bpf_map_lookup_elem(&bans_v4_meta, &idx);

		if (!bk || !m)
			return 0;
		if (!lock_bucket(m))
			return -1;

		int at = -1;

		for (int i = 0; i < BAN_WAYS; i++) {
			__u32 k = bk->key[i];

			if (k == key || k == BAN_KEY_FREE || k == BAN_KEY_TOMB ||
			    !exp_live(m->exp[i], tick)) {
				at = i;
				break;
			}
		}
		if (at < 0 || at >= BAN_WAYS) {
			__sync_lock_test_and_set(&m->lock, BAN_UNLOCKED);
			continue;
		}
		// Another source's expired ban: unpublished first, so that no
		// reader sees it with this ban's deadline.
		if (bk->key[at] != key && bk->key[at] != BAN_KEY_FREE)
			WRITE_ONCE(bk->key[at], BAN_KEY_TOMB);
		m->exp[at] = exp;
		m->origin[at] = ORIGIN_KERNEL;
		m->reason[at] = REASON_SYN_RATE;
		if (exp < bk->min_exp)
			WRITE_ONCE(bk->min_exp, exp);
		WRITE_ONCE(bk->tags, bk->tags | 1U << (h >> BAN_TAG_SHIFT));
		// Full barriers both: the key is seen after its deadline, and
		// the lock released after both.
		__sync_lock_test_and_set(&bk->key[at], key);
		__sync_lock_test_and_set(&m->lock, BAN_UNLOCKED);
		return 1;
	}
	return 0;
}

#endif
