package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// LoginIter finds the login processes' connections from the kernel
// (internal/bpf/sockets.c): one program run instead of LoginInodes' walk
// of /proc, which under pressure took most of the daemon's time, and no
// dump of every socket to join. The kernel keeps the login processes in a
// table as they exec and exit, and a scan reads only their descriptors: a
// task_file iterator, which this replaced, visits every open file of
// every process, and a large IMAP host runs an imap process per session
// (86 ms a scan with 3,000 idle processes on the host, against 0.07 ms
// with none; BENCHMARKS.md, "Socket scan"). It needs Linux 5.17 (bpf_loop)
// and the kernel's BTF; where it cannot load, LoginInodes does the work.
type LoginIter struct {
	objs  loginObjs
	links []link.Link
	it    *link.Iter // login_sockets, for Inodes
	scan  scanner
	hz    uint64
}

// loginObjs are the login programs and maps in the sockets object:
// LoadAndAssign loads these and what they use, not the connection index's.
type loginObjs struct {
	Sockets *ebpf.Program  `ebpf:"login_sockets"`
	Exec    *ebpf.Program  `ebpf:"login_exec"`
	Exit    *ebpf.Program  `ebpf:"login_exit"`
	Seed    *ebpf.Program  `ebpf:"login_seed"`
	Scan    *ebpf.Program  `ebpf:"login_scan"`
	Tasks   *ebpf.Map      `ebpf:"login_tasks"`
	Out     *ebpf.Map      `ebpf:"out"`
	ScanEnd *ebpf.Variable `ebpf:"scan_end"`
}

func (o *loginObjs) Close() error {
	return errors.Join(o.Sockets.Close(), o.Exec.Close(), o.Exit.Close(), o.Seed.Close(),
		o.Scan.Close(), o.Tasks.Close(), o.Out.Close())
}

// maxLoginNames is login_comm's length in logincomm.h.
const maxLoginNames = 4

// loginTableSize is how many login processes the kernel's table holds
// (login_tasks in sockets.c); a variable so that a test can fill it.
var loginTableSize uint32 = 16384

// NewLoginIter loads the table of the processes named names (comm, at
// most four of at most 15 bytes), which AppendConns reads for their
// connections to ports in the calling thread's network namespace.
func NewLoginIter(names []string, ports ...uint16) (_ *LoginIter, err error) {
	comm, err := loginComm(names)
	if err != nil {
		return nil, err
	}
	spec, err := socketsSpec(ports)
	if err != nil {
		return nil, fmt.Errorf("login sockets: %w", err)
	}
	if err := spec.Variables["login_comm"].Set(comm); err != nil {
		return nil, fmt.Errorf("login sockets: %w", err)
	}
	spec.Maps["login_tasks"].MaxEntries = loginTableSize
	l := &LoginIter{}
	if err := spec.LoadAndAssign(&l.objs, nil); err != nil {
		return nil, fmt.Errorf("login sockets: load: %w", err)
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.it, err = link.AttachIter(link.IterOptions{Program: l.objs.Sockets}); err != nil {
		return nil, fmt.Errorf("login sockets: attach the iterator: %w", err)
	}
	// The hooks first, then the seed: a process that comes meanwhile is
	// added by one or both, and one that leaves meanwhile is dropped by
	// the scan (list_task).
	for _, p := range []*ebpf.Program{l.objs.Exec, l.objs.Exit} {
		lk, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			return nil, fmt.Errorf("login sockets: attach %s: %w", p, err)
		}
		l.links = append(l.links, lk)
	}
	if err := runIter(l.objs.Seed); err != nil {
		return nil, fmt.Errorf("login sockets: seed: %w", err)
	}
	if l.scan, err = newScanner(l.objs.Scan, l.objs.ScanEnd, l.objs.Out); err != nil {
		return nil, fmt.Errorf("login sockets: %w", err)
	}
	l.hz, err = jiffiesPerSecond(func() (bpf.SocketsConnEnd, error) {
		_, end, err := l.scan.read()
		return end, err
	})
	return l, err
}

// AppendConns appends to dst the established connections to the ports
// given to NewLoginIter that a login process holds: the pre-auth
// connections (see PreAuth). With ErrIndexFull, some were left out: a
// login process found no room in the table, or its connections none in
// the listing.
func (l *LoginIter) AppendConns(dst []Conn) ([]Conn, error) {
	recs, end, err := l.scan.read()
	if err != nil {
		return dst, fmt.Errorf("login sockets: %w", err)
	}
	dst = appendRecs(dst, recs, l.hz)
	if end.Dropped > 0 || end.Full > 0 {
		return dst, fmt.Errorf("login sockets: %w: %d login processes never tracked, %d connections not listed", ErrIndexFull, end.Full, end.Dropped)
	}
	return dst, nil
}

// loginComm is names as logincomm.h's login_comm.
func loginComm(names []string) ([maxLoginNames][16]byte, error) {
	var comm [maxLoginNames][16]byte
	if len(names) > maxLoginNames {
		return comm, fmt.Errorf("login sockets: %d process names, at most %d", len(names), maxLoginNames)
	}
	for i, n := range names {
		if len(n) == 0 || len(n) > 15 {
			return comm, fmt.Errorf("login sockets: process name %q: want 1-15 bytes", n)
		}
		copy(comm[i][:], n)
	}
	return comm, nil
}

// Inodes returns the inodes of the sockets the login processes hold, as
// LoginInodes does (a task_file iterator over every process: for tests
// and comparisons, not for the daemon's checks).
func (l *LoginIter) Inodes() (map[uint32]bool, error) {
	r, err := l.it.Open()
	if err != nil {
		return nil, fmt.Errorf("login sockets: %w", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("login sockets: read the iterator: %w", err)
	}
	out := make(map[uint32]bool, len(b)/8)
	for ; len(b) >= 8; b = b[8:] {
		out[uint32(binary.NativeEndian.Uint64(b))] = true
	}
	return out, nil
}

// Close detaches the hooks and the iterator.
func (l *LoginIter) Close() error {
	for _, lk := range l.links {
		lk.Close()
	}
	if l.it != nil {
		l.it.Close()
	}
	return l.objs.Close()
}
