package datapath

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/bpf"
	"github.com/xdpguard/xdpguard/internal/packet"
)

func TestKnownGoodAPI(t *testing.T) {
	g := newTestGuard(t, DefaultSettings())
	in := []netip.Prefix{
		mustPrefix("198.18.7.7"),
		mustPrefix("2001:db8:7:7::1"),   // masked to its /64
		mustPrefix("2001:db8:7:7::2"),   // the same /64
		mustPrefix("2001:db8:7:8::/64"), // already at the granularity
	}
	if err := g.PutKnownGood(in); err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{mustPrefix("198.18.7.7/32"), mustPrefix("2001:db8:7:7::/64"), mustPrefix("2001:db8:7:8::/64")}
	got, err := g.KnownGood()
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("KnownGood = %v, %v; want %v", got, err, want)
	}
	// Putting again is no change; deleting one leaves the others.
	if err := g.PutKnownGood(in[:1]); err != nil {
		t.Fatal(err)
	}
	if err := g.DeleteKnownGood([]netip.Prefix{mustPrefix("2001:db8:7:7::99"), mustPrefix("198.18.99.99")}); err != nil {
		t.Fatal(err)
	}
	got, _ = g.KnownGood()
	if want := []netip.Prefix{want[0], want[2]}; !slices.Equal(got, want) {
		t.Fatalf("after delete: %v, want %v", got, want)
	}
	// A prefix wider than a ban cannot be matched exactly: refused whole.
	if err := g.PutKnownGood([]netip.Prefix{mustPrefix("198.18.50.1"), mustPrefix("2001:db8::/48")}); err == nil {
		t.Fatal("a /48 was accepted as one known-good source")
	}
	if got, _ := g.KnownGood(); len(got) != 2 {
		t.Fatalf("a refused batch left %v", got)
	}

	// Admission is run-time state: SetSettings keeps it.
	if on, _ := g.Admission(); on {
		t.Fatal("admission on at load")
	}
	if err := g.SetAdmission(true); err != nil {
		t.Fatal(err)
	}
	if err := g.SetSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
	if on, err := g.Admission(); !on || err != nil {
		t.Fatalf("admission after SetSettings: %v, %v", on, err)
	}
	if err := g.SetAdmission(false); err != nil {
		t.Fatal(err)
	}
	if on, _ := g.Admission(); on {
		t.Fatal("admission still on")
	}
}

// The map refuses more than MaxKnownGood sources, and a batch that does not
// fit leaves nothing of itself behind.
func TestKnownGoodBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the map")
	}
	g := newTestGuard(t, DefaultSettings())
	var ps []netip.Prefix
	for i := range MaxKnownGood {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32))
		if i>>16 > 0 {
			ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)
		}
	}
	if err := g.PutKnownGood(ps); err != nil {
		t.Fatal(err)
	}
	extra := []netip.Prefix{mustPrefix("2001:db8::1"), mustPrefix("203.0.113.1"), mustPrefix("203.0.113.2")}
	if err := g.PutKnownGood(extra); err == nil {
		t.Fatal("the map took more than MaxKnownGood IPv4 sources")
	}
	got, err := g.KnownGood()
	if err != nil || len(got) != MaxKnownGood {
		t.Fatalf("after a refused batch: %d sources, %v; want %d", len(got), err, MaxKnownGood)
	}
}

// A known-good source far over the SYN rate is never banned; an unknown one
// at the same rate is, and so is the known-good one once forgotten.
func TestKnownGoodNeverAutoBanned(t *testing.T) {
	for _, src := range []netip.Addr{netip.MustParseAddr("198.18.21.1"), netip.MustParseAddr("2001:db8:21::1")} {
		t.Run(src.String(), func(t *testing.T) {
			s := rateSettings(5)
			g := newTestGuard(t, s)
			// Known-good at the granularity: a neighbour in its /64 too.
			if err := g.PutKnownGood([]netip.Prefix{netip.PrefixFrom(src, src.BitLen())}); err != nil {
				t.Fatal(err)
			}
			from := src
			if src.Is6() {
				from = src.Next() // another address in the known-good /64
			}
			for i := range 200 {
				if got := run(t, g, packet.Build(syn(from, 993))); got != xdpPass {
					t.Fatalf("known-good SYN %d: %s", i+1, verdictName(got))
				}
			}
			st, _ := g.Stats()
			if st.AutoBans != 0 || st.KnownGoodSpared != 200-5 {
				t.Fatalf("stats %+v: want no auto-ban and %d spared", st, 200-5)
			}
			if err := g.DeleteKnownGood([]netip.Prefix{netip.PrefixFrom(src, src.BitLen())}); err != nil {
				t.Fatal(err)
			}
			if got := run(t, g, packet.Build(syn(src, 993))); got != xdpDrop {
				t.Fatalf("forgotten, still over the rate: %s, want DROP", verdictName(got))
			}
			if _, ok, _ := g.BanOf(src); !ok {
				t.Fatal("forgotten source over the rate was not banned")
			}
		})
	}
}

// A resent SYN (same port and sequence number) is not a new connection, up to
// FP_MAX_RETRANS resends; a new sequence number from the same port is.
func TestRetransmittedSYNNotCounted(t *testing.T) {
	for _, src := range []netip.Addr{netip.MustParseAddr("198.18.22.1"), netip.MustParseAddr("2001:db8:22::1")} {
		t.Run(src.String(), func(t *testing.T) {
			s := rateSettings(3)
			g := newTestGuard(t, s)
			// Three connections, each SYN sent 4 times (3 resends): 12 SYNs
			// against a threshold of 3, none banned.
			for c := range 3 {
				sp := syn(src, 143)
				sp.SrcPort = uint16(41000 + c)
				pkt := packet.Build(sp)
				for i := range 4 {
					if got := run(t, g, pkt); got != xdpPass {
						t.Fatalf("connection %d, send %d: %s", c, i, verdictName(got))
					}
				}
			}
			st, _ := g.Stats()
			if st.SYNRetransmits != 9 || st.AutoBans != 0 {
				t.Fatalf("stats %+v: want 9 retransmits, no ban", st)
			}
			// A new sequence number from a port seen before is a new connection.
			again := syn(src, 143)
			again.SrcPort = 41000
			if got := run(t, g, packet.Build(again)); got != xdpDrop {
				t.Fatalf("4th connection: %s, want DROP (over the rate)", verdictName(got))
			}
		})
	}
}

// The sixth resend of one SYN counts again: a client reusing a port and
// sequence number gains at most FP_MAX_RETRANS free connections per SYN.
func TestRetransmitCap(t *testing.T) {
	s := rateSettings(1)
	g := newTestGuard(t, s)
	src := netip.MustParseAddr("198.18.23.1")
	pkt := packet.Build(syn(src, 110))
	for i := range 1 + bpf.XdpguardSynFpFP_MAX_RETRANS {
		if got := run(t, g, pkt); got != xdpPass {
			t.Fatalf("send %d: %s", i, verdictName(got))
		}
	}
	if got := run(t, g, pkt); got != xdpDrop {
		t.Fatalf("resend %d: %s, want DROP (counted, over a rate of 1)", bpf.XdpguardSynFpFP_MAX_RETRANS+1, verdictName(got))
	}
}

// A SYN counted again past the cap takes the newest slot and clears its
// old copy: a fingerprint is held once at most, which is what lets the
// kernel's resend check stop at the first copy it finds.
func TestRecountedFingerprintHeldOnce(t *testing.T) {
	s := rateSettings(100)
	g := newTestGuard(t, s)
	src := netip.MustParseAddr("198.18.23.2")
	sp := syn(src, 110)
	pkt := packet.Build(sp)
	for i := range 2 * (1 + bpf.XdpguardSynFpFP_MAX_RETRANS) {
		if got := run(t, g, pkt); got != xdpPass {
			t.Fatalf("send %d: %s", i, verdictName(got))
		}
	}
	st, _ := g.Stats()
	if want := uint64(2 * bpf.XdpguardSynFpFP_MAX_RETRANS); st.SYNRetransmits != want {
		t.Fatalf("%d resends seen, want %d: the copy counted again must match its resends", st.SYNRetransmits, want)
	}
	want := uint64(sp.SrcPort)<<32 | uint64(sp.Seq)
	copies := 0
	var i uint32
	var pair bpf.XdpguardSynPairV4
	for it := g.maps.SynV4.Iterate(); it.Next(&i, &pair); {
		for _, slot := range pair.Slot {
			for _, fp := range slot.S.Fp {
				if fp&(1<<48-1) == want {
					copies++
				}
			}
		}
	}
	if copies != 1 {
		t.Fatalf("the fingerprint is held %d times, want once", copies)
	}
}

// With the window 0, every SYN counts.
func TestRetransmitWindowZero(t *testing.T) {
	s := rateSettings(1)
	s.RetransmitWindow = 0
	g := newTestGuard(t, s)
	pkt := packet.Build(syn(netip.MustParseAddr("198.18.24.1"), 110))
	run(t, g, pkt)
	if got := run(t, g, pkt); got != xdpDrop {
		t.Fatalf("resend with window 0: %s, want DROP", verdictName(got))
	}
}

// Under admission, a source that is not known-good gets its first new
// connection, and its resends, but no second one within the interval; known-good
// sources pass as many as they open. Dropped SYNs are not counted: the
// victim of admission is never banned for retrying.
func TestAdmission(t *testing.T) {
	for _, pair := range [][2]netip.Addr{
		{netip.MustParseAddr("198.18.25.1"), netip.MustParseAddr("198.18.25.2")},
		{netip.MustParseAddr("2001:db8:25:1::1"), netip.MustParseAddr("2001:db8:25:2::1")},
	} {
		unknown, good := pair[0], pair[1]
		t.Run(unknown.String(), func(t *testing.T) {
			s := rateSettings(5)
			s.AdmissionInterval = time.Hour
			g := newTestGuard(t, s)
			if err := g.PutKnownGood([]netip.Prefix{netip.PrefixFrom(good, good.BitLen())}); err != nil {
				t.Fatal(err)
			}
			if err := g.SetAdmission(true); err != nil {
				t.Fatal(err)
			}
			first := packet.Build(syn(unknown, 143))
			if got := run(t, g, first); got != xdpPass {
				t.Fatalf("first SYN of a never-seen source: %s", verdictName(got))
			}
			if got := run(t, g, first); got != xdpPass {
				t.Fatalf("its retransmission: %s", verdictName(got))
			}
			// A bot reconnecting, or a client retrying with new SYNs, many
			// times over the rate: dropped, never banned.
			for i := range 50 {
				if got := run(t, g, packet.Build(syn(unknown, 143))); got != xdpDrop {
					t.Fatalf("second connection %d within the interval: %s", i, verdictName(got))
				}
			}
			for i := range 50 {
				if got := run(t, g, packet.Build(syn(good, 143))); got != xdpPass {
					t.Fatalf("known-good connection %d: %s", i, verdictName(got))
				}
			}
			// Other traffic of the limited source still flows.
			ack := syn(unknown, 143)
			ack.Flags = packet.ACK
			if got := run(t, g, packet.Build(ack)); got != xdpPass {
				t.Fatalf("ACK of an admitted connection: %s", verdictName(got))
			}
			st, _ := g.Stats()
			if st.DroppedAdmission != 50 || st.AutoBans != 0 || st.DroppedBan != 0 {
				t.Fatalf("stats %+v: want 50 admission drops, no ban", st)
			}
			if _, ok, _ := g.BanOf(unknown); ok {
				t.Fatal("admission banned a source")
			}

			// Off: the limit is gone (the rate limiter is back).
			if err := g.SetAdmission(false); err != nil {
				t.Fatal(err)
			}
			if got := run(t, g, packet.Build(syn(unknown, 143))); got != xdpPass {
				t.Fatalf("after admission off: %s", verdictName(got))
			}
		})
	}
}

// The admission interval runs out: a source gets its next connection.
func TestAdmissionIntervalElapses(t *testing.T) {
	s := DefaultSettings()
	s.AdmissionInterval = 300 * time.Millisecond
	g := newTestGuard(t, s)
	if err := g.SetAdmission(true); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("198.18.26.1")
	if got := run(t, g, packet.Build(syn(src, 110))); got != xdpPass {
		t.Fatalf("first: %s", verdictName(got))
	}
	if got := run(t, g, packet.Build(syn(src, 110))); got != xdpDrop {
		t.Fatalf("second at once: %s", verdictName(got))
	}
	// Generous: the program's clock is coarse (a jiffy).
	deadline := time.Now().Add(10 * time.Second)
	for run(t, g, packet.Build(syn(src, 110))) != xdpPass {
		if time.Now().After(deadline) {
			t.Fatal("no second connection 10 s after a 300 ms interval")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Monitor mode counts what admission would drop and drops nothing.
func TestAdmissionMonitor(t *testing.T) {
	s := DefaultSettings()
	s.Monitor = true
	s.AdmissionInterval = time.Hour
	g := newTestGuard(t, s)
	if err := g.SetAdmission(true); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("198.18.27.1")
	for range 3 {
		if got := run(t, g, packet.Build(syn(src, 110))); got != xdpPass {
			t.Fatalf("monitor mode dropped: %s", verdictName(got))
		}
	}
	st, _ := g.Stats()
	if st.WouldDropAdmission != 2 || st.DroppedAdmission != 0 || st.Passed != 3 {
		t.Fatalf("stats %+v", st)
	}
}
