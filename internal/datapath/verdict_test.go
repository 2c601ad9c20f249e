package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/packet"
)

func TestVerdicts(t *testing.T) {
	s := rateSettings(1000)
	g := newTestGuard(t, s)

	banned4 := netip.MustParseAddr("198.18.5.5")
	banned6 := netip.MustParseAddr("2001:db8:1:2::99") // its /64 is banned
	clean4 := netip.MustParseAddr("198.18.6.6")
	clean6 := netip.MustParseAddr("2001:db8:1:3::1")
	if err := g.Ban(netip.PrefixFrom(banned4, 32), time.Hour, OriginManual, ReasonManual); err != nil {
		t.Fatal(err)
	}
	if err := g.Ban(netip.PrefixFrom(netip.MustParseAddr("2001:db8:1:2::1"), 128), time.Hour, OriginLog, ReasonNoAuth); err != nil {
		t.Fatal(err)
	}

	frag := func(sp packet.Spec, off uint16, more bool) packet.Spec {
		sp.FragOffset, sp.MoreFrags = off, more
		return sp
	}
	vlan := func(sp packet.Spec, tags ...uint16) packet.Spec { sp.VLANs = tags; return sp }
	flags := func(sp packet.Spec, f uint8) packet.Spec { sp.Flags = f; return sp }
	ext := func(sp packet.Spec, e ...packet.ExtHeader) packet.Spec { sp.Ext = e; return sp }
	proto := func(sp packet.Spec, p uint8) packet.Spec { sp.Proto = p; return sp }
	hop := packet.ExtHeader{Proto: packet.ProtoHopOpts}
	fragHdr := func(off uint16) packet.ExtHeader {
		return packet.ExtHeader{Proto: packet.ProtoFragment, FragOffset: off}
	}

	for _, tc := range []struct {
		name string
		spec packet.Spec
		want uint32
	}{
		{"v4 banned SYN", syn(banned4, 110), xdpDrop},
		{"v4 banned non-TCP", proto(syn(banned4, 0), packet.ProtoICMP), xdpDrop},
		{"v4 banned to other port", syn(banned4, 80), xdpDrop},
		{"v4 clean SYN", syn(clean4, 110), xdpPass},
		{"v4 clean ACK", flags(syn(clean4, 110), packet.ACK), xdpPass},
		{"v6 banned /64 neighbour", syn(banned6, 143), xdpDrop},
		{"v6 clean", syn(clean6, 143), xdpPass},
		{"v4 banned behind 802.1Q", vlan(syn(banned4, 110), 0x8100), xdpDrop},
		{"v4 banned behind QinQ", vlan(syn(banned4, 110), 0x88a8, 0x8100), xdpDrop},
		{"v6 banned behind QinQ", vlan(syn(banned6, 110), 0x88a8, 0x8100), xdpDrop},
		{"three VLAN tags pass unparsed", vlan(syn(banned4, 110), 0x88a8, 0x8100, 0x8100), xdpPass},
		{"v4 banned with options", func() packet.Spec { sp := syn(banned4, 110); sp.Options = make([]byte, 12); return sp }(), xdpDrop},
		{"v4 banned non-first fragment", frag(syn(banned4, 110), 10, false), xdpDrop},
		{"v4 clean non-first fragment", frag(syn(clean4, 110), 10, true), xdpPass},
		{"v4 banned ihl<5 still dropped", func() packet.Spec { sp := syn(banned4, 110); sp.IHL = 4; return sp }(), xdpDrop},
		{"v4 clean ihl<5 passes", func() packet.Spec { sp := syn(clean4, 110); sp.IHL = 3; return sp }(), xdpPass},
		{"v6 banned behind 6 ext headers", ext(syn(banned6, 110), hop, packet.ExtHeader{Proto: packet.ProtoRouting, Len: 1},
			packet.ExtHeader{Proto: packet.ProtoDstOpts}, packet.ExtHeader{Proto: packet.ProtoAH, Len: 1}, fragHdr(0),
			packet.ExtHeader{Proto: packet.ProtoDstOpts}), xdpDrop},
		{"v6 banned non-first fragment", ext(syn(banned6, 110), fragHdr(8)), xdpDrop},
		{"v6 banned ESP", ext(syn(banned6, 110), packet.ExtHeader{Proto: packet.ProtoESP}), xdpDrop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := run(t, g, packet.Build(tc.spec)); got != tc.want {
				t.Errorf("verdict %s, want %s", verdictName(got), verdictName(tc.want))
			}
		})
	}
}

// A new connection is a SYN alone; only those feed the rate limiter.
func TestOnlyNewConnectionsAreCounted(t *testing.T) {
	s := rateSettings(2)
	g := newTestGuard(t, s)
	src := netip.MustParseAddr("198.18.7.7")
	for _, f := range []uint8{packet.SYN | packet.ACK, packet.RST, packet.SYN | packet.RST, packet.SYN | packet.FIN, packet.ACK, packet.FIN} {
		for range 5 {
			sp := syn(src, 110)
			sp.Flags = f
			if got := run(t, g, packet.Build(sp)); got != xdpPass {
				t.Fatalf("flags %#x: %s", f, verdictName(got))
			}
		}
	}
	// Not protected: never counted.
	for range 5 {
		if got := run(t, g, packet.Build(syn(src, 25))); got != xdpPass {
			t.Fatalf("SYN to port 25: %s", verdictName(got))
		}
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.SYNs != 0 || st.AutoBans != 0 {
		t.Fatalf("non-SYN packets were counted: %+v", st)
	}
}

func TestRateThresholdExact(t *testing.T) {
	for _, src := range []netip.Addr{netip.MustParseAddr("198.18.9.9"), netip.MustParseAddr("2001:db8:9::9")} {
		t.Run(src.String(), func(t *testing.T) {
			const n = 7
			s := rateSettings(n)
			s.BanDuration = 90 * time.Second
			g := newTestGuard(t, s)
			ev, err := g.OpenEvents()
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()

			for i := range n {
				if got := run(t, g, packet.Build(syn(src, 993))); got != xdpPass {
					t.Fatalf("SYN %d of %d: %s", i+1, n, verdictName(got))
				}
			}
			if got := run(t, g, packet.Build(syn(src, 993))); got != xdpDrop {
				t.Fatalf("SYN %d: %s, want DROP", n+1, verdictName(got))
			}
			// Banned now: every packet, not just SYNs.
			sp := syn(src, 993)
			sp.Flags = packet.ACK
			if got := run(t, g, packet.Build(sp)); got != xdpDrop {
				t.Fatalf("ACK after auto-ban: %s", verdictName(got))
			}

			bans, err := g.Bans()
			if err != nil {
				t.Fatal(err)
			}
			want := netip.PrefixFrom(src, 32)
			if src.Is6() {
				want = netip.PrefixFrom(src, 64).Masked()
			}
			if len(bans) != 1 || bans[0].Prefix != want || bans[0].Origin != OriginKernel || bans[0].Reason != ReasonSynRate {
				t.Fatalf("bans = %+v, want one kernel syn-rate ban on %s", bans, want)
			}
			if left := time.Until(bans[0].Expires); left < 80*time.Second || left > 91*time.Second {
				t.Fatalf("ban expires in %v, want about 90s", left)
			}
			if st, err := g.Stats(); err != nil || st.DroppedBan != 2 || st.AutoBans != 1 {
				t.Fatalf("stats %+v (%v): want 2 dropped by ban, 1 auto-ban", st, err)
			}

			ev.SetDeadline(time.Now().Add(2 * time.Second))
			e, err := ev.Read()
			if err != nil {
				t.Fatalf("no auto-ban event: %v", err)
			}
			if e.Prefix != want || e.Origin != OriginKernel || e.Reason != ReasonSynRate || e.Events != int(n)+1 {
				t.Fatalf("event = %+v", e)
			}
			st, _ := g.Stats()
			if st.SYNs != n+1 || st.AutoBans != 1 || st.DroppedBan != 2 || st.Passed != n {
				t.Fatalf("stats = %+v", st)
			}
		})
	}
}

func TestExpiredBanNeverDrops(t *testing.T) {
	g := newTestGuard(t, DefaultSettings())
	past := netip.MustParseAddr("198.18.10.1")
	future := netip.MustParseAddr("198.18.10.2")
	forever := netip.MustParseAddr("198.18.10.3")
	setRawBan(t, g, past, monoNow()-uint64(time.Second))
	setRawBan(t, g, future, monoNow()+uint64(time.Hour))
	setRawBan(t, g, forever, 0)
	for a, want := range map[netip.Addr]uint32{past: xdpPass, future: xdpDrop, forever: xdpDrop} {
		if got := run(t, g, packet.Build(syn(a, 110))); got != want {
			t.Errorf("%s: %s, want %s", a, verdictName(got), verdictName(want))
		}
	}
	bans, _ := g.Bans()
	if len(bans) != 2 {
		t.Errorf("Bans() lists %d, want the 2 active ones: %+v", len(bans), bans)
	}
	n, err := g.Sweep()
	if err != nil || n != 1 {
		t.Fatalf("Sweep() = %d, %v; want 1 expired ban removed", n, err)
	}
}

func TestCIDRRules(t *testing.T) {
	g := newTestGuard(t, DefaultSettings())
	// A /16 deny, a host allowed inside it, and an exact ban on an
	// allowed host: the allow wins.
	if err := g.Ban(mustPrefix("198.19.0.0/16"), 0, OriginManual, ReasonBlocklist); err != nil {
		t.Fatal(err)
	}
	if err := g.Allow(mustPrefix("198.19.1.1/32"), 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Allow(mustPrefix("2001:db8:a::/48"), 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Ban(mustPrefix("2001:db8:a:1::5"), time.Hour, OriginManual, ReasonManual); err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]uint32{
		"198.19.200.1":    xdpDrop,
		"198.19.1.1":      xdpPass,
		"198.18.0.9":      xdpPass,
		"2001:db8:a:1::5": xdpPass,
	} {
		if got := run(t, g, packet.Build(syn(netip.MustParseAddr(a), 110))); got != want {
			t.Errorf("%s: %s, want %s", a, verdictName(got), verdictName(want))
		}
	}
	st, _ := g.Stats()
	if st.DroppedCIDR != 1 || st.Allowed != 2 {
		t.Errorf("stats = %+v", st)
	}
	// An allowed source is never counted nor auto-banned.
	s := DefaultSettings()
	s.RateThreshold = 1
	g.SetSettings(s)
	for range 5 {
		if got := run(t, g, packet.Build(syn(netip.MustParseAddr("198.19.1.1"), 110))); got != xdpPass {
			t.Fatal("allowed source auto-banned")
		}
	}
	if err := g.RemoveAllow(mustPrefix("198.19.1.1/32")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, g, packet.Build(syn(netip.MustParseAddr("198.19.1.1"), 110))); got != xdpDrop {
		t.Errorf("after the allow is removed the /16 deny applies, got %s", verdictName(got))
	}
	if err := g.Unban(mustPrefix("198.19.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, g, packet.Build(syn(netip.MustParseAddr("198.19.200.1"), 443))); got != xdpPass {
		t.Errorf("after unban of the /16: %s", verdictName(got))
	}
}

func TestScopePorts(t *testing.T) {
	s := DefaultSettings()
	s.Scope = ScopePorts
	g := newTestGuard(t, s)
	src := netip.MustParseAddr("198.18.11.1")
	g.Ban(netip.PrefixFrom(src, 32), time.Hour, OriginManual, ReasonManual)
	if got := run(t, g, packet.Build(syn(src, 995))); got != xdpDrop {
		t.Errorf("to protected port: %s", verdictName(got))
	}
	if got := run(t, g, packet.Build(syn(src, 25))); got != xdpPass {
		t.Errorf("to port 25 with scope=ports: %s", verdictName(got))
	}
	if got := run(t, g, packet.Build(packet.Spec{Src: src, Dst: dst4, Proto: packet.ProtoICMP})); got != xdpPass {
		t.Errorf("ICMP with scope=ports: %s", verdictName(got))
	}
}

func TestMonitorMode(t *testing.T) {
	s := DefaultSettings()
	s.Monitor = true
	s.RateThreshold = 3
	s.RateWindow = time.Hour
	g := newTestGuard(t, s)
	banned := netip.MustParseAddr("198.18.12.1")
	g.Ban(netip.PrefixFrom(banned, 32), time.Hour, OriginManual, ReasonManual)
	g.Ban(mustPrefix("198.18.128.0/17"), time.Hour, OriginManual, ReasonManual)
	if got := run(t, g, packet.Build(syn(banned, 110))); got != xdpPass {
		t.Errorf("monitor mode dropped a banned source")
	}
	if got := run(t, g, packet.Build(syn(netip.MustParseAddr("198.18.200.1"), 110))); got != xdpPass {
		t.Errorf("monitor mode dropped a denied prefix")
	}
	flood := netip.MustParseAddr("198.18.12.2")
	for range 5 {
		if got := run(t, g, packet.Build(syn(flood, 110))); got != xdpPass {
			t.Fatalf("monitor mode dropped a SYN flood")
		}
	}
	st, _ := g.Stats()
	// 1 ban + 1 auto-ban trigger + 1 later SYN from the now banned source.
	if st.WouldDropBan != 3 || st.WouldDropCIDR != 1 || st.DroppedBan != 0 || st.DroppedCIDR != 0 || st.AutoBans != 1 {
		t.Errorf("stats = %+v", st)
	}
	bans, _ := g.Bans()
	found := false
	for _, b := range bans {
		found = found || b.Prefix.Addr() == flood
	}
	if !found {
		t.Errorf("monitor mode did not record the auto-ban it would have made: %+v", bans)
	}
}

func TestTruncatedPacketsNeverDroppedForBeingMalformed(t *testing.T) {
	g := newTestGuard(t, DefaultSettings())
	banned := netip.MustParseAddr("198.18.13.1")
	banned6 := netip.MustParseAddr("2001:db8:13::1")
	g.Ban(netip.PrefixFrom(banned, 32), time.Hour, OriginManual, ReasonManual)
	g.Ban(netip.PrefixFrom(banned6, 128), time.Hour, OriginManual, ReasonManual)
	for _, sp := range []packet.Spec{
		syn(netip.MustParseAddr("198.18.13.2"), 110),
		syn(netip.MustParseAddr("2001:db8:14::1"), 110),
		syn(banned, 110),
		syn(banned6, 110),
	} {
		sp.VLANs = []uint16{0x8100}
		full := packet.Build(sp)
		// The source counts as readable once the fixed IP header is whole.
		hdrEnd := 18 + 20
		if sp.Src.Is6() {
			hdrEnd = 18 + 40
		}
		// BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
		for n := 14; n < len(full); n++ {
			want := uint32(xdpPass)
			if n >= hdrEnd && (sp.Src == banned || sp.Src == banned6) {
				want = xdpDrop
			}
			if got := run(t, g, full[:n]); got != want {
				t.Errorf("%s truncated to %d bytes: %s, want %s", sp.Src, n, verdictName(got), verdictName(want))
			}
		}
	}
}
