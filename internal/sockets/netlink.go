package sockets

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// conn is a NETLINK_SOCK_DIAG socket in non-blocking mode, so that reads
// go through Go's poller and honour deadlines (and so ctx).
//
// Why not github.com/vishvananda/netlink, although it is a dependency: in
// v1.3.1 its SocketDiagTCP and SocketDiagTCPInfo dump every state of one
// family at a time, with no bytecode filter, and build a Go object with
// every attribute parsed for each socket; its SocketDestroy takes IPv4
// only and no cookie, so a socket whose 4-tuple was reused since the dump
// could be hit. With 100,000 connections on the host its dump took 2.3 to
// 2.8 times as long as this package's filtered one (BenchmarkScan,
// BENCHMARKS.md).
type conn struct {
	f   *os.File
	seq uint32
	buf []byte
}

func dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sockets: netlink socket: %w", err)
	}
	// Acks without the echoed request keep a batch of acks small.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sockets: netlink bind: %w", err)
	}
	return &conn{f: os.NewFile(uintptr(fd), "netlink-sock-diag"), buf: make([]byte, 64*1024)}, nil
}

func (c *conn) close() { c.f.Close() }

// dialCtx is dial with ctx cancelling reads and writes; call the returned
// function when done.
func dialCtx(ctx context.Context) (*conn, func(), error) {
	c, err := dial()
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.f.SetDeadline(time.Unix(1, 0)) })
	return c, func() { stop(); c.close() }, nil
}

const (
	nlmsgHdrLen    = 16
	diagReqLen     = 56 // struct inet_diag_req_v2
	diagReqV1Len   = 60 // struct inet_diag_req
	tcpdiagGetsock = 18 // TCPDIAG_GETSOCK
	tcpEstab       = 1  // TCP_ESTABLISHED
	tcpListen      = 10 // TCP_LISTEN
)

// query is a dump request: the TCP sockets of family in one of states (a
// mask of 1<<TCP_* bits), with the extensions of ext (idiag_ext) and
// those that pass bc (inet_diag bytecode; nil: all).
//
// Family AF_UNSPEC asks for both families in one dump. Only the original
// request (TCPDIAG_GETSOCK, struct inet_diag_req) can: SOCK_DIAG_BY_FAMILY
// takes one family per request, and every dump walks the kernel's whole
// established hash, every namespace's sockets included, whatever the
// filter. On a host with 100,000 connections that walk is most of a
// scan's cost (BENCHMARKS.md), so one walk instead of two halves it. The
// kernel still serves the old request (net/ipv4/inet_diag.c,
// inet_diag_rcv_msg_compat) with the same messages and bytecode.
type query struct {
	family uint8
	states uint32
	ext    uint8
	bc     []byte
}

// appendReq appends an inet_diag_req_v2 request. id is family..sockid as
// read from a dump (nil for a dump request, described by q).
func (c *conn) appendReq(b []byte, typ, flags uint16, q query, id []byte) []byte {
	c.seq++
	off := len(b)
	reqLen := diagReqLen
	if id == nil && q.family == unix.AF_UNSPEC {
		typ, reqLen = tcpdiagGetsock, diagReqV1Len
	}
	n := nlmsgHdrLen + reqLen
	if q.bc != nil {
		n += 4 + len(q.bc) // one attribute; bytecode is a multiple of 4
	}
	b = append(b, make([]byte, n)...)
	h := b[off:]
	binary.NativeEndian.PutUint32(h[0:], uint32(n))
	binary.NativeEndian.PutUint16(h[4:], typ)
	binary.NativeEndian.PutUint16(h[6:], flags)
	binary.NativeEndian.PutUint32(h[8:], c.seq)
	r := h[nlmsgHdrLen:]
	// v2: family, protocol, ext, pad, states, sockid.
	ext, sockid, states := &r[2], r[8:56], r[4:8]
	r[1] = unix.IPPROTO_TCP
	if reqLen == diagReqV1Len {
		// v1: family, src_len, dst_len, ext, sockid, states, dbs; the
		// protocol is the message type's.
		ext, sockid, states = &r[3], r[4:52], r[52:56]
		r[1] = 0
	}
	r[0] = q.family
	*ext = q.ext
	binary.NativeEndian.PutUint32(states, q.states)
	if id != nil {
		copy(sockid, id[4:diagMsgIDEnd]) // inet_diag_sockid, cookie included
	} else {
		// No cookie: INET_DIAG_NOCOOKIE.
		binary.NativeEndian.PutUint32(sockid[40:], ^uint32(0))
		binary.NativeEndian.PutUint32(sockid[44:], ^uint32(0))
	}
	if q.bc != nil {
		a := r[reqLen:]
		binary.NativeEndian.PutUint16(a[0:], uint16(4+len(q.bc)))
		binary.NativeEndian.PutUint16(a[2:], inetDiagReqBytecode)
		copy(a[4:], q.bc)
	}
	return b
}

// dump calls fn with every socket that q asks for.
func (c *conn) dump(q query, fn func(msg []byte)) error {
	if len(q.bc) > 0xffff-4 {
		return fmt.Errorf("sockets: filter of %d bytes is too long for the kernel", len(q.bc))
	}
	req := c.appendReq(nil, unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, q, nil)
	seq := c.seq
	if _, err := c.f.Write(req); err != nil {
		return fmt.Errorf("sockets: send dump request: %w", err)
	}
	for {
		n, err := c.f.Read(c.buf)
		if err != nil {
			return fmt.Errorf("sockets: read dump: %w", err)
		}
		for b := c.buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < nlmsgHdrLen || l > len(b) {
				return fmt.Errorf("sockets: malformed netlink message (length %d of %d)", l, len(b))
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			msgSeq := binary.NativeEndian.Uint32(b[8:])
			body := b[nlmsgHdrLen:l]
			b = next(b, l)
			if msgSeq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if errno := nlErrno(body); errno != 0 {
					return fmt.Errorf("sockets: dump: %w", errno)
				}
			case unix.SOCK_DIAG_BY_FAMILY, tcpdiagGetsock:
				if len(body) >= diagMsgLen {
					fn(body)
				}
			}
		}
	}
}

// destroyBatch bounds how many requests share one write: the kernel queues
// all their acks before we read any, and they must fit the receive buffer.
const destroyBatch = 64

// destroy sends SOCK_DESTROY for every target and counts the successes.
func (c *conn) destroy(targets [][]byte) (int, error) {
	destroyed := 0
	var firstErr error
	req := make([]byte, 0, destroyBatch*(nlmsgHdrLen+diagReqLen))
	for len(targets) > 0 {
		batch := targets[:min(destroyBatch, len(targets))]
		targets = targets[len(batch):]
		req = req[:0]
		first := c.seq + 1
		for _, id := range batch {
			req = c.appendReq(req, unix.SOCK_DESTROY, unix.NLM_F_REQUEST|unix.NLM_F_ACK, query{family: id[diagFamily]}, id)
		}
		if _, err := c.f.Write(req); err != nil {
			return destroyed, fmt.Errorf("sockets: send destroy request: %w", err)
		}
		for pending := len(batch); pending > 0; {
			n, err := c.f.Read(c.buf)
			if err != nil {
				return destroyed, fmt.Errorf("sockets: read acks: %w", err)
			}
			for b := c.buf[:n]; len(b) >= nlmsgHdrLen; {
				l := int(binary.NativeEndian.Uint32(b[0:]))
				if l < nlmsgHdrLen || l > len(b) {
					return destroyed, fmt.Errorf("sockets: malformed netlink message (length %d of %d)", l, len(b))
				}
				typ := binary.NativeEndian.Uint16(b[4:])
				seq := binary.NativeEndian.Uint32(b[8:])
				body := b[nlmsgHdrLen:l]
				b = next(b, l)
				if typ != unix.NLMSG_ERROR || seq < first || seq > c.seq {
					continue
				}
				pending--
				switch errno := nlErrno(body); errno {
				case 0:
					destroyed++
				case unix.ENOENT:
					// Closed on its own since the dump: nothing to free.
				case unix.EOPNOTSUPP:
					return destroyed, ErrUnsupported
				case unix.EPERM, unix.EACCES:
					return destroyed, fmt.Errorf("sockets: destroy: %w (needs CAP_NET_ADMIN)", errno)
				default:
					if firstErr == nil {
						firstErr = fmt.Errorf("sockets: destroy: %w", errno)
					}
				}
			}
		}
	}
	return destroyed, firstErr
}

// next returns what follows a message of length l in b.
func next(b []byte, l int) []byte { return b[min((l+3)&^3, len(b)):] }

func nlErrno(body []byte) syscall.Errno {
	if len(body) < 4 {
		return unix.EBADMSG
	}
	return syscall.Errno(-int32(binary.NativeEndian.Uint32(body)))
}
