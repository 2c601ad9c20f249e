package sockets

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
)

// bcAudit is the kernel's check of a program (inet_diag_bc_audit, for the
// ops used here): the yes offsets tile it, every no lands on an op of
// that tiling, on the end or 4 bytes past it.
func bcAudit(bc []byte) bool {
	starts := map[int]bool{}
	for at := 0; at < len(bc); {
		starts[at] = true
		yes := int(bc[at+1])
		if yes < 4 || yes%4 != 0 || at+yes > len(bc) {
			return false
		}
		at += yes
	}
	for at := 0; at < len(bc); at += int(bc[at+1]) {
		no := int(binary.NativeEndian.Uint16(bc[at+2:]))
		to := at + no
		if no < 4 || no%4 != 0 || to > len(bc)+4 || (to < len(bc) && !starts[to]) {
			return false
		}
	}
	return true
}

// bcRun is the kernel's interpreter (inet_diag_bc_run) for the ops used
// here, on a socket with local port sport and remote address remote.
func bcRun(bc []byte, sport uint16, remote netip.Addr) bool {
	at := 0
	for at < len(bc) {
		yes := true
		switch bc[at] {
		case bcJmp:
			yes = false
		case bcSEQ, bcSGE, bcSLE:
			p := binary.NativeEndian.Uint16(bc[at+6:])
			yes = map[uint8]bool{bcSEQ: sport == p, bcSGE: sport >= p, bcSLE: sport <= p}[bc[at]]
		case bcDCnd:
			a, _ := netip.AddrFromSlice(bc[at+12 : at+int(bc[at+1])])
			p := netip.PrefixFrom(a, int(bc[at+5]))
			yes = p.Contains(remote.Unmap()) || p.Contains(remote)
		default:
			panic("op not modelled")
		}
		if yes {
			at += int(bc[at+1])
		} else {
			at += int(binary.NativeEndian.Uint16(bc[at+2:]))
		}
	}
	return at == len(bc)
}

// The compiled program passes the kernel's audit and accepts exactly the
// sockets on one of the ports from one of the prefixes.
func FuzzBytecode(f *testing.F) {
	f.Add([]byte{0, 143, 3, 225, 3, 227}, []byte{198, 18, 0, 1, 24}, uint16(143), []byte{198, 18, 0, 9})
	f.Add([]byte{0, 1, 0, 2, 0, 3, 255, 255}, []byte{}, uint16(2), []byte{32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, portBytes, prefixBytes []byte, sport uint16, remoteBytes []byte) {
		var ports []uint16
		for i := 0; i+1 < len(portBytes) && len(ports) < 200; i += 2 {
			if p := binary.BigEndian.Uint16(portBytes[i:]); p != 0 {
				ports = append(ports, p)
			}
		}
		if len(ports) == 0 {
			return
		}
		// Prefixes: 4 address bytes and a length each, IPv4.
		var prefixes []netip.Prefix
		for i := 0; i+4 < len(prefixBytes) && len(prefixes) < 8; i += 5 {
			a := netip.AddrFrom4([4]byte(prefixBytes[i : i+4]))
			prefixes = append(prefixes, netip.PrefixFrom(a, int(prefixBytes[i+4])%33).Masked())
		}
		remote, ok := netip.AddrFromSlice(remoteBytes)
		if !ok {
			return
		}
		m, err := newMatcher(prefixes, ports)
		if err != nil {
			t.Fatal(err)
		}
		groups := [][]bcTerm{portTerms(ports)}
		if rt := m.remoteTerms(); rt != nil {
			groups = append(groups, rt)
		}
		bc := bytecode(groups...)
		if !bcAudit(bc) {
			t.Fatalf("ports %v prefixes %v: the kernel would reject % x", ports, prefixes, bc)
		}
		want := slices.Contains(ports, sport)
		if len(prefixes) > 0 {
			want = want && slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(remote.Unmap()) })
		}
		if got := bcRun(bc, sport, remote); got != want {
			t.Fatalf("ports %v prefixes %v, socket :%d from %v: accepted %v, want %v", ports, prefixes, sport, remote, got, want)
		}
	})
}
