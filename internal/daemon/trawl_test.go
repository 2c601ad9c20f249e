package daemon

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestUserName(t *testing.T) {
	for line, want := range map[string]string{
		"dovecot: pop3-login: Disconnected (no auth attempts in 3 secs): user=<trawl1>, rip=198.18.0.5, lip=198.18.0.1, session=<x>":              "trawl1",
		"dovecot: pop3-login: Disconnected (no auth attempts in 3 secs): user=<>, rip=198.18.0.5, lip=198.18.0.1, session=<x>":                    "",
		"dovecot: pop3-login: Disconnected (no auth attempts in 3 secs): user=<a>, rip=6.6.6.6>, b>, rip=198.18.0.5, lip=198.18.0.1, session=<x>": "a>, rip=6.6.6.6>, b",
		"dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, method=PLAIN, rip=198.18.0.5, lip=198.18.0.1":         "bob",
		"dovecot: pop3-login: Disconnected (no auth attempts in 3 secs): rip=198.18.0.5, lip=198.18.0.1":                                          "",
	} {
		if got := string(userName([]byte(line))); got != want {
			t.Errorf("%q, want %q: %s", got, want, line)
		}
	}
}

// Five distinct user names from one source without a login ban it; the
// same name over and over, empty names, and a known-good source do not.
func TestTrawlerBanned(t *testing.T) {
	d := evictDaemon(t)
	now := time.Now()
	line := func(a netip.Addr, user string, i int) {
		l := fmt.Sprintf("%s mx dovecot: pop3-login: Disconnected (no auth attempts in 3 secs): user=<%s>, rip=%s, lip=198.18.0.1, session=<s%d>",
			now.Format(time.Stamp), user, a, i)
		r := d.engine.Process([]byte(l), "", now.Add(time.Duration(i)*3*time.Second))
		d.trawl(r, []byte(l))
	}
	trawler := netip.MustParseAddr("2001:db8:90:1::7")
	retry := netip.MustParseAddr("198.18.90.2")  // one name, many times
	silent := netip.MustParseAddr("198.18.90.3") // never sends USER
	user := netip.MustParseAddr("198.18.90.4")   // known-good
	d.kg.store.Learn(user, now)
	for i := range 8 {
		line(retry, "alice", i)
		line(silent, "", i)
		line(user, fmt.Sprintf("u%d", i), i)
	}
	for i := range 4 {
		line(trawler, fmt.Sprintf("admin%d", i), i)
	}
	if len(d.pending) != 0 {
		t.Fatalf("banned before five names: %+v", d.pending[0].dec)
	}
	line(trawler, "admin4", 4)
	if len(d.pending) != 1 || d.pending[0].dec.Prefix != netip.MustParsePrefix("2001:db8:90:1::/64") || d.pending[0].dec.Rule != "user-trawl" {
		t.Fatalf("pending %d, want the trawler's /64", len(d.pending))
	}
}
