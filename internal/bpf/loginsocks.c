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
// Output: one __u64 inode per socket of a process whose comm is one of
// login_comm's names. A process's threads share its descriptors, and the
// iterator visits each table once.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Just the fields read, relocated against the running kernel's BTF
// (CO-RE): no vmlinux.h to generate or commit.
struct inode {
	unsigned short i_mode;
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

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

#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define COMM_LEN 16
#define MAX_COMMS 4

// The login processes' names (sockets.LoginProcesses), NUL-padded; set by
// the loader. An empty name matches nothing.
volatile const char login_comm[MAX_COMMS][COMM_LEN];

static __always_inline int is_login(const char *comm)
{
	for (int n = 0; n < MAX_COMMS; n++) {
		int i;

		if (!login_comm[n][0])
			continue;
		for (i = 0; i < COMM_LEN; i++) {
			if (comm[i] != login_comm[n][i])
				break;
			if (!comm[i])
				return 1;
		}
		if (i == COMM_LEN)
			return 1;
	}
	return 0;
}

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
	// A copy on the stack: the name loop's loads from a kernel pointer
	// at a variable offset are what the verifier refuses.
	if (bpf_probe_read_kernel(comm, sizeof(comm), task->comm) || !is_login(comm))
		return 0;
	ino = file->f_inode->i_ino;
	bpf_seq_write(ctx->meta->seq, &ino, sizeof(ino));
	return 0;
}
