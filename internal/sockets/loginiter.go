package sockets

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// LoginIter finds the login processes' sockets with a BPF task_file
// iterator (internal/bpf/loginsocks.c): one read(2) instead of LoginInodes'
// walk of /proc, which under pressure took most of the daemon's time. It
// needs Linux 5.8 and the kernel's BTF; where it cannot load, LoginInodes
// does the same work.
type LoginIter struct {
	it *link.Iter
}

// maxLoginNames is login_comm's length in loginsocks.c.
const maxLoginNames = 4

// NewLoginIter loads the iterator for processes named names (comm, at most
// four of at most 15 bytes).
func NewLoginIter(names []string) (*LoginIter, error) {
	var comm [maxLoginNames][16]byte
	if len(names) > maxLoginNames {
		return nil, fmt.Errorf("login sockets: %d process names, at most %d", len(names), maxLoginNames)
	}
	for i, n := range names {
		if len(n) == 0 || len(n) > 15 {
			return nil, fmt.Errorf("login sockets: process name %q: want 1-15 bytes", n)
		}
		copy(comm[i][:], n)
	}
	spec, err := bpf.LoadLoginsocks()
	if err != nil {
		return nil, fmt.Errorf("login sockets: %w", err)
	}
	if err := spec.Variables["login_comm"].Set(comm); err != nil {
		return nil, fmt.Errorf("login sockets: %w", err)
	}
	var objs bpf.LoginsocksObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("login sockets: load the iterator: %w", err)
	}
	defer objs.Close() // the link holds the program
	it, err := link.AttachIter(link.IterOptions{Program: objs.LoginSockets})
	if err != nil {
		return nil, fmt.Errorf("login sockets: attach the iterator: %w", err)
	}
	return &LoginIter{it: it}, nil
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

// Close detaches the iterator.
func (l *LoginIter) Close() error { return l.it.Close() }
