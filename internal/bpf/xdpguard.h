// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Types shared between the XDP program and Go. They reach Go only through
// bpf2go -type, so this file is the single definition of each layout.

#ifndef XDPGUARD_H
#define XDPGUARD_H

// 16-byte key of the IPv6 maps, read as two words so masking is two ANDs.
struct in6_key {
	__u64 hi;
	__u64 lo;
};

struct cidr_v4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct cidr_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

enum origin {
	ORIGIN_NONE = 0,
	ORIGIN_KERNEL = 1,	// the SYN-rate limiter in this program
	ORIGIN_LOG = 2,		// the daemon's log layer
	ORIGIN_MANUAL = 3,	// an operator
	ORIGIN_CROWDSEC = 4,	// a CrowdSec LAPI decision (the daemon's bouncer)
};

enum reason {
	REASON_NONE = 0,
	REASON_SYN_RATE = 1,
	REASON_NO_AUTH = 2,
	REASON_AUTH_FAILED = 3,
	REASON_PROBE = 4,	// TLS, SASL or command probing
	REASON_CONN_LIMIT = 5,
	REASON_MANUAL = 6,
	REASON_BLOCKLIST = 7,
	REASON_OTHER = 8,
};

// An IPv6 ban, in a kernel hash map keyed by the masked source.
struct ban {
	__u64 expires_ns;	// CLOCK_MONOTONIC deadline; 0 never expires
	__u8 origin;		// enum origin
	__u8 reason;		// enum reason
	__u8 pad[6];
};

// IPv4 bans live in an open-addressing table of one-cache-line buckets, an
// mmapable array that the program reads without a lock. A lookup reads one
// line: the bucket's keys, a filter of them, and the earliest deadline
// among its bans. Each ban's own deadline, origin and reason live
// in a second array (struct ban_meta), read only when that earliest
// deadline has passed: four-byte keys halve the memory a lookup ranges
// over, which at a million bans is the difference between 16 and 8 MiB.
// A key lives in one of BAN_PROBES buckets from its hash's, in the first
// slot that was free when it was written; lookups stop at a slot never
// used, and the first slot holding the key decides.
// Writers (the program's auto-bans, userspace) take the bucket's lock in
// struct ban_meta, and publish a key last: a reader that sees a key sees
// its deadline.
enum ban_table {
	BAN_WAYS = 14,			// keys per 64-byte bucket
	BAN_PROBES = 16,		// buckets a key may live in; a million keys in
					// 1.84M slots were seen to need 2 (TestTableHoldsMaxBans)
	BAN_TAG_SHIFT = 27,		// a key's tag is bit (hash >> 27) of tags
	BAN_TICK_SHIFT = 25,		// 33.5 ms ticks: 32 bits last 4.5 years of uptime
	BAN_KEY_FREE = 0,		// never used: lookups stop here
	BAN_KEY_TOMB = 0xffffffff,	// unbanned or expired: free, but was used
	BAN_EXP_FOREVER = 0xffffffff,	// never expires
	BAN_UNLOCKED = 0,
	BAN_LOCK_KERNEL = 1,		// held by the program, for nanoseconds
	BAN_LOCK_USER = 2,		// held by userspace, under its write lock
};

// Keys are masked sources in network order. 0.0.0.0 and 255.255.255.255
// cannot be banned here: they mark free slots, and neither is ever a TCP
// peer.
struct ban_bucket {
	__u32 key[BAN_WAYS];
	// One bit per key in the bucket, from its hash's top bits: a source
	// whose bit is clear is not here, so most lookups of unbanned sources
	// read no key. Set before a key is published; bits of keys gone stay
	// until the sweep.
	__u32 tags;
	// No ban in the bucket expires before this tick (BAN_EXP_FOREVER: none
	// does). Writers lower it before they publish a key, and only the
	// sweep raises it, so it may be too early, never too late; 0 sends
	// every lookup that finds its key to the deadline in ban_meta.
	__u32 min_exp;
};

// The rest of each ban, per slot of the bucket with the same index.
struct ban_meta {
	__u32 exp[BAN_WAYS];	// deadline in ticks of 2^BAN_TICK_SHIFT ns of CLOCK_MONOTONIC
	__u32 lock;		// BAN_UNLOCKED, BAN_LOCK_KERNEL or BAN_LOCK_USER
	__u8 origin[BAN_WAYS];
	__u8 reason[BAN_WAYS];
	// 88 bytes, a multiple of 8, as the kernel spaces an array's values:
	// userspace maps these as a Go array of this struct.
};

enum cidr_action {
	CIDR_ALLOW = 1,
	CIDR_DENY = 2,
};

struct cidr_rule {
	__u64 expires_ns;	// 0 never expires
	__u8 action;		// enum cidr_action
	__u8 origin;
	__u8 reason;
	__u8 pad[5];
};

// The last SYN_FPS SYNs a source had counted or admitted, so that their
// retransmissions (same source port and sequence number) count once: an
// overloaded server answers late, and its users' stacks resend their SYNs,
// Linux 6.5 and later 1, 2, 3, 4 and 6 s after the first
// (tcp_syn_linear_timeouts), older kernels after 1, 3 and 7 s. Each
// fingerprint is one word:
//   bits  0-31  TCP sequence number
//   bits 32-47  source port
//   bits 48-55  time of the counted SYN, in FP_TICK_SHIFT ticks (wraps)
//   bits 56-63  retransmissions of it seen so far
enum syn_fp {
	SYN_FPS = 4,
	FP_TICK_SHIFT = 30,	// 1.07 s ticks; 8 bits wrap after 274 s
	FP_MAX_RETRANS = 5,	// Linux resends at most 5 in 10 s; more count again
};

struct syn_state {
	__u64 tat;		// theoretical arrival time of the next SYN, CLOCK_MONOTONIC
	__u64 admit_ns;		// under admission: the earliest next new connection
	__u64 fp[SYN_FPS];	// enum syn_fp; slot syns % SYN_FPS is the next written
	__u32 syns;		// SYNs counted since the source took the slot
	__u32 pad;
};

// The SYN tracker is a table of slot pairs, not a hash map: each source has
// the two slots of the pair its seeded hash picks, and a new source may take
// one only from a source that holds at most one SYN in its rate window (see
// syntrack.h). An IPv4 slot is one cache line, an IPv6 one two; a pair is
// one map value, so that one lookup reaches both.
struct syn_slot_v4 {
	__u64 key;		// masked source, network order, in the low 32 bits
	struct syn_state s;
};

struct syn_slot_v6 {
	struct in6_key key;
	struct syn_state s;
	__u8 pad[56];		// a power-of-two size: a slot never straddles lines
};

struct syn_pair_v4 {
	struct syn_slot_v4 slot[2];
};

struct syn_pair_v6 {
	struct syn_slot_v6 slot[2];
};

enum config_flags {
	FLAG_MONITOR = 1 << 0,		// count what would drop, drop nothing
	FLAG_SCOPE_PORTS = 1 << 1,	// a ban drops only packets to protected ports
	FLAG_ADMISSION = 1 << 2,	// limit new connections of sources not known-good
};

struct config {
	__u64 rate_interval_ns;	// window / threshold; 0 disables the limiter
	__u64 rate_burst_ns;	// window - interval
	__u64 rate_window_ns;	// read back by userspace only
	__u64 ban_ns;		// duration of a kernel auto-ban
	__u64 mask_v6_hi;	// ban granularity, network byte order
	__u64 mask_v6_lo;
	__u32 mask_v4;
	__u32 flags;		// enum config_flags
	__u32 rate_threshold;
	__u8 prefix_v4;
	__u8 prefix_v6;
	__u16 pad;
	// The IPv4 ban table has two sides, the two halves of bans_v4, each a
	// whole table. One is in use, at a size that fits the bans it holds
	// (a small table misses the cache less); userspace grows it by
	// filling the other side, larger, and switching v4_active.
	__u32 v4_mask[2];	// per side: buckets in use - 1 (a power of two)
	__u32 v4_seed;		// the hash seed, random per set of maps
	__u32 v4_active;	// the side in use: 0 or 1
	__u32 v4_side;		// buckets per side: side 1 starts there
	__u32 retrans_ticks;	// a SYN's retransmissions within this many FP ticks are not new
	__u64 admit_interval_ns;	// under admission: one new connection per source per interval
	__u64 retrans_window_ns;	// read back by userspace only
	__u32 syn_mask;		// SYN tracker slot pairs - 1 (a power of two)
	__u32 pad2;
	// The SYN tracker's hash (syntrack.h), random per set of maps.
	__u64 syn_mul[4];	// one multiplier per 32-bit word of the key
	__u64 syn_add;
	__u64 ports[1024];	// bitmap of protected destination ports
};

// Sent to userspace for every kernel auto-ban.
struct event {
	__u8 addr[16];		// masked source; IPv4 in the first 4 bytes
	__u64 ts_ns;		// CLOCK_MONOTONIC
	__u64 expires_ns;
	__u32 threshold;
	__u8 family;		// 4 or 6
	__u8 prefixlen;
	__u8 reason;
	__u8 pad;
};

enum stat {
	STAT_PASS = 0,
	STAT_DROP_BAN = 1,
	STAT_DROP_CIDR = 2,
	STAT_WOULD_DROP_BAN = 3,	// monitor mode; also counted as PASS
	STAT_WOULD_DROP_CIDR = 4,
	STAT_SYN = 5,			// SYNs to protected ports fed to the limiter
	STAT_AUTOBAN = 6,
	STAT_MALFORMED = 7,
	STAT_ALLOW = 8,			// passed by an allow rule
	STAT_EVENT_LOST = 9,		// ring buffer full
	STAT_BAN_TABLE_FULL = 10,	// a kernel ban found no free slot
	STAT_SYN_RETRANS = 11,		// retransmitted SYNs, not counted again
	STAT_KNOWN_GOOD = 12,		// SYNs of known-good sources over the rate: not banned
	STAT_DROP_ADMISSION = 13,	// new connections over the admission limit
	STAT_WOULD_DROP_ADMISSION = 14,	// monitor mode; also counted as PASS
	STAT_SYN_UNTRACKED = 15,	// SYNs whose source found no slot in the SYN tracker
	STAT_BAN_DEFERRED = 16,		// a kernel ban whose bucket userspace held: the daemon applies it
	STAT_MAX = 17,
};

// Per-CPU counters, indexed by enum stat, and the CPU's cache of the
// program's clock (clock.h): the one per-CPU value a packet already holds,
// so that reading the clock costs no lookup of its own. Userspace reads n.
struct counters {
	__u64 n[STAT_MAX];
	__u64 clock_jiffies;	// jiffies when clock_ns was read
	__u64 clock_ns;
};

#endif
