//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The benchmark's own XDP programs: the live-frame traffic generator, the
// sink that keeps the DUT's replies to spoofed sources off the generator's
// CPU, and the unconditional drop that is the floor of every mechanism.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../../internal/bpf/hash.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// The set of sources is {set_addr(i) : i < nsources}: computed, not read
// from a table, so that drawing from 1,000,000 sources costs the generator
// no more than drawing from 10,000. A table of that size misses the cache
// on every frame and slows the generator, and the DUT's per-packet cost
// depends on the offered rate (fewer frames per wake-up).
struct gen_config {
	__u32 nsources;
	__u32 set_permille;	// share of frames from the set; the rest are random
	__u32 rand_base;	// random sources: rand_base | (rand & rand_mask)
	__u32 rand_mask;
};

// Must match setAddr in sources.go: 10.0.0.0/8 with the low 24 bits of
// i times an odd constant, a bijection on [0, 2^24).
static __always_inline __u32 set_addr(__u32 i)
{
	return bpf_htonl(0x0a000000 | ((i * 0x9e3779b1u) & 0xffffff));
}

// An array, not .rodata, so one loaded program serves every scenario.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_cfg SEC(".maps");

// One's-complement update for a 32-bit field covered by a checksum
// (RFC 1624); byte-order neutral, so network-order values work as they are.
static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u32 c = (__u16)~*sum;

	c += (__u16)~from + (__u16)(~from >> 16);
	c += (__u16)to + (__u16)(to >> 16);
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	*sum = ~c;
}

// Runs under BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on the generator's
// veth: it rewrites the template frame's source address and port, and
// XDP_TX, which the test run turns into a redirect out of that veth, puts it
// into the DUT's receive ring. The page pool recycles frames, so the rewrite
// must be complete every time: nothing from the previous packet may leak.
SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1);
	__u32 zero = 0;

	if ((void *)(tcp + 1) > data_end)
		return XDP_ABORTED;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_cfg, &zero);

	if (!cfg || !cfg->nsources)
		return XDP_ABORTED;

	__u32 r = bpf_get_prandom_u32();
	__u32 src;

	if (r % 1000 < cfg->set_permille) {
		src = set_addr(bpf_get_prandom_u32() % cfg->nsources);
	} else {
		src = cfg->rand_base | (bpf_get_prandom_u32() & cfg->rand_mask);
	}

	__u32 old = ip->saddr;

	ip->saddr = src;
	csum_replace4(&ip->check, old, src);
	csum_replace4(&tcp->check, old, src);

	// A fresh source port each time, so the TCP stack (no filter) sees new
	// connection attempts rather than retransmissions of one.
	__u32 oldp = tcp->source;
	__u32 newp = bpf_htons(1024 + (r >> 16) % 60000);

	tcp->source = newp;
	csum_replace4(&tcp->check, oldp, newp);
	return XDP_TX;
}

// The IPv4 header of the frame, bounds-checked; NULL for anything but IPv4
// over Ethernet.
static __always_inline struct iphdr *ipv4_of(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	return ip;
}

// On the generator's veth: the DUT's SYN-ACKs to spoofed sources die here,
// cheaply, instead of in the generator namespace's TCP stack. Traffic for
// the harness's own addresses (198.18.0.0/15: the legitimate client, ARP)
// passes.
SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);

	if (!ip)
		return XDP_PASS;
	if ((ip->daddr & bpf_htonl(0xfffe0000)) == bpf_htonl(0xc6120000))
		return XDP_PASS;
	return XDP_DROP;
}

// The floor: no parsing, no lookup.
SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

// The floor of any filter by source: parse Ethernet and IPv4 and read the
// source, as every filter must, then drop. The test on the source keeps
// the read; the generator never sends 0.0.0.0. Its distance from the floor
// is what touching the packet costs; the lookup references' distance from
// it is their table's.
SEC("xdp")
int xdp_parse(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);

	if (!ip || !ip->saddr)
		return XDP_PASS;
	return XDP_DROP;
}

// A reference for the ban path: parse Ethernet and IPv4, one hash lookup on
// the source, drop on a hit. No expiry, counters or rate limiting: the
// least a hash-map ban list can cost. The harness sizes the map.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8);
} lookup_v4 SEC(".maps");

SEC("xdp")
int xdp_lookup(struct xdp_md *ctx)
{
	struct iphdr *ip = ipv4_of(ctx);

	if (!ip)
		return XDP_PASS;
	if (bpf_map_lookup_elem(&lookup_v4, &ip->saddr))
		return XDP_DROP;
	return XDP_PASS;
}

// A second reference, for a different layout: bucketized open addressing in
// an ARRAY map. A bucket is one 64-byte cache line of 16 IPv4 keys; the
// harness fills the table from userspace at most half full, so a lookup
// reads one line, rarely two. Not a product (no expiry, no deletion
// scheme, no IPv6): the question it answers is how much of the hash map's
// cost is its layout.
#define OA_WAYS 16
#define OA_PROBES 4

struct oa_bucket {
	__u32 key[OA_WAYS];	// network order; 0 ends a probe sequence
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct oa_bucket);
} oa_table SEC(".maps");

// Bucket count minus one; the count is a power of two.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} oa_mask SEC(".maps");

SEC("xdp")
int xdp_oa(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct iphdr *ip = ipv4_of(ctx);

	if (!ip)
		return XDP_PASS;
	__u32 *mask = bpf_map_lookup_elem(&oa_mask, &zero);

	if (!mask)
		return XDP_PASS;
	__u32 key = ip->saddr;
	// The murmur3 finalizer (oaBuild places the keys with its Go twin,
	// datapath.Fmix32): the generator's sources are an arithmetic
	// progression in their low bits, which a multiplicative hash alone
	// would map onto a few buckets.
	__u32 b = fmix32(key);

	for (int p = 0; p < OA_PROBES; p++) {
		__u32 idx = (b + p) & *mask;
		struct oa_bucket *bk = bpf_map_lookup_elem(&oa_table, &idx);

		if (!bk)
			return XDP_PASS;
#pragma unroll
		for (int i = 0; i < OA_WAYS; i++) {
			if (bk->key[i] == key)
				return XDP_DROP;
			if (bk->key[i] == 0)
				return XDP_PASS;
		}
	}
	return XDP_PASS;
}
