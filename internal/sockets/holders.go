package sockets

import (
	"context"
	"encoding/binary"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Holder is one accepted connection to a protected port that has received
// almost nothing for a while: a client holding a login slot without
// speaking, as the connection-holding bots do.
type Holder struct {
	Remote   netip.Addr
	Port     uint16
	Idle     time.Duration // since the last data received (or since accept)
	Received uint64        // bytes received on the connection
	// SinceAck is the time since the last acknowledgement from the client
	// (every segment it sends carries one, so SinceAck <= Idle), SinceSent
	// the time since the server last sent data, Unacked the segments the
	// server sent that the client has not acknowledged, and BytesAcked the
	// bytes it has acknowledged.
	SinceAck   time.Duration
	SinceSent  time.Duration
	Unacked    uint32
	BytesAcked uint64
}

// Quiet is how long the client has had the floor without using it: the
// server spoke last (a greeting, a reply), the client has acknowledged all
// of it, and has sent nothing since. It is the time since that
// acknowledgement, so neither a slow link's round trip nor a server slow
// to greet or to answer counts as the client's silence. Otherwise it is 0.
// The kernel keeps these times in clock ticks (1-4 ms): when the server
// sent and the client last spoke in the same tick, the server is taken to
// have spoken last, as it does when it answers a bot's USER at once.
func (h Holder) Quiet() time.Duration {
	if h.Unacked > 0 || h.BytesAcked == 0 || h.SinceSent > h.Idle {
		return 0
	}
	return h.SinceAck
}

// Holders lists established connections to localPorts that the server has
// accepted (a socket in the accept queue holds no slot yet, and may be a
// real user waiting for one), that received at most maxBytes, and nothing
// for at least idle. A real client sends its first command within
// milliseconds of the banner; an authenticated session has sent more than
// a few dozen bytes.
func Holders(ctx context.Context, localPorts []uint16, idle time.Duration, maxBytes uint64) ([]Holder, error) {
	m, err := newMatcher(nil, localPorts)
	if err != nil {
		return nil, err
	}
	c, err := dial()
	if err != nil {
		return nil, err
	}
	defer c.close()
	stop := context.AfterFunc(ctx, func() { c.f.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var out []Holder
	for _, fam := range []uint8{unix.AF_INET6, unix.AF_INET} {
		err := c.dumpExt(fam, 1<<(inetDiagInfo-1), func(msg []byte) {
			sport := binary.BigEndian.Uint16(msg[diagSport:])
			if m.ports[sport/64]&(1<<(sport%64)) == 0 || binary.NativeEndian.Uint32(msg[diagInode:]) == 0 {
				return
			}
			info := attr(msg[diagMsgLen:], inetDiagInfo)
			if len(info) < tcpiBytesReceived+8 {
				return // a kernel without tcpi_bytes_received (< 4.1)
			}
			h := holderOf(info)
			h.Port = sport
			if h.Idle < idle || h.Received > maxBytes {
				return
			}
			if msg[diagFamily] == unix.AF_INET {
				h.Remote = netip.AddrFrom4([4]byte(msg[diagDst : diagDst+4]))
			} else {
				h.Remote = netip.AddrFrom16([16]byte(msg[diagDst : diagDst+16])).Unmap()
			}
			out = append(out, h)
		})
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
	}
	return out, nil
}

// holderOf reads the timings and counts of a tcp_info.
func holderOf(info []byte) Holder {
	return Holder{
		Idle:       time.Duration(binary.NativeEndian.Uint32(info[tcpiLastDataRecv:])) * time.Millisecond,
		Received:   binary.NativeEndian.Uint64(info[tcpiBytesReceived:]),
		SinceAck:   time.Duration(binary.NativeEndian.Uint32(info[tcpiLastAckRecv:])) * time.Millisecond,
		SinceSent:  time.Duration(binary.NativeEndian.Uint32(info[tcpiLastDataSent:])) * time.Millisecond,
		Unacked:    binary.NativeEndian.Uint32(info[tcpiUnacked:]),
		BytesAcked: binary.NativeEndian.Uint64(info[tcpiBytesAcked:]),
	}
}

// Offsets in struct inet_diag_msg and struct tcp_info, and the attribute
// that carries tcp_info (linux/inet_diag.h).
const (
	inetDiagInfo      = 2
	diagRqueue        = 56
	diagInode         = 68
	tcpiUnacked       = 24
	tcpiLastDataSent  = 44
	tcpiLastDataRecv  = 52
	tcpiLastAckRecv   = 56
	tcpiBytesAcked    = 120
	tcpiBytesReceived = 128
)

// Waiting counts the connections waiting in the accept queues of the
// listening sockets on localPorts: established, but not yet taken by the
// server, because all its login slots are busy (or it is too slow). It
// looks only at listening sockets, so it is cheap enough to call several
// times a second on a server with many connections.
func Waiting(ctx context.Context, localPorts []uint16) (int, error) {
	m, err := newMatcher(nil, localPorts)
	if err != nil {
		return 0, err
	}
	c, err := dial()
	if err != nil {
		return 0, err
	}
	defer c.close()
	stop := context.AfterFunc(ctx, func() { c.f.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	n := 0
	for _, fam := range []uint8{unix.AF_INET6, unix.AF_INET} {
		err := c.dumpStates(fam, 1<<tcpListen, func(msg []byte) {
			sport := binary.BigEndian.Uint16(msg[diagSport:])
			if m.ports[sport/64]&(1<<(sport%64)) != 0 {
				// For a listener, idiag_rqueue is the accept queue's length.
				n += int(binary.NativeEndian.Uint32(msg[diagRqueue:]))
			}
		})
		if err != nil {
			return 0, ctxErr(ctx, err)
		}
	}
	return n, nil
}

// attr returns the payload of the first netlink attribute of type typ.
func attr(b []byte, typ uint16) []byte {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		if l < 4 || l > len(b) {
			return nil
		}
		if binary.NativeEndian.Uint16(b[2:])&^unix.NLA_F_NESTED == typ {
			return b[4:l]
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return nil
}

// dumpExt is dump with extensions requested (idiag_ext).
func (c *conn) dumpExt(family uint8, ext uint8, fn func(msg []byte)) error {
	c.ext = ext
	defer func() { c.ext = 0 }()
	return c.dump(family, fn)
}
