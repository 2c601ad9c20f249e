package offence

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func policy() Policy {
	return Policy{BanDuration: time.Hour, Factor: 2, MaxBanDuration: 7 * 24 * time.Hour, Retention: 30 * 24 * time.Hour,
		MaxOffenders: 100, Granularity: datapath.Granularity{V4: 32, V6: 64}}
}

func newHistory(t *testing.T, pol Policy) *History {
	t.Helper()
	h, err := New(pol)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Offences escalate whichever detector caught the source, per /64 for
// IPv6, and are capped.
func TestEscalatesAcrossDetectors(t *testing.T) {
	h := newHistory(t, policy())
	p := netip.MustParsePrefix("2001:db8:1:2::5/128")
	steps := []struct {
		reason   datapath.Reason
		detector string
		want     time.Duration
	}{
		{datapath.ReasonNoAuth, "dovecot-login", time.Hour},
		{datapath.ReasonSynRate, datapath.DetectorSYNRate, 2 * time.Hour},
		{datapath.ReasonNoAuth, datapath.DetectorSlotHolders, 4 * time.Hour},
	}
	for i, s := range steps {
		// Another address of the same /64 is the same source.
		q := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 15: byte(i + 1)}), 128)
		if i == 0 {
			q = p
		}
		d, n := h.Record(q, t0.Add(time.Duration(i)*time.Hour), s.reason, s.detector)
		if d != s.want || n != i+1 {
			t.Fatalf("offence %d by %s: %v, #%d; want %v, #%d", i+1, s.detector, d, n, s.want, i+1)
		}
	}
	o, ok := h.Get(netip.MustParsePrefix("2001:db8:1:2::/64"))
	if !ok || o.Prefix != netip.MustParsePrefix("2001:db8:1:2::/64") || len(o.Bans) != 3 ||
		o.Detector != datapath.DetectorSlotHolders || !o.Until.Equal(t0.Add(2*time.Hour+4*time.Hour)) {
		t.Fatalf("history %+v, %v", o, ok)
	}
	for i := 0; i < 20; i++ {
		h.Record(p, t0.Add(time.Duration(10+i)*time.Hour), datapath.ReasonNoAuth, "x")
	}
	if d, _ := h.Record(p, t0.Add(40*time.Hour), datapath.ReasonNoAuth, "x"); d != policy().MaxBanDuration {
		t.Fatalf("capped: %v", d)
	}
	if !h.BannedAt(h.Key(p), t0.Add(41*time.Hour).UnixNano()) {
		t.Fatal("not banned during its ban")
	}
}

// Bans older than the retention do not count, and Expire forgets sources
// whose bans are over and out of the retention.
func TestRetention(t *testing.T) {
	pol := policy()
	pol.Retention = 24 * time.Hour
	h := newHistory(t, pol)
	p := netip.MustParsePrefix("198.18.9.1/32")
	h.Record(p, t0, datapath.ReasonNoAuth, "r")
	if d, n := h.Record(p, t0.Add(25*time.Hour), datapath.ReasonNoAuth, "r"); d != time.Hour || n != 1 {
		t.Fatalf("after the retention: %v #%d, want a first offence", d, n)
	}
	h.Expire(t0.Add(25*time.Hour + 30*time.Minute))
	if h.Len() != 1 {
		t.Fatal("expired a source still banned")
	}
	h.Expire(t0.Add(50 * time.Hour))
	if h.Len() != 0 {
		t.Fatal("kept a source past its ban and the retention")
	}
}

func TestSnapshotRestoreAndBound(t *testing.T) {
	pol := policy()
	pol.MaxOffenders = 2
	h := newHistory(t, pol)
	now := time.Now()
	for i := 1; i <= 3; i++ {
		h.Record(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 32), now.Add(time.Duration(i)*time.Second), datapath.ReasonProbe, "r")
	}
	if h.Len() != 2 || h.Evicted() != 1 {
		t.Fatalf("len %d evicted %d, want 2 and 1", h.Len(), h.Evicted())
	}
	snap := h.Snapshot()
	if len(snap) != 2 || snap[0].Prefix != netip.MustParsePrefix("198.18.0.2/32") || snap[0].Reason != datapath.ReasonProbe {
		t.Fatalf("snapshot %+v", snap)
	}
	// A /24 history restores one source from the two /32s.
	pol24 := policy()
	pol24.Granularity.V4 = 24
	h2 := newHistory(t, pol24)
	if err := h2.Restore(snap, now); err != nil {
		t.Fatal(err)
	}
	if d, n := h2.Record(netip.MustParsePrefix("198.18.0.77/32"), now.Add(time.Minute), datapath.ReasonNoAuth, "r"); n != 3 || d != 4*time.Hour {
		t.Fatalf("after restore: %v #%d, want 4h #3", d, n)
	}
	if err := h2.Restore([]Offender{{}}, now); err == nil {
		t.Fatal("restored an invalid prefix")
	}
}

func TestPolicyValidate(t *testing.T) {
	for _, f := range []func(*Policy){
		func(p *Policy) { p.BanDuration = 0 },
		func(p *Policy) { p.Factor = 0.5 },
		func(p *Policy) { p.MaxBanDuration = time.Minute },
		func(p *Policy) { p.Retention = -1 },
		func(p *Policy) { p.MaxOffenders = 0 },
		func(p *Policy) { p.Granularity.V6 = 129 },
	} {
		p := policy()
		f(&p)
		if _, err := New(p); err == nil {
			t.Errorf("accepted %+v", p)
		}
	}
}
