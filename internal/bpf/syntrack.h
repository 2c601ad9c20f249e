// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The SYN tracker: per masked source, the rate limiter's state, the
// admission deadline and the fingerprints of its last counted SYNs.
//
// It is a fixed table of slots (struct syn_slot_v4/_v6 in xdpguard.h), not
// an LRU hash: an LRU lets a flood from millions of spoofed sources evict
// every entry, a real attacker's count with them, and costs a hash lookup
// and an LRU update per SYN. Here a source lives in one of the two slots of
// the pair a seeded hash picks: one lookup, one cache line for the first
// slot of an IPv4 pair and the next line for the second. A new
// source takes a candidate only from a source that holds at most one SYN
// in its rate window (tat <= now + interval), preferring an idle one
// (tat <= now): a spoofed source sends one SYN, so the flood only ever
// replaces itself and the idle, and a source with two or more SYNs in its
// window keeps its count. When both candidates are held that way the SYN
// is not tracked (STAT_SYN_UNTRACKED) and passes, as it would if the
// limiter were off: raise kernel.max_tracked. Memory is fixed at load.
//
// Shared (not per-CPU) so that a source's SYNs, spread over CPUs by RSS,
// add up. Plain stores, as in over_rate(), except for the claim of a slot:
// a CAS on its first word, so that two CPUs taking one slot for two new
// sources cannot mix their counts; the loser's SYN goes untracked.

#ifndef XDPGUARD_SYNTRACK_H
#define XDPGUARD_SYNTRACK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "xdpguard.h"
#include "bantable.h"

// Sizes are defaults: the loader sets max_entries to half kernel.max_tracked
// (pairs), rounded up to a power of two, and config.syn_mask to match.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct syn_pair_v4);
} syn_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct syn_pair_v6);
} syn_v6 SEC(".maps");

// Generic cell rate algorithm: one deadline per source. Each SYN pushes the
// source's theoretical arrival time (tat) one interval into the future; a
// source whose tat runs more than the burst ahead of now is over the rate.
// `threshold` back-to-back SYNs pass, the next one does not.
// Plain stores, not atomics: CPUs racing on one source can lose an interval
// each, letting at most one extra SYN per racing CPU through. That errs
// towards not banning, and an atomic costs more than the rest of this path.
// A SYN over the rate does not move tat: a known-good source that is
// spared stays at the limit, not ever further past it.
static __always_inline int over_rate(struct syn_state *s, const struct config *cfg,
				     __u64 now)
{
	__u64 tat = s->tat;

	if (tat < now)
		tat = now;
	if (tat - now > cfg->rate_burst_ns)
		return 1;
	s->tat = tat + cfg->rate_interval_ns;
	return 0;
}

#define FP_KEY_MASK 0xffffffffffffULL	// sport and seq: enum syn_fp

// Whether the SYN resends one of the source's last counted SYNs: same
// source port and sequence number, within retrans_ticks of it, and not yet
// resent FP_MAX_RETRANS times. The cap bounds what a raw-socket client gains
// by reusing a port and sequence number for new connections: a real stack
// resends a SYN at most 5 times in the first 10 s, so more count again.
//
// A fingerprint is held in one slot at most: a copy that is too old or
// resent too often can never match again, so it is cleared when found, and
// the SYN, counted, is written as the newest. The first slot that holds the
// fingerprint therefore decides, and a client that reuses one fingerprint
// costs one compare, not one per slot.
static __always_inline int retransmitted(struct syn_state *s, const struct config *cfg,
					 __u64 want, __u8 tick)
{
	if (!want)
		return 0;	// port 0, sequence 0: the same as an empty slot
#pragma unroll
	for (int i = 0; i < SYN_FPS; i++) {
		__u64 w = s->fp[i];

		if ((w & FP_KEY_MASK) != want)
			continue;
		if ((__u8)(tick - (__u8)(w >> 48)) >= cfg->retrans_ticks ||
		    (w >> 56) >= FP_MAX_RETRANS) {
			s->fp[i] = 0;
			return 0;
		}
		s->fp[i] = w + (1ULL << 56);
		return 1;
	}
	return 0;
}

// Which of two candidates a new source may take: 0 or 1, or -1 when both
// hold a source with more than one SYN in its window.
static __always_inline int syn_victim(const struct config *cfg, const struct syn_state *a,
				      const struct syn_state *b, __u64 now)
{
	__u64 light = now + cfg->rate_interval_ns;

	if (a->tat <= now)
		return 0;
	if (b->tat <= now)
		return 1;
	if (a->tat <= light)
		return 0;
	if (b->tat <= light)
		return 1;
	return -1;
}

// Takes the slot whose first word was old for a source whose first word is
// key, with a fresh state; 0 when another CPU took it first.
static __always_inline struct syn_state *syn_claim(__u64 *word, __u64 old, __u64 key,
						   struct syn_state *s)
{
	if (__sync_val_compare_and_swap(word, old, key) != old)
		return 0;
	__builtin_memset(s, 0, sizeof(*s));
	return s;
}

// The pair of a source: multiply-add-shift (Dietzfelbinger; the vector
// form for IPv6, as in Thorup, "High Speed Hashing for Integers and
// Strings"), ((sum of mul[i] * word i) + add) >> 32, masked. With mul and
// add random per set of maps it is strongly universal: addresses an
// attacker picks collide no more than random ones. It replaced the murmur3
// finalizer, whose two dependent multiplies and shifts sat in front of the
// slot's load on every tracked SYN.
static __always_inline __u32 syn_pair_index(const struct config *cfg, __u64 sum)
{
	return (__u32)((sum + cfg->syn_add) >> 32) & cfg->syn_mask;
}

// The state of an IPv4 source, in a slot taken for it if it has none; 0
// when it cannot have one now.
static __always_inline struct syn_state *syn_track_v4(const struct config *cfg, __u32 key,
						      __u64 now)
{
	__u32 i = syn_pair_index(cfg, cfg->syn_mul[0] * key);
	struct syn_pair_v4 *p = bpf_map_lookup_elem(&syn_v4, &i);

	if (!p)
		return 0;
	if (p->slot[0].key == key)
		return &p->slot[0].s;
	if (p->slot[1].key == key)
		return &p->slot[1].s;

	int v = syn_victim(cfg, &p->slot[0].s, &p->slot[1].s, now);

	if (v < 0)
		return 0;

	struct syn_slot_v4 *t = v ? &p->slot[1] : &p->slot[0];

	return syn_claim(&t->key, READ_ONCE(t->key), key, &t->s);
}

// The IPv6 twin of syn_track_v4. The claim's CAS is on the key's first
// word, which tells two new sources apart unless they share it (a /64 at a
// granularity finer than /64): those two may then mix one SYN each.
static __always_inline struct syn_state *syn_track_v6(const struct config *cfg,
						      const struct in6_key *key, __u64 now)
{
	__u64 sum = cfg->syn_mul[0] * (__u32)key->hi + cfg->syn_mul[1] * (key->hi >> 32) +
		    cfg->syn_mul[2] * (__u32)key->lo + cfg->syn_mul[3] * (key->lo >> 32);
	__u32 i = syn_pair_index(cfg, sum);
	struct syn_pair_v6 *p = bpf_map_lookup_elem(&syn_v6, &i);

	if (!p)
		return 0;
	if (p->slot[0].key.hi == key->hi && p->slot[0].key.lo == key->lo)
		return &p->slot[0].s;
	if (p->slot[1].key.hi == key->hi && p->slot[1].key.lo == key->lo)
		return &p->slot[1].s;

	int v = syn_victim(cfg, &p->slot[0].s, &p->slot[1].s, now);

	if (v < 0)
		return 0;

	struct syn_slot_v6 *t = v ? &p->slot[1] : &p->slot[0];
	struct syn_state *s = syn_claim(&t->key.hi, READ_ONCE(t->key.hi), key->hi, &t->s);

	if (s)
		t->key.lo = key->lo;
	return s;
}

#endif
