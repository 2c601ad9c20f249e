package sockets

import (
	"errors"
	"fmt"
	"math"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// ConnIndex lists the connections that can hold a login slot silently:
// the established connections to the protected ports that have received
// at most a given number of bytes, from an index the kernel keeps
// (internal/bpf/sockets.c). Conns' dump walks every TCP socket of the host
// and fills every protected-port one: 150 ms with 100,000 connections
// (BENCHMARKS.md, "Socket scan"). The index drops a connection for good
// the first time a scan finds it over the bytes, so a logged-in IDLE
// session costs one scan, and a scan's cost follows the connections that
// could be holders.
//
// It needs Linux 5.13 (bpf_for_each_map_elem) and the kernel's BTF; where
// it cannot load, Conns does the work.
type ConnIndex struct {
	objs  connIndexObjs
	links []link.Link
	scan  scanner
	hz    uint64 // jiffies a second
}

// connIndexObjs are the index's part of the sockets object, which
// LoadAndAssign loads without the login programs and their table.
type connIndexObjs struct {
	ConnState    *ebpf.Program  `ebpf:"conn_state"`
	Seed         *ebpf.Program  `ebpf:"seed"`
	Scan         *ebpf.Program  `ebpf:"scan"`
	Conns        *ebpf.Map      `ebpf:"conns"`
	Out          *ebpf.Map      `ebpf:"out"`
	ScanEnd      *ebpf.Variable `ebpf:"scan_end"`
	ScanMaxBytes *ebpf.Variable `ebpf:"scan_max_bytes"`
}

func (o *connIndexObjs) Close() error {
	return errors.Join(o.ConnState.Close(), o.Seed.Close(), o.Scan.Close(), o.Conns.Close(), o.Out.Close())
}

// IndexSize is how many connections the index holds by default: far more
// than any Dovecot's login slots (process_limit x client_limit), which
// bound the connections that stay under a few dozen bytes for long.
const IndexSize = 65536

// ErrIndexFull is returned by AppendConns when connections were left out
// of the index (or of a scan) for want of room: the scan is incomplete,
// and Conns must do it.
var ErrIndexFull = errors.New("connection index: full")

// NewConnIndex loads the index of the protected ports' connections in the
// calling thread's network namespace, holding at most size connections,
// and adds those that exist already.
func NewConnIndex(ports []uint16, size int) (_ *ConnIndex, err error) {
	if size < 1 {
		return nil, fmt.Errorf("connection index: size %d", size)
	}
	spec, err := socketsSpec(ports)
	if err != nil {
		return nil, fmt.Errorf("connection index: %w", err)
	}
	spec.Maps["conns"].MaxEntries = uint32(size)
	spec.Maps["out"].MaxEntries = uint32(size)
	ci := &ConnIndex{}
	if err := spec.LoadAndAssign(&ci.objs, nil); err != nil {
		return nil, fmt.Errorf("connection index: load: %w", err)
	}
	defer func() {
		if err != nil {
			ci.Close()
		}
	}()
	if ci.scan, err = newScanner(ci.objs.Scan, ci.objs.ScanEnd, ci.objs.Out); err != nil {
		return nil, fmt.Errorf("connection index: %w", err)
	}
	// The hook first, then the seed: a connection that comes meanwhile
	// is added by one or both.
	l, err := link.AttachTracing(link.TracingOptions{Program: ci.objs.ConnState})
	if err != nil {
		return nil, fmt.Errorf("connection index: attach to inet_sock_set_state: %w", err)
	}
	ci.links = append(ci.links, l)
	if err := runIter(ci.objs.Seed); err != nil {
		return nil, fmt.Errorf("connection index: seed: %w", err)
	}
	if ci.hz, err = jiffiesPerSecond(func() (bpf.SocketsConnEnd, error) {
		// No bound: a calibration must not drop anything.
		_, end, err := ci.read(math.MaxUint64)
		return end, err
	}); err != nil {
		return nil, err
	}
	return ci, nil
}

// socketsSpec is the sockets object (internal/bpf/sockets.c) with
// connrec.h's constants set: ports, and netns_ino, the calling thread's
// network namespace.
func socketsSpec(ports []uint16) (*ebpf.CollectionSpec, error) {
	spec, err := bpf.LoadSockets()
	if err != nil {
		return nil, err
	}
	var bits [1024]uint64
	for _, p := range ports {
		bits[p>>6] |= 1 << (p & 63)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nil, err
	}
	if err := spec.Variables["ports"].Set(bits); err != nil {
		return nil, err
	}
	if err := spec.Variables["netns_ino"].Set(uint32(st.Ino)); err != nil {
		return nil, err
	}
	return spec, nil
}

// read runs the scan; it returns the records and the scan's clocks.
func (ci *ConnIndex) read(maxBytes uint64) ([]byte, bpf.SocketsConnEnd, error) {
	if err := ci.objs.ScanMaxBytes.Set(maxBytes); err != nil {
		return nil, bpf.SocketsConnEnd{}, fmt.Errorf("connection index: %w", err)
	}
	recs, end, err := ci.scan.read()
	if err != nil {
		return nil, end, fmt.Errorf("connection index: %w", err)
	}
	return recs, end, nil
}

// AppendConns appends to dst the connections that have received at most
// maxBytes, as Conns lists them, and drops the
// others from the index for good: a larger maxBytes needs a new index.
// With ErrIndexFull, some were left out.
func (ci *ConnIndex) AppendConns(dst []Conn, maxBytes uint64) ([]Conn, error) {
	recs, end, err := ci.read(maxBytes)
	if err != nil {
		return dst, err
	}
	dst = appendRecs(dst, recs, ci.hz)
	if end.Dropped > 0 || end.Full > 0 {
		return dst, fmt.Errorf("%w: %d connections never indexed, %d not listed", ErrIndexFull, end.Full, end.Dropped)
	}
	return dst, nil
}

// Close detaches the hook and frees the index.
func (ci *ConnIndex) Close() error {
	for _, l := range ci.links {
		l.Close()
	}
	return ci.objs.Close()
}
