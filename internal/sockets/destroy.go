// Package sockets closes the established TCP connections that a banned
// source already holds, so that the mail server's login slots are freed at
// once rather than after its login timeout; and finds the connections that
// hold a slot without a word (Holders), which no log line reports until
// the server times them out.
//
// It uses the kernel's SOCK_DESTROY request over inet_diag (what `ss -K`
// does): the socket is aborted, the local process sees ECONNABORTED, and the
// peer gets a RST. This needs CONFIG_INET_DIAG_DESTROY and CAP_NET_ADMIN.
//
// Sockets are found by dumping established TCP sockets (IPv4 and IPv6),
// filtered in the kernel (bytecode.go) and then in Go, then destroyed by their exact identity, cookie included,
// so a connection that closed and whose 4-tuple was reused in between is
// never hit. IPv4 peers of a dual-stack listener appear as ::ffff:a.b.c.d
// in AF_INET6 sockets; they match IPv4 prefixes.
//
// The netlink socket is opened in the network namespace of the calling OS
// thread, which for ordinary callers is the process's namespace.
package sockets

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is returned when the kernel was built without
// CONFIG_INET_DIAG_DESTROY.
var ErrUnsupported = errors.New("kernel does not support destroying sockets (CONFIG_INET_DIAG_DESTROY)")

// Destroy aborts every established TCP socket whose remote address is in
// remote and whose local port is one of localPorts. It returns the number
// of sockets destroyed; sockets that closed on their own in the meantime
// are not counted and are not errors.
func Destroy(ctx context.Context, remote netip.Prefix, localPorts []uint16) (int, error) {
	return DestroyAll(ctx, []netip.Prefix{remote}, localPorts)
}

// DestroyAll is Destroy for many prefixes at once, with one socket dump
// whatever their number: use it when a batch of bans lands together.
func DestroyAll(ctx context.Context, remotes []netip.Prefix, localPorts []uint16) (int, error) {
	m, err := newMatcher(remotes, localPorts)
	if err != nil {
		return 0, err
	}
	if len(remotes) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sockets: %w", err)
	}
	c, done, err := dialCtx(ctx)
	if err != nil {
		return 0, err
	}
	defer done()

	targets, err := c.targets(m, localPorts, true)
	if err != nil {
		return 0, ctxErr(ctx, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("sockets: %w", err)
	}
	n, err := c.destroy(targets)
	return n, ctxErr(ctx, err)
}

// targets lists the established sockets that m matches, as raw
// inet_diag_msg heads (family + sockid). With filter, the kernel sends
// only the protected ports' sockets, and for a small batch only the
// banned sources' ones; m decides in any case.
func (c *conn) targets(m *matcher, localPorts []uint16, filter bool) ([][]byte, error) {
	q := query{states: 1 << tcpEstab}
	if rt := m.remoteTerms(); filter && rt != nil {
		q.bc = bytecode(portTerms(localPorts), rt)
	} else if filter {
		q.bc = bytecode(portTerms(localPorts))
	}
	var out [][]byte
	fams := families(filter)
	if !m.any4 {
		fams = []uint8{unix.AF_INET6} // no IPv4 prefix: no AF_INET socket matches
	}
	for _, fam := range fams {
		q.family = fam
		if err := c.dump(q, func(msg []byte) {
			if m.match(msg) {
				out = append(out, append([]byte(nil), msg[:diagMsgIDEnd]...))
			}
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Probe reports whether Destroy can work here: nil when the kernel
// supports SOCK_DESTROY and the process has CAP_NET_ADMIN, ErrUnsupported,
// or an error naming the missing capability. The daemon calls it at
// start-up so that it can warn then rather than at the first ban.
//
// Support is probed by asking to destroy a socket that cannot exist (port
// 0 to port 0): a kernel with support answers ENOENT, one without answers
// EOPNOTSUPP. The kernel checks the capability only after finding the
// socket, so that is read from the process's capability set instead.
func Probe() error {
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.close()
	c.f.SetDeadline(time.Now().Add(5 * time.Second))
	id := make([]byte, diagMsgIDEnd)
	id[diagFamily] = unix.AF_INET
	binary.NativeEndian.PutUint32(id[44:], ^uint32(0)) // no cookie
	binary.NativeEndian.PutUint32(id[48:], ^uint32(0))
	if _, err := c.destroy([][]byte{id}); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("sockets: capget: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return errors.New("sockets: destroying sockets needs CAP_NET_ADMIN, which this process lacks")
	}
	return nil
}

func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("sockets: %w", ctx.Err())
	}
	return err
}

// matcher decides whether a dumped socket is a target.
type matcher struct {
	ports        [65536 / 64]uint64
	bits4, bits6 []int                     // distinct prefix lengths per family
	set          map[netip.Prefix]struct{} // masked prefixes, IPv4 ones unmapped
	any4         bool                      // some prefix is IPv4: AF_INET needs a dump too
}

func newMatcher(remotes []netip.Prefix, localPorts []uint16) (*matcher, error) {
	if len(localPorts) == 0 {
		return nil, errors.New("sockets: no local ports given")
	}
	m := &matcher{set: make(map[netip.Prefix]struct{}, len(remotes))}
	for _, p := range localPorts {
		if p == 0 {
			return nil, errors.New("sockets: local port 0")
		}
		m.ports[p/64] |= 1 << (p % 64)
	}
	for _, p := range remotes {
		if !p.IsValid() {
			return nil, fmt.Errorf("sockets: invalid prefix %v", p)
		}
		a, bits := p.Addr().WithZone(""), p.Bits()
		if a.Is4In6() {
			if bits < 96 {
				// Such a prefix would also cover non-mapped IPv6.
				return nil, fmt.Errorf("sockets: IPv4-mapped prefix %v shorter than /96", p)
			}
			a, bits = a.Unmap(), bits-96
		}
		m.set[netip.PrefixFrom(a, bits).Masked()] = struct{}{}
		if a.Is4() {
			m.any4 = true
			m.bits4 = addBits(m.bits4, bits)
		} else {
			m.bits6 = addBits(m.bits6, bits)
		}
	}
	return m, nil
}

func addBits(list []int, bits int) []int {
	if slices.Contains(list, bits) {
		return list
	}
	return append(list, bits)
}

// Offsets in struct inet_diag_msg.
const (
	diagFamily   = 0
	diagSport    = 4 // big endian
	diagDst      = 24
	diagMsgIDEnd = 52 // family, state, timer, retrans, inet_diag_sockid
	diagMsgLen   = 72
)

// port reports whether the socket's local port is one of m's.
func (m *matcher) port(msg []byte) bool {
	sport := binary.BigEndian.Uint16(msg[diagSport:])
	return m.ports[sport/64]&(1<<(sport%64)) != 0
}

func (m *matcher) match(msg []byte) bool {
	if !m.port(msg) {
		return false
	}
	var a netip.Addr
	if msg[diagFamily] == unix.AF_INET {
		a = netip.AddrFrom4([4]byte(msg[diagDst : diagDst+4]))
	} else {
		a = netip.AddrFrom16([16]byte(msg[diagDst : diagDst+16])).Unmap()
	}
	bitsList := m.bits6
	if a.Is4() {
		bitsList = m.bits4
	}
	for _, bits := range bitsList {
		p, _ := a.Prefix(bits)
		if _, ok := m.set[p]; ok {
			return true
		}
	}
	return false
}
