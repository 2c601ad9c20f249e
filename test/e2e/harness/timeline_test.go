package harness

import (
	"net/netip"
	"testing"
	"time"
)

func TestTimeline(t *testing.T) {
	log := `time=2026-12-02T06:06:10.276Z level=INFO msg=running interfaces=[e2e-srv]
time=2026-12-02T06:06:17.277Z level=WARN msg="login slots under pressure: scanning faster, shorter idle" waiting=39 silent=0
time=2026-12-02T06:06:37.211Z level=INFO msg=banned prefix=198.18.64.1/32 origin=log reason=no-auth
time=2026-12-02T06:06:38.000Z level=INFO msg=banned prefix=198.18.64.1/32 origin=log reason=no-auth
time=2026-12-02T06:06:40.000Z level=INFO msg=banned prefix=2001:db8:5::/48 origin=log reason=no-auth
time=2026-12-02T06:06:50.000Z level=INFO msg=banned prefix=2001:db8:5:1::/64 origin=log reason=no-auth
time=2026-12-02T06:07:40.000Z level=INFO msg=banned prefix=198.18.64.2/32 origin=log reason=no-auth
time=2026-12-02T06:08:00.000Z level=INFO msg="login slot pressure over" lasted=1m43s
time=2026-12-02T06:09:00.000Z level=WARN msg="login slots under pressure: scanning faster, shorter idle" waiting=0 silent=0 dovecot_full=imap-login
`
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, "2026-12-02T"+s+"Z")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tl := ReadTimeline(log)
	if got := tl.Bans[netip.MustParsePrefix("198.18.64.1/32")]; !got.Equal(at("06:06:37.211")) {
		t.Errorf("first ban at %v", got)
	}
	// 198.18.64.1 by its own /32; 2001:db8:5:1::1 by the /48 escalation
	// before its /64; 198.18.64.2 only after the span.
	sources := []netip.Addr{netip.MustParseAddr("198.18.64.1"), netip.MustParseAddr("2001:db8:5:1::1"),
		netip.MustParseAddr("198.18.64.2")}
	first, last, n := tl.BannedDuring(sources, at("06:06:00"), at("06:07:30"))
	if n != 2 || !first.Equal(at("06:06:37.211")) || !last.Equal(at("06:06:40")) {
		t.Errorf("BannedDuring = %v, %v, %d; want 06:06:37.211, 06:06:40, 2", first, last, n)
	}
	for _, c := range []struct {
		from, to string
		want     string // "" for none
	}{
		{"06:06:00", "06:06:30", "06:06:17.277"}, // begins inside
		{"06:07:00", "06:07:30", "06:07:00"},     // carried over from before the span
		{"06:08:10", "06:08:50", ""},             // between spells
		{"06:09:30", "06:10:00", "06:09:30"},     // still on at the log's end
		{"06:05:00", "06:06:00", ""},             // before any
	} {
		got, ok := tl.PressureDuring(at(c.from), at(c.to))
		if ok != (c.want != "") || (ok && !got.Equal(at(c.want))) {
			t.Errorf("PressureDuring(%s, %s) = %v, %v; want %q", c.from, c.to, got, ok, c.want)
		}
	}
}
