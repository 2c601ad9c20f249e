package knowngood

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLearnMasksLikeABan(t *testing.T) {
	s := New(30*day, 100, datapath.Granularity{V4: 32, V6: 64})
	p, isNew, ev := s.Learn(addr("2001:db8:1:2::7"), t0)
	if !isNew || len(ev) != 0 || p != netip.MustParsePrefix("2001:db8:1:2::/64") {
		t.Fatalf("Learn: %v %v %v", p, isNew, ev)
	}
	if !s.Contains(addr("2001:db8:1:2:aaaa::1")) || s.Contains(addr("2001:db8:1:3::7")) {
		t.Error("the /64 is known, its neighbour is not")
	}
	if _, isNew, _ := s.Learn(addr("2001:db8:1:2::8"), t0.Add(time.Second)); isNew {
		t.Error("a second address in the same /64 is not new")
	}
	if _, isNew, _ := s.Learn(addr("::ffff:198.18.1.1"), t0); !isNew || !s.Contains(addr("198.18.1.1")) {
		t.Error("IPv4-mapped sources are IPv4 sources")
	}
}

func TestExpiry(t *testing.T) {
	s := New(30*day, 100, datapath.Granularity{V4: 32, V6: 64})
	s.Learn(addr("198.18.1.1"), t0)
	s.Learn(addr("198.18.1.2"), t0.Add(10*day))
	// A login refreshes: .1 logs in again on day 20.
	s.Learn(addr("198.18.1.1"), t0.Add(20*day))
	if got := s.Expire(t0.Add(30*day + time.Hour)); len(got) != 0 {
		t.Fatalf("day 30: expired %v, want none (.1 refreshed on day 20)", got)
	}
	got := s.Expire(t0.Add(40 * day))
	if !slices.Equal(got, []netip.Prefix{netip.MustParsePrefix("198.18.1.2/32")}) {
		t.Fatalf("day 40: expired %v, want .2", got)
	}
	if !s.Contains(addr("198.18.1.1")) || s.Contains(addr("198.18.1.2")) {
		t.Error("wrong survivor")
	}
	if got := s.Expire(t0.Add(50 * day)); len(got) != 1 || s.Len() != 0 {
		t.Errorf("day 50: expired %v, %d left", got, s.Len())
	}
}

func TestBoundEvictsLeastRecentlySeen(t *testing.T) {
	s := New(30*day, 3, datapath.Granularity{V4: 32, V6: 64})
	for i := range 3 {
		s.Learn(addr(fmt.Sprintf("198.18.1.%d", i+1)), t0.Add(time.Duration(i)*time.Minute))
	}
	s.Learn(addr("198.18.1.1"), t0.Add(time.Hour)) // .1 is now the most recent
	p, isNew, ev := s.Learn(addr("198.18.1.9"), t0.Add(2*time.Hour))
	if !isNew || !slices.Equal(ev, []netip.Prefix{netip.MustParsePrefix("198.18.1.2/32")}) {
		t.Fatalf("Learn %v: new %v, evicted %v; want .2 evicted", p, isNew, ev)
	}
	if s.Len() != 3 || !s.Contains(addr("198.18.1.1")) || !s.Contains(addr("198.18.1.3")) {
		t.Errorf("store: %v", s.Prefixes())
	}
	// A million logins from distinct sources never grow it past the bound.
	for i := range 10000 {
		s.Learn(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), t0.Add(3*time.Hour))
	}
	if s.Len() != 3 {
		t.Errorf("Len %d, want 3", s.Len())
	}
	if ev := s.SetLimits(30*day, 1); len(ev) != 2 || s.Len() != 1 {
		t.Errorf("shrinking the bound evicted %v, %d left", ev, s.Len())
	}
}

func TestSnapshotRestore(t *testing.T) {
	s := New(30*day, 100, datapath.Granularity{V4: 32, V6: 64})
	s.Learn(addr("198.18.1.1"), t0)
	s.Learn(addr("2001:db8:5:6::1"), t0.Add(time.Hour))
	s.Learn(addr("198.18.1.3"), t0.Add(-29*day))
	snap := s.Snapshot()
	if snap[0].Prefix != netip.MustParsePrefix("2001:db8:5:6::/64") {
		t.Fatalf("snapshot not newest first: %v", snap)
	}

	// Restored two days later: .3 has expired meanwhile.
	r := New(30*day, 100, datapath.Granularity{V4: 32, V6: 64})
	r.Restore(snap, t0.Add(2*day))
	if r.Len() != 2 || !r.Contains(addr("198.18.1.1")) || !r.Contains(addr("2001:db8:5:6::9")) || r.Contains(addr("198.18.1.3")) {
		t.Fatalf("restored %v", r.Prefixes())
	}
	// The restored order is the recency order: the bound evicts .1 first.
	if _, _, ev := New(0, 0, datapath.Granularity{V4: 32, V6: 64}).Learn(addr("198.18.9.9"), t0); ev != nil {
		t.Fatal("a store of size 0 evicts nothing")
	}
	r.SetLimits(30*day, 2)
	_, _, ev := r.Learn(addr("198.18.2.2"), t0.Add(2*day))
	if !slices.Equal(ev, []netip.Prefix{netip.MustParsePrefix("198.18.1.1/32")}) {
		t.Errorf("evicted %v, want the least recent, .1", ev)
	}

	// A smaller bound on restore keeps the most recent; a coarser IPv6
	// granularity re-masks and merges.
	b := New(30*day, 1, datapath.Granularity{V4: 32, V6: 48})
	b.Restore(append(snap, Entry{Prefix: netip.MustParsePrefix("2001:db8:5:7::/64"), LastSeen: t0}), t0)
	if got := b.Prefixes(); !slices.Equal(got, []netip.Prefix{netip.MustParsePrefix("2001:db8:5::/48")}) {
		t.Errorf("restored with max 1 and /48: %v", got)
	}
}

func TestOverlaps(t *testing.T) {
	s := New(30*day, 100, datapath.Granularity{V4: 32, V6: 64})
	s.Learn(addr("2001:db8:a:b::1"), t0)
	if !s.Overlaps(netip.MustParsePrefix("2001:db8:a::/48")) {
		t.Error("the /48 holding a known /64 overlaps it")
	}
	if s.Overlaps(netip.MustParsePrefix("2001:db8:c::/48")) || s.Overlaps(netip.MustParsePrefix("2001:db8:a:c::/64")) {
		t.Error("other prefixes do not overlap")
	}
	if !s.Overlaps(netip.MustParsePrefix("2001:db8:a:b::/64")) {
		t.Error("the /64 itself overlaps")
	}
}
