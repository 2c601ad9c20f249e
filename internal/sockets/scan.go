package sockets

import (
	"context"
	"encoding/binary"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Conns lists the established connections to localPorts, those waiting in
// the accept queues included. It is the one dump a slot check needs: the
// slot holders (HoldersOf), the pre-auth connections (PreAuth) and the
// targets of an eviction (DestroyConns) are all read from its result.
//
// The kernel filters the dump (inet_diag bytecode on the local port, and
// the state), so its cost follows the protected ports' connections, not
// every TCP socket of the host.
func Conns(ctx context.Context, localPorts []uint16) ([]Conn, error) {
	return conns(ctx, nil, localPorts, true)
}

// AppendConns is Conns appending to dst. A caller that scans several
// times a second passes the last result's slice (emptied): with 50,000
// connections, growing a new slice every scan cost a fifth of the check
// (BenchmarkSlotCheck's profile).
func AppendConns(ctx context.Context, dst []Conn, localPorts []uint16) ([]Conn, error) {
	return conns(ctx, dst, localPorts, true)
}

// conns is AppendConns; without filter the kernel sends every established
// socket and the port is tested in Go, as before inet_diag bytecode was
// used (the benchmark's baseline).
func conns(ctx context.Context, out []Conn, localPorts []uint16, filter bool) ([]Conn, error) {
	q := query{states: 1 << tcpEstab, ext: 1 << (inetDiagInfo - 1)}
	err := dumpPorts(ctx, localPorts, q, filter, func(msg []byte) {
		out = append(out, connOf(msg))
	})
	return out, err
}

// dumpPorts runs the dump q and calls fn with every socket on localPorts.
// With filter the kernel tests the ports (inet_diag bytecode) in one dump
// of both families; without, it sends every socket in q.states, per family,
// and the port is tested in Go only (the benchmark's baseline).
func dumpPorts(ctx context.Context, localPorts []uint16, q query, filter bool, fn func(msg []byte)) error {
	m, err := newMatcher(nil, localPorts)
	if err != nil {
		return err
	}
	if filter {
		q.bc = bytecode(portTerms(localPorts))
	}
	c, done, err := dialCtx(ctx)
	if err != nil {
		return err
	}
	defer done()
	for _, fam := range families(filter) {
		q.family = fam
		err := c.dump(q, func(msg []byte) {
			if m.port(msg) {
				fn(msg)
			}
		})
		if err != nil {
			return ctxErr(ctx, err)
		}
	}
	return nil
}

// families are the dumps that cover both families: one (query), or, for
// the baseline, one per family as before.
func families(one bool) []uint8 {
	if one {
		return []uint8{unix.AF_UNSPEC}
	}
	return []uint8{unix.AF_INET6, unix.AF_INET}
}

// connOf reads one inet_diag_msg (with INET_DIAG_INFO when the kernel sent
// it).
func connOf(msg []byte) Conn {
	cn := Conn{
		RemotePort: binary.BigEndian.Uint16(msg[diagSport+2:]),
		Inode:      binary.NativeEndian.Uint32(msg[diagInode:]),
		Cookie:     binary.NativeEndian.Uint64(msg[diagCookie:]),
	}
	if info := attr(msg[diagMsgLen:], inetDiagInfo); len(info) >= tcpiBytesReceived+8 {
		cn.Holder = holderOf(info)
		cn.info = true
	}
	cn.Port = binary.BigEndian.Uint16(msg[diagSport:])
	copy(cn.id[:], msg[:diagMsgIDEnd])
	if msg[diagFamily] == unix.AF_INET {
		cn.Remote = netip.AddrFrom4([4]byte(msg[diagDst : diagDst+4]))
	} else {
		cn.Remote = netip.AddrFrom16([16]byte(msg[diagDst : diagDst+16])).Unmap()
	}
	return cn
}

// Holders lists established connections to localPorts that the server has
// accepted (a socket in the accept queue holds no slot yet, and may be a
// real user waiting for one), that received at most maxBytes, and nothing
// for at least idle. A real client sends its first command within
// milliseconds of the banner; an authenticated session has sent more than
// a few dozen bytes. A caller that also needs Conns should call Conns and
// HoldersOf: one dump instead of two.
func Holders(ctx context.Context, localPorts []uint16, idle time.Duration, maxBytes uint64) ([]Holder, error) {
	cs, err := Conns(ctx, localPorts)
	if err != nil {
		return nil, err
	}
	return HoldersOf(cs, idle, maxBytes), nil
}

// HoldersOf is Holders on the result of Conns.
func HoldersOf(conns []Conn, idle time.Duration, maxBytes uint64) []Holder {
	var out []Holder
	for _, c := range conns {
		// Without tcp_info (a kernel older than 4.1) nothing is known.
		if c.Waiting() || !c.info || c.Idle < idle || c.Received > maxBytes {
			continue
		}
		out = append(out, c.Holder)
	}
	return out
}

// Waiting counts the connections waiting in the accept queues of the
// listening sockets on localPorts: established, but not yet taken by the
// server, because all its login slots are busy (or it is too slow). It
// looks only at the listening sockets on localPorts, so it is cheap
// enough to call several times a second on a server with many
// connections.
func Waiting(ctx context.Context, localPorts []uint16) (int, error) {
	ls, err := Listeners(ctx, localPorts)
	n := 0
	for _, l := range ls {
		n += l.Waiting
	}
	return n, err
}
