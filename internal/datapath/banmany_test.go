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
	for i := range 1200 { // more than the table's 64 buckets of 14 slots hold
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(1 + i>>8), byte(i)}), 32))
	}
	ps = append(ps, keep)
	err := g.BanMany(ps, time.Hour, OriginManual, ReasonBlocklist)
	if !errors.Is(err, ErrTableFull) {
		t.Fatalf("1200 bans in an 896-slot table: %v, want ErrTableFull", err)
	}
	bans, _ := g.Bans()
	if len(bans) != 1 || bans[0].Prefix != keep || bans[0].Origin != OriginLog {
		t.Fatalf("after a failed batch: %+v, want only the original log ban", bans)
	}
}

// A failed batch restores the bans it replaced, wherever they fall in the
// order BanMany writes (by bucket, not list order), and lifts the new ones,
// repeated keys included.
func TestBanManyRollsBackReplacedBans(t *testing.T) {
	g := newGuardWith(t, DefaultSettings(), Options{MaxBans: 64})
	var kept []netip.Prefix
	for i := range 100 { // spread over the buckets: some are written before the failure
		kept = append(kept, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 32))
	}
	if err := g.BanMany(kept, time.Minute, OriginLog, ReasonNoAuth); err != nil {
		t.Fatal(err)
	}
	before, err := g.Bans()
	if err != nil {
		t.Fatal(err)
	}
	var ps []netip.Prefix
	for i := range 1200 { // more than the table's 64 buckets of 14 slots hold
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(1 + i>>8), byte(i)}), 32)
		ps = append(ps, p, p)
	}
	ps = append(ps, kept...)
	if err := g.BanMany(ps, time.Hour, OriginManual, ReasonBlocklist); !errors.Is(err, ErrTableFull) {
		t.Fatalf("1200 bans in an 896-slot table: %v, want ErrTableFull", err)
	}
	after, err := g.Bans()
	if err != nil {
		t.Fatal(err)
	}
	was := map[netip.Prefix]Ban{}
	for _, b := range before {
		was[b.Prefix] = b
	}
	if len(after) != len(before) {
		t.Fatalf("after a failed batch: %d bans, want the %d before it", len(after), len(before))
	}
	for _, b := range after {
		if w, ok := was[b.Prefix]; !ok || w.Origin != b.Origin || w.Reason != b.Reason || !w.Expires.Equal(b.Expires) {
			t.Errorf("after a failed batch: %+v, before it %+v", b, w)
		}
	}
}

// Effective masks to the ban granularity without touching its input, and
// hands back the input itself when nothing needs masking (a million
// addresses are not copied for nothing).
func TestEffectiveCopiesOnlyWhatChanges(t *testing.T) {
	s := DefaultSettings()
	s.PrefixV4 = 24
	g := newTestGuard(t, s)
	ps := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.1.7/32"),
		netip.MustParsePrefix("198.19.0.0/16")}
	eff, err := g.Effective(ps)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.18.0.0/24", "198.18.1.0/24", "198.19.0.0/16"}
	for i, w := range want {
		if eff[i].String() != w {
			t.Errorf("Effective[%d] = %v, want %s", i, eff[i], w)
		}
	}
	if ps[1].String() != "198.18.1.7/32" {
		t.Errorf("Effective changed its input: %v", ps)
	}
	same := ps[:1:1]
	if eff, err := g.Effective(same); err != nil || &eff[0] != &same[0] {
		t.Errorf("Effective of a list already at the granularity made a copy (%v)", err)
	}
}
