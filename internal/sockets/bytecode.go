package sockets

// inet_diag bytecode (linux/inet_diag.h, INET_DIAG_REQ_BYTECODE): a filter
// the kernel runs on every socket of a dump before it copies anything out.
// A busy IMAP host keeps 50,000-200,000 established sessions; without a
// filter every scan copies all of them (with tcp_info: ~300 bytes each) to
// be thrown away in Go. With one, a scan reads only the protected ports'
// sockets, or, for a ban, only the banned sources' ones.
//
// The program is a sequence of ops {code u8, yes u8, no u16}; the kernel
// runs one, then moves on by yes bytes when its condition held and by no
// bytes when not. Landing exactly on the end accepts the socket, past the
// end rejects it. The kernel's audit (inet_diag_bc_audit) only accepts a
// program whose ops, followed by their yes offsets, tile it from start to
// end, and whose no offsets land on one of those ops, on the end, or 4
// bytes past it. So every yes here is the op's own length, and an OR jumps
// out of its alternatives with a JMP op (taken always by its no), the
// shape iproute2's ss compiles.

import (
	"encoding/binary"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Op codes (enum in linux/inet_diag.h) and the request attribute.
const (
	bcJmp  = 1
	bcSGE  = 2
	bcSLE  = 3
	bcDCnd = 8
	bcSEQ  = 11

	inetDiagReqBytecode = 1
)

// bcOp is one op and the data after its header.
type bcOp struct {
	code uint8
	data []byte
}

func (o bcOp) len() int { return 4 + len(o.data) }

// bcTerm holds when all its ops hold.
type bcTerm []bcOp

func (t bcTerm) len() int {
	n := 0
	for _, o := range t {
		n += o.len()
	}
	return n
}

// bytecode compiles a filter in conjunctive form: a socket passes when, in
// every group, one of the terms holds. Groups must not be empty. A nil
// result means no filter.
func bytecode(groups ...[]bcTerm) []byte {
	total := 0
	for _, g := range groups {
		for _, t := range g {
			total += t.len()
		}
		total += 4 * (len(g) - 1) // a JMP after every term but the last
	}
	if total == 0 {
		return nil
	}
	b := make([]byte, 0, total)
	put := func(code, yes uint8, no int) {
		b = append(b, code, yes, 0, 0)
		binary.NativeEndian.PutUint16(b[len(b)-2:], uint16(no))
	}
	for _, g := range groups {
		end := len(b) // of the group
		for i, t := range g {
			end += t.len()
			if i < len(g)-1 {
				end += 4
			}
		}
		for i, t := range g {
			// Where a failed op goes: the next term, or past the end.
			fail := total + 4
			if i < len(g)-1 {
				fail = len(b) + t.len() + 4
			}
			for _, o := range t {
				put(o.code, uint8(o.len()), fail-len(b))
				b = append(b, o.data...)
			}
			if i < len(g)-1 {
				put(bcJmp, 4, end-len(b)) // the term held: leave the group
			}
		}
	}
	return b
}

// portTerms is "the local port is one of ports", one term per run of
// consecutive ports.
func portTerms(ports []uint16) []bcTerm {
	var set [65536 / 64]uint64
	for _, p := range ports {
		set[p/64] |= 1 << (p % 64)
	}
	in := func(p int) bool { return p < 65536 && set[p/64]&(1<<(p%64)) != 0 }
	var out []bcTerm
	for p := 0; p < 65536; p++ {
		if !in(p) {
			continue
		}
		lo := p
		for in(p + 1) {
			p++
		}
		if lo == p {
			out = append(out, bcTerm{portOp(bcSEQ, lo)})
		} else {
			out = append(out, bcTerm{portOp(bcSGE, lo), portOp(bcSLE, p)})
		}
	}
	return out
}

// portOp compares the local port; the port is the no field of a second op.
func portOp(code uint8, port int) bcOp {
	d := make([]byte, 4)
	binary.NativeEndian.PutUint16(d[2:], uint16(port))
	return bcOp{code, d}
}

// remoteTerm is "the remote address is in p" (struct inet_diag_hostcond,
// any port). For an IPv4 prefix the kernel also matches the IPv4-mapped
// remotes of AF_INET6 sockets, as the Go matcher does.
func remoteTerm(p netip.Prefix) bcTerm {
	a := p.Addr()
	d := make([]byte, 8, 8+a.BitLen()/8)
	d[0] = unix.AF_INET6
	if a.Is4() {
		d[0] = unix.AF_INET
	}
	d[1] = uint8(p.Bits())
	binary.NativeEndian.PutUint32(d[4:], ^uint32(0)) // port -1: any
	d = append(d, a.AsSlice()...)
	return bcTerm{{bcDCnd, d}}
}

// maxRemoteTerms bounds the prefixes the kernel tests one by one: it runs
// the terms in order for every socket on a protected port, where a Go map
// lookup per prefix length is cheaper for a large batch of bans.
const maxRemoteTerms = 64

// remoteTerms is the kernel's part of matching m's prefixes, or nil when
// there are too many to be worth it. The kernel narrows the dump; m still
// decides on what comes back.
func (m *matcher) remoteTerms() []bcTerm {
	if len(m.set) == 0 || len(m.set) > maxRemoteTerms {
		return nil
	}
	out := make([]bcTerm, 0, len(m.set))
	for p := range m.set {
		out = append(out, remoteTerm(p))
	}
	return out
}
