package harness

import (
	"fmt"
	"net/netip"

	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

// The population of issue 11: the distributed trawler's sources, users who
// first appear during an attack, a NAT office and a webmail front end. All
// addresses are apart from the seed's attackers (198.18.1.0/24,
// 2001:db8:bad::/48) and the returning users (198.18.2.0/24,
// 2001:db8:1::/48), in /48s of their own, so that no IPv6 escalation of one
// group can cover another.
var (
	// OfficeAddr is the NAT gateway in front of the office's 50 users.
	OfficeAddr = netip.MustParseAddr("198.18.5.1")
	// WebmailAddr is the webmail front end, one IMAP login per request.
	WebmailAddr = netip.MustParseAddr("198.18.6.1")
)

// trawlerAddr is the i-th trawler source of a family: IPv4 from
// 198.18.64.0/18, IPv6 each in its own /64, ten /64s to a /48 (a botnet
// spread over many networks, not one hoster's /48).
func trawlerAddr(i int, v6 bool) netip.Addr {
	if !v6 {
		return netip.AddrFrom4([4]byte{198, 18, byte(64 + i/250), byte(1 + i%250)})
	}
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:%x::1", 0x7000+i/10, i%10+1))
}

// newUserAddr is the i-th fresh address of a family for a new user:
// IPv4 from 198.19.0.0/16, IPv6 each in its own /64 of 2001:db8:e::/48.
func newUserAddr(i int, v6 bool) netip.Addr {
	if !v6 {
		return netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(1 + i%250)})
	}
	return netip.MustParseAddr(fmt.Sprintf("2001:db8:e:%x::1", i+1))
}

// buildPopulation fills the trawlers, the new users, the office and the
// webmail users, and returns the addresses the client side needs.
func (w *World) buildPopulation(tag string) []netip.Addr {
	var addrs []netip.Addr
	for i := 0; i < max(w.opts.TrawlersV4, w.opts.TrawlersV6); i++ {
		if i < w.opts.TrawlersV4 {
			w.Trawlers = append(w.Trawlers, trawlerAddr(i, false))
		}
		if i < w.opts.TrawlersV6 {
			w.Trawlers = append(w.Trawlers, trawlerAddr(i, true))
		}
	}
	addrs = append(addrs, w.Trawlers...)
	// v4, v6, v6, v4, ...: a probe alternating IMAP and POP3 attempt by
	// attempt then gives each family both protocols.
	var n4, n6 int
	for i := 0; i < w.opts.NewUsers; i++ {
		var a netip.Addr
		if i%4 == 0 || i%4 == 3 {
			a = newUserAddr(n4, false)
			n4++
		} else {
			a = newUserAddr(n6, true)
			n6++
		}
		w.NewUsers = append(w.NewUsers, mailload.User{Name: fmt.Sprintf("new%04d", i+1), Pass: "new-" + tag + "-" + fmt.Sprint(i+1), Src: a})
		addrs = append(addrs, a)
	}
	for i := 0; i < w.opts.OfficeUsers; i++ {
		w.Office = append(w.Office, mailload.User{Name: fmt.Sprintf("office%02d", i+1), Pass: "office-" + tag + "-" + fmt.Sprint(i+1), Src: OfficeAddr})
	}
	for i := 0; i < w.opts.WebmailUsers; i++ {
		w.Webmail = append(w.Webmail, mailload.User{Name: fmt.Sprintf("web%02d", i+1), Pass: "web-" + tag + "-" + fmt.Sprint(i+1), Src: WebmailAddr})
	}
	if len(w.Office) > 0 {
		addrs = append(addrs, OfficeAddr)
	}
	if len(w.Webmail) > 0 {
		addrs = append(addrs, WebmailAddr)
	}
	return addrs
}

// AllUsers is every account Dovecot knows.
func (w *World) AllUsers() []mailload.User {
	var all []mailload.User
	for _, g := range [][]mailload.User{w.Users, w.NewUsers, w.Office, w.Webmail} {
		all = append(all, g...)
	}
	return all
}

// Legitimate is every address a legitimate user logs in from.
func (w *World) Legitimate() []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, u := range w.AllUsers() {
		if !seen[u.Src] {
			seen[u.Src] = true
			out = append(out, u.Src)
		}
	}
	return out
}
