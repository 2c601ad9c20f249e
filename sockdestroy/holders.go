package sockdestroy

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
			h := Holder{
				Port:     sport,
				Idle:     time.Duration(binary.NativeEndian.Uint32(info[tcpiLastDataRecv:])) * time.Millisecond,
				Received: binary.NativeEndian.Uint64(info[tcpiBytesReceived:]),
			}
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

// Offsets in struct inet_diag_msg and struct tcp_info, and the attribute
// that carries tcp_info (linux/inet_diag.h).
const (
	inetDiagInfo      = 2
	diagInode         = 68
	tcpiLastDataRecv  = 52
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

// dumpExt is dump with extensions requested (idiag_ext).
func (c *conn) dumpExt(family uint8, ext uint8, fn func(msg []byte)) error {
	c.ext = ext
	defer func() { c.ext = 0 }()
	return c.dump(family, fn)
}
