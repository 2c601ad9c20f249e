package datapath

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/xdpguard/xdpguard/internal/bpf"
	"github.com/xdpguard/xdpguard/internal/packet"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// Verdicts as BPF_PROG_TEST_RUN returns them.
const (
	xdpDrop = 1
	xdpPass = 2
)

// newTestGuard loads the program unpinned, with small maps so that each
// test starts from empty state quickly.
func newTestGuard(t testing.TB, s Settings) *Guard {
	t.Helper()
	return newSizedGuard(t, s, 1<<14)
}

// rateSettings is the defaults with a SYN-rate threshold over an hour-long
// window, which no test outlives: every SYN a test sends stays counted.
func rateSettings(threshold uint32) Settings {
	s := DefaultSettings()
	s.RateThreshold = threshold
	s.RateWindow = time.Hour
	return s
}

// newSizedGuard is newTestGuard with room for maxBans bans per family.
func newSizedGuard(t testing.TB, s Settings, maxBans uint32) *Guard {
	t.Helper()
	return newGuardWith(t, s, Options{MaxBans: maxBans, MaxTracked: 1 << 12, MaxCIDR: 1 << 10})
}

// newGuardWith is newTestGuard with the map sizes of opts.
func newGuardWith(t testing.TB, s Settings, opts Options) *Guard {
	t.Helper()
	testutil.RequireRoot(t)
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.SetSettings(s); err != nil {
		t.Fatal(err)
	}
	return g
}

func run(t testing.TB, g *Guard, pkt []byte) uint32 {
	t.Helper()
	ret, err := g.prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: 1})
	if err != nil {
		t.Fatalf("prog.Run(%d bytes): %v", len(pkt), err)
	}
	return ret
}

func verdictName(v uint32) string {
	switch v {
	case xdpDrop:
		return "DROP"
	case xdpPass:
		return "PASS"
	}
	return "?"
}

// setRawBan writes a ban with an arbitrary monotonic deadline, which the
// public API cannot do: that is how a test puts a ban in the past.
func setRawBan(t testing.TB, g *Guard, a netip.Addr, deadline uint64) {
	t.Helper()
	v := bpf.XdpguardBan{ExpiresNs: deadline, Origin: uint8(OriginManual), Reason: uint8(ReasonManual)}
	var err error
	if a.Is4() {
		var tb *table4
		if tb, err = g.table(); err == nil {
			// The table counts in ticks: a deadline in the past stays there.
			exp := max(uint32(deadline>>banTickShift), 1)
			if deadline == 0 {
				exp = expForever
			}
			err = tb.put(entry{key: key4(a.As4()), exp: exp, origin: uint8(OriginManual), reason: uint8(ReasonManual)}, 0)
		}
	} else {
		k := a.As16()
		err = g.maps.BansV6.Put(&k, &v)
	}
	if err != nil {
		t.Fatal(err)
	}
}

var (
	dst4 = netip.MustParseAddr("198.18.0.1")
	dst6 = netip.MustParseAddr("2001:db8::1")
)

// syn is a new connection's SYN: each call has a sequence number of its
// own, as every new connection has, so that no test's SYN is taken for a
// retransmission of an earlier one by accident.
func syn(src netip.Addr, port uint16) packet.Spec {
	dst := dst4
	if src.Is6() {
		dst = dst6
	}
	return packet.Spec{Src: src, Dst: dst, SrcPort: 40000, DstPort: port, Flags: packet.SYN, Seq: nextSeq.Add(7919)}
}

var nextSeq atomic.Uint32

func mustPrefix(s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.PrefixFrom(netip.MustParseAddr(s), netip.MustParseAddr(s).BitLen())
	}
	return p
}
