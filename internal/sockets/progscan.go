package sockets

import (
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// scanner runs one of sockets.c's scan programs (scan, login_scan) with
// BPF_PROG_TEST_RUN and reads the records it left in its memory-mapped
// array: no copy through a syscall, and none of the seq_file's page-sized
// reads.
type scanner struct {
	prog *ebpf.Program
	end  *ebpf.Variable // scan_end: the clocks and counts
	out  *ebpf.Memory
	buf  []byte // the last scan's records, reused
}

func newScanner(prog *ebpf.Program, end *ebpf.Variable, out *ebpf.Map) (scanner, error) {
	mem, err := out.Memory()
	if err != nil {
		return scanner{}, err
	}
	return scanner{prog: prog, end: end, out: mem}, nil
}

// read runs the scan; it returns the records and the scan's clocks.
func (s *scanner) read() ([]byte, bpf.SocketsConnEnd, error) {
	var end bpf.SocketsConnEnd
	if _, err := s.prog.Run(&ebpf.RunOptions{}); err != nil {
		return nil, end, fmt.Errorf("scan: %w", err)
	}
	if err := s.end.Get(&end); err != nil {
		return nil, end, err
	}
	n := int(end.Listed) * recLen
	if cap(s.buf) < n {
		s.buf = make([]byte, n, n+n/4)
	}
	b := s.buf[:n]
	if n == 0 {
		return b, end, nil
	}
	if _, err := s.out.ReadAt(b, 0); err != nil {
		return nil, end, err
	}
	return b, end, nil
}

// runIter runs an iterator that writes nothing to the end: the seeds.
func runIter(prog *ebpf.Program) error {
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return err
	}
	defer it.Close()
	r, err := it.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}
