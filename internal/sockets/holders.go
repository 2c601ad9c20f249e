package sockets

import (
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
