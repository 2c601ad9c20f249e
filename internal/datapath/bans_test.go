package datapath

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestBanManyAndUnbanMany(t *testing.T) {
	g := newTestGuard(t, DefaultSettings())
	var ps []netip.Prefix
	for i := range 3000 { // above the batch-dump threshold
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32))
	}
	ps = append(ps, netip.MustParsePrefix("2001:db8:1:2::7/128"), netip.MustParsePrefix("198.19.0.0/16"))
	// An existing log ban inside the list keeps its slot, re-banned.
	if err := g.Ban(ps[5], time.Minute, OriginLog, ReasonNoAuth); err != nil {
		t.Fatal(err)
	}
	if err := g.BanMany(ps, time.Hour, OriginManual, ReasonBlocklist); err != nil {
		t.Fatal(err)
	}
	bans, err := g.Bans()
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != len(ps) {
		t.Fatalf("%d bans, want %d", len(bans), len(ps))
	}
	eff, _ := g.Effective(ps[len(ps)-2:])
	if eff[0] != netip.MustParsePrefix("2001:db8:1:2::/64") || eff[1] != netip.MustParsePrefix("198.19.0.0/16") {
		t.Errorf("Effective = %v", eff)
	}
	// Unban half of them plus some that were never banned.
	half := append(ps[:1500:1500], netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("198.19.0.0/16"),
		netip.MustParsePrefix("2001:db8:1:2::1/128"))
	n, err := g.UnbanMany(half)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1502 {
		t.Errorf("UnbanMany lifted %d, want 1502", n)
	}
	bans, _ = g.Bans()
	if len(bans) != 1500 {
		t.Errorf("%d bans left, want 1500", len(bans))
	}
	for _, b := range bans {
		if b.Prefix.Addr().Is6() || b.CIDR || b.Prefix.Addr().Compare(ps[1500].Addr()) < 0 {
			t.Fatalf("wrong ban left: %+v", b)
		}
	}
}

// A failed batch leaves the maps as they were.
func TestBanManyRollsBack(t *testing.T) {
	g := newGuardWith(t, DefaultSettings(), Options{MaxBans: 64})
	keep := netip.MustParsePrefix("198.18.0.1/32")
	if err := g.Ban(keep, time.Minute, OriginLog, ReasonNoAuth); err != nil {
		t.Fatal(err)
	}
	var ps []netip.Prefix
	for i := range 600 { // more than the table's 64 buckets of 8 slots hold
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(1 + i>>8), byte(i)}), 32))
	}
	ps = append(ps, keep)
	err := g.BanMany(ps, time.Hour, OriginManual, ReasonBlocklist)
	if !errors.Is(err, ErrTableFull) {
		t.Fatalf("600 bans in a 512-slot table: %v, want ErrTableFull", err)
	}
	bans, _ := g.Bans()
	if len(bans) != 1 || bans[0].Prefix != keep || bans[0].Origin != OriginLog {
		t.Fatalf("after a failed batch: %+v, want only the original log ban", bans)
	}
}
