//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The sockets that Dovecot's login processes hold, by inode: what tells a
// connection before authentication from one handed to imap or pop3
// (internal/sockets, "pre-auth"). A task_file iterator walks every open
// file of every process in the kernel, in one read(2), where the /proc
// walk it replaces took a getdents and a readlink for each descriptor of
// each login process: most of the daemon's time under pressure, when a
// high-security Dovecot runs hundreds of login processes.
//
// login_sockets writes one __u64 inode per socket of a process whose comm
// is one of login_comm's names (what the /proc walk finds, for the
// fallback and its tests). login_conns writes a struct conn_rec for each
// of those that is an established TCP connection to a protected port of
// this namespace, and a struct conn_end after the last: the pre-auth
// connections, with no inet_diag dump to join. A process's threads share
// its descriptors, and the iterator visits each table once.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "logincomm.h"
#include "connrec.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct task_struct {
	char comm[16];
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

SEC("iter/task_file")
int login_sockets(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	char comm[COMM_LEN];
	__u64 ino;

	if (!task || !file)
		return 0;
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return 0;
	if (bpf_probe_read_kernel(comm, sizeof(comm), task->comm) || !is_login(comm))
		return 0;
	ino = file->f_inode->i_ino;
	bpf_seq_write(ctx->meta->seq, &ino, sizeof(ino));
	return 0;
}

SEC("iter/task_file")
int login_conns(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct conn_rec r;
	struct sock *sk;
	char comm[COMM_LEN];

	// The last call, after every file, has none.
	if (!task || !file) {
		struct conn_end e = { .jiffies = bpf_jiffies64(), .now_ns = bpf_ktime_get_ns() };

		bpf_seq_write(seq, &e, sizeof(e));
		return 0;
	}
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return 0;
	if (bpf_probe_read_kernel(comm, sizeof(comm), task->comm) || !is_login(comm))
		return 0;
	// private_data is a void pointer: only probe reads go past it.
	sk = BPF_CORE_READ((struct socket *)file->private_data, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED ||
	    !protected_port(BPF_CORE_READ(sk, __sk_common.skc_num)) ||
	    BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != netns_ino)
		return 0;
	fill_rec(&r, sk, bpf_jiffies64());
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}
