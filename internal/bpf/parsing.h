// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Header parsing helpers in the style of xdp-tools' parsing_helpers.h: the
// headers the uapi does not define, named, and the walks over VLAN tags and
// IPv6 extension headers, each bounded so the verifier sees a finite walk.
// Each helper advances *cur past what it read and never reads beyond
// data_end.

#ifndef XDPGUARD_PARSING_H
#define XDPGUARD_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>

#define VLAN_MAX_DEPTH 2	// 802.1ad outer tag + 802.1Q inner tag
#define MAX_EXT_HDRS 6		// IPv6 extension headers walked before L4

// An 802.1Q or 802.1ad tag, after the Ethernet addresses.
struct vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

// The IPv6 fragment header (RFC 8200 4.5); the uapi does not define it.
struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;	// offset in 8-byte units << 3, 2 reserved bits, M flag
	__be32 identification;
};

// The TCP flags byte (the kernel's include/net/tcp.h has these names).
#define TCPHDR_FIN 0x01
#define TCPHDR_SYN 0x02
#define TCPHDR_RST 0x04
#define TCPHDR_ACK 0x10

static __always_inline __u8 tcp_flag_byte(const struct tcphdr *tcp)
{
	return ((const __u8 *)tcp)[13];
}

#define IP_OFFSET 0x1fff	// IPv4 frag_off: the offset bits
#define IP6_OFFSET 0xfff8	// IPv6 frag_off: the offset bits

// What the walks return instead of an L4 protocol.
enum l4_none {
	L4_UNTRUSTED = -1,	// truncated, or too many extension headers: malformed
	L4_FRAGMENT = -2,	// a non-first fragment: no L4 header, not malformed
};

// The EtherType of the Ethernet header at eth, in one 16-bit load: struct
// ethhdr is packed, and clang reads a packed field a byte at a time.
static __always_inline __be16 eth_proto(const void *eth)
{
	return *(const __be16 *)(eth + __builtin_offsetof(struct ethhdr, h_proto));
}

static __always_inline int proto_is_vlan(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

// Skips up to VLAN_MAX_DEPTH tags after the Ethernet header, *proto being
// the Ethernet type and then each tag's encapsulated type. -1 when a tag is
// cut short.
static __always_inline int skip_vlans(void **cur, void *data_end, __be16 *proto)
{
#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		struct vlan_hdr *vh = *cur;

		if (!proto_is_vlan(*proto))
			break;
		if ((void *)(vh + 1) > data_end)
			return -1;
		*proto = vh->h_vlan_encapsulated_proto;
		*cur = vh + 1;
	}
	return 0;
}

static __always_inline int ipv6_is_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_MH:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return 1;
	}
	return 0;
}

// Walks the IPv6 extension headers from *cur, nexthdr being the first's
// type. Returns the L4 protocol with *cur at its header, or an enum l4_none.
// A seventh extension header is not walked: L4 is then untrusted.
static __always_inline int skip_ipv6_exts(void **cur, void *data_end, __u8 nexthdr)
{
#pragma unroll
	for (int i = 0; i <= MAX_EXT_HDRS; i++) {
		if (!ipv6_is_ext(nexthdr))
			return nexthdr;
		if (i == MAX_EXT_HDRS)
			break;

		struct ipv6_opt_hdr *h = *cur;	// nexthdr, hdrlen: common to all

		if ((void *)(h + 1) > data_end)
			return L4_UNTRUSTED;
		switch (nexthdr) {
		case IPPROTO_FRAGMENT: {
			struct ipv6_frag_hdr *fh = *cur;

			if ((void *)(fh + 1) > data_end)
				return L4_UNTRUSTED;
			// Only the first fragment carries the TCP header.
			if (fh->frag_off & bpf_htons(IP6_OFFSET))
				return L4_FRAGMENT;
			*cur = fh + 1;
			break;
		}
		case IPPROTO_AH:	// length in 4-byte units, minus 2
			*cur += ((__u32)h->hdrlen + 2) * 4;
			break;
		default:		// length in 8-byte units, minus 1
			*cur += ((__u32)h->hdrlen + 1) * 8;
		}
		nexthdr = h->nexthdr;
	}
	return L4_UNTRUSTED;
}

#endif
