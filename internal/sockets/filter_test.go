package sockets

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// The kernel's filter (inet_diag bytecode) must return exactly what the
// unfiltered dump returns once Go has filtered it: IPv4 sockets, IPv6
// sockets, and IPv4 peers of a dual-stack listener (AF_INET6, remote
// ::ffff:a.b.c.d), for single ports, runs of ports and prefixes.
func TestKernelFilterMatchesGo(t *testing.T) {
	enterNetns(t)
	const (
		dualA, dualB = 20143, 20144 // a run: one GE/LE term
		only4, only6 = 20993, 20995
		unprot       = 20025
	)
	listenAt := func(network string, a netip.Addr, port uint16) {
		ap := fmt.Sprintf("[::]:%d", port)
		if a.IsValid() {
			ap = netip.AddrPortFrom(a, port).String()
		}
		listen(t, network, ap)
	}
	listenAt("tcp", netip.Addr{}, dualA)
	listenAt("tcp", netip.Addr{}, dualB)
	listenAt("tcp", netip.Addr{}, unprot)
	listenAt("tcp4", server4, only4)
	listenAt("tcp6", server6, only6)

	// Server-side sockets per local port and per remote.
	perPort := map[uint16]int{}
	perRemote := map[netip.Addr]map[uint16]int{}
	for _, src := range []netip.Addr{banned4, other4, banned6, other6} {
		dst, ports := server4, []uint16{dualA, dualB, unprot, only4}
		if src.Is6() {
			dst, ports = server6, []uint16{dualA, dualB, unprot, only6}
		}
		perRemote[src] = map[uint16]int{}
		for i, p := range ports {
			connect(t, src, dst, p, 1+i%2)
			perPort[p] += 1 + i%2
			perRemote[src][p] += 1 + i%2
		}
	}
	ctx := context.Background()
	// A long program: 300 lone ports around the listeners.
	var spread []uint16
	for p := uint16(19000); len(spread) < 300; p += 7 {
		spread = append(spread, p)
	}
	spread = append(spread, dualB, only6)

	for _, ports := range [][]uint16{
		spread,
		{dualA, dualB, only4, only6},
		{dualA},
		{dualB, only4},
		{only6},
		{unprot, 65535},
		{dualB + 1},         // nothing there
		{1, 2, 3, 40000, 1}, // a run, a lone port, a repeat
	} {
		want := 0
		for _, p := range slices.Compact(slices.Sorted(slices.Values(ports))) {
			want += perPort[p]
		}
		kernel, err := conns(ctx, nil, ports, true)
		if err != nil {
			t.Fatalf("ports %v: %v", ports, err)
		}
		golang, err := conns(ctx, nil, ports, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(kernel) != want || !sameConns(kernel, golang) {
			t.Errorf("ports %v: kernel filter %d connections, Go filter %d, want %d and the same ones", ports, len(kernel), len(golang), want)
		}
	}

	protected := []uint16{dualA, dualB, only4, only6}
	many := []netip.Prefix{netip.PrefixFrom(banned6, 128)}
	for i := range maxRemoteTerms + 1 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32))
	}
	sum := func(srcs ...netip.Addr) int {
		n := 0
		for _, s := range srcs {
			for _, p := range protected {
				n += perRemote[s][p]
			}
		}
		return n
	}
	for _, tc := range []struct {
		remotes []netip.Prefix
		want    int
	}{
		{[]netip.Prefix{netip.PrefixFrom(banned4, 32)}, sum(banned4)},
		{[]netip.Prefix{netip.MustParsePrefix("::ffff:198.18.0.2/128")}, sum(other4)},
		{[]netip.Prefix{netip.MustParsePrefix("2001:db8::/64")}, sum(banned6)},
		// Covers the server too: the client-side sockets have it as
		// their remote, and an ephemeral local port.
		{[]netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}, sum(banned4, other4)},
		// An IPv6 prefix covering the IPv4-mapped range: the kernel
		// returns the mapped sockets, Go keeps IPv6 only.
		{[]netip.Prefix{netip.MustParsePrefix("::/0")}, sum(banned6, other6)},
		{[]netip.Prefix{netip.PrefixFrom(other6, 128), netip.PrefixFrom(banned4, 32)}, sum(other6, banned4)},
		{many, sum(banned6)}, // too many for the kernel: Go alone
	} {
		m, err := newMatcher(tc.remotes, protected)
		if err != nil {
			t.Fatal(err)
		}
		c, done, err := dialCtx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kernel, err := c.targets(m, protected, true)
		if err != nil {
			t.Fatalf("%v: %v", tc.remotes, err)
		}
		golang, err := c.targets(m, protected, false)
		done()
		if err != nil {
			t.Fatal(err)
		}
		if len(kernel) != tc.want || !sameIDs(kernel, golang) {
			t.Errorf("remotes %v: kernel filter %d sockets, Go filter %d, want %d and the same ones", tc.remotes, len(kernel), len(golang), tc.want)
		}
	}
}

func sameConns(a, b []Conn) bool {
	ids := func(cs []Conn) [][]byte {
		out := make([][]byte, len(cs))
		for i := range cs {
			out[i] = cs[i].id[:]
		}
		return out
	}
	return sameIDs(ids(a), ids(b))
}

func sameIDs(a, b [][]byte) bool {
	set := map[string]int{}
	for _, id := range a {
		set[string(id)]++
	}
	for _, id := range b {
		set[string(id)]--
	}
	for _, n := range set {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}
