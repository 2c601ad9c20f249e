//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The programs that watch the protected ports' sockets for internal/sockets,
// in one object: the connection index (sockets.ConnIndex: conn_state, seed,
// scan) and the login processes' connections (sockets.LoginIter:
// login_exec, login_exit, login_seed, login_scan, and login_sockets). Each
// loader loads only its own programs and the maps they use, and sets its
// own constants.
//
// The connection index: the established connections to the protected
// ports that can still hold a login slot, kept by the kernel as they come
// and go, so that a slot check reads those and not every TCP socket of the
// host. inet_diag cannot do this: its dump walks the whole established hash
// (about 350 ns a socket) and fills every protected-port socket it lets
// through (1-4 us each), and a large IMAP host's 100,000 logged-in IDLE
// sessions are exactly such sockets.
//
// A connection enters `conns` when its handshake completes (the
// inet_sock_set_state tracepoint, SYN_RECV -> ESTABLISHED), and leaves when
// it leaves ESTABLISHED, or when a scan finds that it has received more
// than scan_max_bytes: it can never be a silent slot holder again. A
// logged-in IDLE session so costs one scan. (The pre-auth connections that
// talk, the user-name trawlers, are found in the login processes instead:
// login_scan.)
//
// Connections established before the index was loaded are added by
// `seed`, a TCP iterator run once.
//
// `scan` lists the index into `out`; the daemon runs it with
// BPF_PROG_TEST_RUN. (An iterator over the map would do the same, but the
// hosts this was built on refuse map-element iterators, fentry and
// kprobes, while tracepoints, raw tracepoint programs and the TCP and task
// iterators load.)
//
// The login processes' connections: what tells a connection before
// authentication from one handed to imap or pop3 (internal/sockets,
// "pre-auth") is that a login process holds it. The kernel keeps the
// login processes (comm one of login_comm's names) in `login_tasks` as
// they exec and exit, and login_scan, run like `scan`, reads only their
// descriptor tables: its cost follows the login processes, not the host's
// processes, where a busy IMAP host runs one imap process per session.
// login_sockets, a task_file iterator over every process, writes one __u64
// inode per login-process socket: what the /proc walk (the fallback) finds,
// for its tests.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "connrec.h"
#include "logincomm.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	struct files_struct *files;
	char comm[16];
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

#define TCP_SYN_RECV 3

// What the index keeps of a connection: its cookie, which tells it from a
// later socket at the same address.
struct conn_seen {
	__u64 cookie;
};

// By the address of the struct sock, which the scan follows with probe
// reads: a map cannot hold a socket pointer. Sizes are defaults: the
// loader sets this and `out` to the index's size.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn_seen);
} conns SEC(".maps");

// Memory-mapped: the daemon reads the records where they are.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct conn_rec);
} out SEC(".maps");

// The last scan's clocks and counts; and scan_max_bytes, set by the
// daemon (slot_holders.max_bytes).
struct conn_end scan_end;
__u64 scan_max_bytes;

static __always_inline void add(void *sk, __u64 cookie)
{
	__u64 key = (__u64)sk;
	struct conn_seen v = { .cookie = cookie };

	if (bpf_map_update_elem(&conns, &key, &v, BPF_ANY))
		__sync_fetch_and_add(&scan_end.full, 1);
}

SEC("tp_btf/inet_sock_set_state")
int conn_state(__u64 *ctx)
{
	struct sock *sk = (void *)ctx[0];
	__u64 key = (__u64)sk;

	if (!protected_port(sk->__sk_common.skc_num) || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (ctx[1] == TCP_ESTABLISHED) {
		bpf_map_delete_elem(&conns, &key);
		return 0;
	}
	if (ctx[1] != TCP_SYN_RECV || ctx[2] != TCP_ESTABLISHED)
		return 0;
	if (sk->__sk_common.skc_net.net->ns.inum != netns_ino)
		return 0;
	add(sk, bpf_get_socket_cookie(sk));
	return 0;
}

SEC("iter/tcp")
int seed(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp || skc->skc_state != TCP_ESTABLISHED || !protected_port(skc->skc_num))
		return 0;
	add(tp, bpf_get_socket_cookie(tp));
	return 0;
}

struct scan_ctx {
	__u32 n;
	__u32 now;	// jiffies
};

static long list_conn(void *map, __u64 *key, struct conn_seen *v, struct scan_ctx *sc)
{
	struct sock *sk = (void *)*key;
	struct conn_rec *r;
	__u32 i = sc->n;

	// The socket was freed and its memory is another socket now (TCP
	// sockets are SLAB_TYPESAFE_BY_RCU): not ours.
	if (BPF_CORE_READ(sk, __sk_common.skc_cookie.counter) != v->cookie ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED)
		return 0;
	if (BPF_CORE_READ((struct tcp_sock *)sk, bytes_received) > scan_max_bytes) {
		bpf_map_delete_elem(&conns, key);
		return 0;
	}
	r = bpf_map_lookup_elem(&out, &i);
	if (!r) {
		scan_end.dropped++;
		return 0;
	}
	fill_rec(r, sk, sc->now);
	sc->n = i + 1;
	return 0;
}

// Run on demand (BPF_PROG_TEST_RUN), never attached.
SEC("raw_tp")
int scan(void *ctx)
{
	struct scan_ctx sc = { .now = bpf_jiffies64() };

	scan_end.dropped = 0;
	scan_end.jiffies = sc.now;
	scan_end.now_ns = bpf_ktime_get_ns();
	bpf_for_each_map_elem(&conns, list_conn, &sc, 0);
	scan_end.listed = sc.n;
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
	if (bpf_probe_read_kernel(comm, sizeof(comm), task->comm) || !is_login(comm))
		return 0;
	ino = file->f_inode->i_ino;
	bpf_seq_write(ctx->meta->seq, &ino, sizeof(ino));
	return 0;
}

// The login processes, by thread-group id: kept as they exec and exit
// (login_exec, login_exit), and seeded at load by a task iterator
// (login_seed). The value is the task's address, which login_scan follows
// with probe reads; a raw tracepoint program holds no task reference. A
// scan walks every bucket, about 3 ns each, so the table is sized for the
// login processes a Dovecot runs (default_process_limit is 100), not for
// its sessions; one that finds no room turns the daemon to /proc. The
// loader sets the size (sockets.loginTableSize).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} login_tasks SEC(".maps");

static __always_inline void track(struct task_struct *t)
{
	char comm[COMM_LEN];
	__u32 tgid = t->tgid;
	__u64 addr = (__u64)t;

	if (bpf_probe_read_kernel(comm, sizeof(comm), t->comm) || !is_login(comm)) {
		bpf_map_delete_elem(&login_tasks, &tgid);
		return;
	}
	if (bpf_map_update_elem(&login_tasks, &tgid, &addr, BPF_ANY))
		__sync_fetch_and_add(&scan_end.full, 1);
}

// Dovecot's master forks and execs each login process: its comm is the
// login name from exec on. A process that execs something else leaves.
SEC("tp_btf/sched_process_exec")
int login_exec(__u64 *ctx)
{
	struct task_struct *t = (void *)ctx[0];

	if (t->pid == t->tgid)
		track(t);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int login_exit(__u64 *ctx)
{
	struct task_struct *t = (void *)ctx[0];
	__u32 tgid = t->tgid;

	if (t->pid == tgid)
		bpf_map_delete_elem(&login_tasks, &tgid);
	return 0;
}

SEC("iter/task")
int login_seed(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;

	if (t && t->pid == t->tgid)
		track(t);
	return 0;
}

struct fd_walk {
	struct file **fd;	// the task's descriptor table
	struct scan_ctx *sc;
};

static long list_fd(__u64 i, struct fd_walk *w)
{
	struct scan_ctx *sc = w->sc;
	struct conn_rec *r;
	struct socket *so;
	struct file *f;
	struct sock *sk;
	__u32 n = sc->n;

	if (bpf_probe_read_kernel(&f, sizeof(f), &w->fd[i]) || !f ||
	    (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	so = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(so, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED ||
	    !protected_port(BPF_CORE_READ(sk, __sk_common.skc_num)) ||
	    BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != netns_ino)
		return 0;
	r = bpf_map_lookup_elem(&out, &n);
	if (!r) {
		scan_end.dropped++;
		return 1;
	}
	fill_rec(r, sk, sc->now);
	sc->n = n + 1;
	return 0;
}

static long list_task(void *map, __u32 *tgid, __u64 *addr, struct scan_ctx *sc)
{
	struct task_struct *t = (void *)*addr;
	struct fd_walk w = { .sc = sc };
	struct fdtable *fdt;

	// The exit hook has removed a task whose memory is reused, unless it
	// exited between the seed's visit and its insert: such an entry names
	// another task, or none, and goes.
	if (BPF_CORE_READ(t, tgid) != *tgid || BPF_CORE_READ(t, pid) != *tgid) {
		bpf_map_delete_elem(map, tgid);
		return 0;
	}
	fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt)
		return 0;
	w.fd = BPF_CORE_READ(fdt, fd);
	bpf_loop(BPF_CORE_READ(fdt, max_fds), list_fd, &w, 0);
	return 0;
}

// Run on demand (BPF_PROG_TEST_RUN), never attached: the login processes'
// established connections to the protected ports of this namespace, into
// `out`. Its cost follows the login processes' descriptors, not the
// host's processes: a task_file iterator visits every open file of every
// process, and a large IMAP host runs an imap process per session.
SEC("raw_tp")
int login_scan(void *ctx)
{
	struct scan_ctx sc = { .now = bpf_jiffies64() };

	scan_end.dropped = 0;
	scan_end.jiffies = sc.now;
	scan_end.now_ns = bpf_ktime_get_ns();
	bpf_for_each_map_elem(&login_tasks, list_task, &sc, 0);
	scan_end.listed = sc.n;
	return 0;
}
