package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// BenchmarkBanMany1M is the kernel's part of `xdpguard ban --from` with a
// million addresses, and of a restart restoring them: one BanMany into an
// empty table sized as the state benchmarks size it (max_bans 2,000,000).
func BenchmarkBanMany1M(b *testing.B) {
	g := newSizedGuard(b, DefaultSettings(), 2_000_000)
	ps := make([]netip.Prefix, 1_000_000)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for b.Loop() {
		b.StopTimer()
		if _, err := g.UnbanAll(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := g.BanMany(ps, time.Hour, OriginManual, ReasonManual); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n, err := g.banCount(); err != nil || n != len(ps) {
		b.Fatalf("%d bans in the kernel, %v", n, err)
	}
}

// BenchmarkNewGuard2M is what a restart pays before its first ban goes
// back: the maps made and the program loaded, at the state benchmarks'
// max_bans of 2,000,000 (the IPv6 ban map is preallocated at that size).
func BenchmarkNewGuard2M(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		g, err := New(Options{MaxBans: 2_000_000})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		g.Close()
		b.StartTimer()
	}
}
