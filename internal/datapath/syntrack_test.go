package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/packet"
)

// A flood from 64 times as many spoofed sources as the SYN tracker has
// slots, one SYN each, between an attacker's SYNs: the attacker keeps its
// count and is banned on exactly the SYN over the threshold, no spoofed
// source is banned, and every spoofed SYN still found a slot, so a new
// attacker after the flood is counted from its first SYN. An LRU tracker
// of this size forgets the attacker.
func TestSpoofedFloodKeepsAttackerCount(t *testing.T) {
	const slots = 1 << 10
	const spoofed = 64 * slots // all of 198.19.0.0/16
	for _, fam := range []struct {
		name string
		// nth is the n-th spoofed source; attacker and late are not among them.
		nth            func(i int) netip.Addr
		attacker, late netip.Addr
	}{
		{"IPv4", func(i int) netip.Addr {
			return netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		}, netip.MustParseAddr("198.18.7.7"), netip.MustParseAddr("198.18.7.8")},
		{"IPv6", func(i int) netip.Addr {
			var a [16]byte
			copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0x80})
			binary.BigEndian.PutUint16(a[5:], uint16(i>>8))
			a[7] = byte(i)
			return netip.AddrFrom16(a)
		}, netip.MustParseAddr("2001:db8:7::7"), netip.MustParseAddr("2001:db8:7:1::8")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			s := DefaultSettings()
			s.RateThreshold = 20
			s.RateWindow = 24 * time.Hour // no SYN leaves the window during the test
			g := newGuardWith(t, s, Options{MaxBans: 1 << 14, MaxTracked: slots, MaxCIDR: 1 << 10})

			send := func(src netip.Addr, n int, want uint32) {
				t.Helper()
				for i := range n {
					if got := run(t, g, packet.Build(syn(src, 143))); got != want {
						t.Fatalf("SYN %d of %s: %s, want %s", i+1, src, verdictName(got), verdictName(want))
					}
				}
			}
			send(fam.attacker, 10, xdpPass)

			sp := syn(fam.nth(0), 143)
			for i := range spoofed {
				sp.Src = fam.nth(i)
				sp.Seq++
				if got := run(t, g, packet.Build(sp)); got != xdpPass {
					t.Fatalf("spoofed SYN %d from %s: %s", i, sp.Src, verdictName(got))
				}
			}

			top, err := g.TopSources(1)
			if err != nil {
				t.Fatal(err)
			}
			if len(top) != 1 || !top[0].Prefix.Contains(fam.attacker) || top[0].SYNs != 10 || top[0].InWindow != 10 {
				t.Fatalf("after the flood the top source is %+v, want %s with 10 SYNs", top, fam.attacker)
			}
			send(fam.attacker, 10, xdpPass)
			send(fam.attacker, 1, xdpDrop) // the 21st: banned
			send(fam.late, 20, xdpPass)
			send(fam.late, 1, xdpDrop)

			st, err := g.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.AutoBans != 2 || st.SYNUntracked != 0 {
				t.Errorf("auto-bans %d (want 2: the attackers, no spoofed source), untracked SYNs %d (want 0)", st.AutoBans, st.SYNUntracked)
			}
		})
	}
}
