// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// A connection to a protected port as the connection programs report it
// (sockets.c): the fields of inet_diag's sockid and of tcp_info that the
// slot checks read (sockets.Conn), from the socket itself.

#ifndef CONNREC_H
#define CONNREC_H

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

// Just the fields read, relocated against the running kernel's BTF
// (CO-RE): no vmlinux.h to generate or commit.
#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
};
struct file {
	struct inode *f_inode;
	void *private_data;
};
struct socket {
	struct file *file;
	struct sock *sk;
};
struct ns_common {
	unsigned int inum;
};
struct net {
	struct ns_common ns;
};
struct in6_addr {
	__u8 u6_addr8[16];
};
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	int skc_bound_dev_if;
	struct {
		struct net *net;
	} skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	struct {
		__s64 counter;
	} skc_cookie;
};
struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	struct socket *sk_socket;
};
struct inet_connection_sock {
	struct {
		__u32 lrcvtime;
	} icsk_ack;
};
struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 rcv_tstamp;
	__u32 lsndtime;
	__u32 packets_out;
	__u64 bytes_received;
	__u64 bytes_acked;
};
#pragma clang attribute pop

#define AF_INET 2
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define S_IFMT 0170000
#define S_IFSOCK 0140000

// Set by the loader: the protected ports (a bit each) and the network
// namespace whose connections count (the inode of /proc/thread-self/ns/net).
volatile const __u64 ports[1024];
volatile const __u32 netns_ino;

static __always_inline int protected_port(__u16 port)
{
	return (ports[port >> 6] >> (port & 63)) & 1;
}

struct conn_rec {
	__u8 family;
	__u8 state;
	__u16 lport;		// host order
	__u16 rport;		// host order
	__u16 pad;
	__u32 inode;		// 0 while in the accept queue
	__u32 ifindex;
	__u8 laddr[16];		// IPv4 in the first 4 bytes
	__u8 raddr[16];
	__u64 cookie;
	__u64 bytes_received;
	__u64 bytes_acked;
	// Jiffies before conn_end.jiffies, as tcp_info keeps them.
	__u32 since_recv;	// tcpi_last_data_recv
	__u32 since_ack;	// tcpi_last_ack_recv
	__u32 since_sent;	// tcpi_last_data_sent
	__u32 unacked;		// tcpi_unacked
};

// Ends a listing: the clocks its records' times are relative to.
struct conn_end {
	__u64 jiffies;
	__u64 now_ns;
	__u32 listed;		// records
	__u32 dropped;		// connections left out for want of room
	__u64 full;		// connections never indexed: the index was full
};

static __always_inline __u32 inode_of(struct sock *sk)
{
	struct socket *so = BPF_CORE_READ(sk, sk_socket);
	struct file *f;

	if (!so)
		return 0;
	f = BPF_CORE_READ(so, file);
	if (!f)
		return 0;
	return BPF_CORE_READ(f, f_inode, i_ino);
}

// fill_rec reads sk, an established TCP socket, with probe reads: the
// callers hold an address, or a pointer the verifier does not type.
static __always_inline void fill_rec(struct conn_rec *r, struct sock *sk, __u32 now)
{
	struct tcp_sock *tp = (void *)sk;

	r->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	r->state = TCP_ESTABLISHED;
	r->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	r->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	r->ifindex = BPF_CORE_READ(sk, __sk_common.skc_bound_dev_if);
	__builtin_memset(r->laddr, 0, sizeof(r->laddr));
	__builtin_memset(r->raddr, 0, sizeof(r->raddr));
	if (r->family == AF_INET) {
		bpf_core_read(r->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(r->raddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(r->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(r->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	r->inode = inode_of(sk);
	r->cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	r->bytes_received = BPF_CORE_READ(tp, bytes_received);
	r->bytes_acked = BPF_CORE_READ(tp, bytes_acked);
	r->since_recv = now - BPF_CORE_READ(tp, inet_conn.icsk_ack.lrcvtime);
	r->since_ack = now - BPF_CORE_READ(tp, rcv_tstamp);
	r->since_sent = now - BPF_CORE_READ(tp, lsndtime);
	r->unacked = BPF_CORE_READ(tp, packets_out);
}

#endif
