package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// LoginIter finds the login processes' sockets with a BPF task_file
// iterator (internal/bpf/sockets.c): one read(2) instead of LoginInodes'
// walk of /proc, which under pressure took most of the daemon's time. It
// needs Linux 5.8 and the kernel's BTF; where it cannot load, LoginInodes
// does the same work.
type LoginIter struct {
	it, conns *link.Iter
	hz        uint64
	buf       []byte // the last read's records, reused
}

// maxLoginNames is login_comm's length in logincomm.h.
const maxLoginNames = 4

// NewLoginIter loads the iterator for processes named names (comm, at most
// four of at most 15 bytes). With ports, AppendConns lists the login
// processes' connections to those ports in the calling thread's network
// namespace.
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
	// Only the iterators and what they use, not the connection index's
	// programs and maps.
	var objs struct {
		LoginSockets *ebpf.Program `ebpf:"login_sockets"`
		LoginConns   *ebpf.Program `ebpf:"login_conns"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("login sockets: load the iterator: %w", err)
	}
	// The links hold the programs.
	defer objs.LoginSockets.Close()
	defer objs.LoginConns.Close()
	l := &LoginIter{}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if l.it, err = link.AttachIter(link.IterOptions{Program: objs.LoginSockets}); err != nil {
		return nil, fmt.Errorf("login sockets: attach the iterator: %w", err)
	}
	if len(ports) == 0 {
		return l, nil
	}
	if l.conns, err = link.AttachIter(link.IterOptions{Program: objs.LoginConns}); err != nil {
		return nil, fmt.Errorf("login sockets: attach the iterator: %w", err)
	}
	l.hz, err = jiffiesPerSecond(func() (bpf.SocketsConnEnd, error) {
		_, end, err := l.read()
		return end, err
	})
	return l, err
}

// read reads the connections' iterator into l.buf; it returns the records
// and the clocks.
func (l *LoginIter) read() ([]byte, bpf.SocketsConnEnd, error) {
	var end bpf.SocketsConnEnd
	r, err := l.conns.Open()
	if err != nil {
		return nil, end, fmt.Errorf("login sockets: %w", err)
	}
	defer r.Close()
	b := l.buf[:0]
	if cap(b) == 0 {
		b = make([]byte, 0, 16<<10)
	}
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, cap(b))
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return nil, end, fmt.Errorf("login sockets: read the iterator: %w", err)
		}
	}
	l.buf = b
	if len(b) < recEndLen || (len(b)-recEndLen)%recLen != 0 {
		return nil, end, fmt.Errorf("login sockets: read %d bytes: not records of %d and an end of %d", len(b), recLen, recEndLen)
	}
	t := b[len(b)-recEndLen:]
	end.Jiffies = binary.NativeEndian.Uint64(t)
	end.NowNs = binary.NativeEndian.Uint64(t[8:])
	return b[:len(b)-recEndLen], end, nil
}

// AppendConns appends to dst the established connections to the ports
// given to NewLoginIter that a login process holds: the pre-auth
// connections (see PreAuth), with no dump of every socket to join.
func (l *LoginIter) AppendConns(dst []Conn) ([]Conn, error) {
	if l.conns == nil {
		return dst, errors.New("login sockets: loaded without ports")
	}
	recs, _, err := l.read()
	if err != nil {
		return dst, err
	}
	return appendRecs(dst, recs, l.hz), nil
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
// LoginInodes does.
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

// Close detaches the iterators.
func (l *LoginIter) Close() error {
	if l.conns != nil {
		l.conns.Close()
	}
	if l.it != nil {
		return l.it.Close()
	}
	return nil
}
