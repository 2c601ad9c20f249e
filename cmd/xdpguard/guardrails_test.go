package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/hostaddr"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestRails(t *testing.T) {
	r := rails{widest4: 8, widest6: 32, gran4: 32, gran6: 64,
		own:   map[netip.Addr]bool{netip.MustParseAddr("198.18.70.1"): true, netip.MustParseAddr("2001:db8:70::1"): true, netip.MustParseAddr("127.0.0.1"): true},
		ssh:   sshClient("198.18.99.9 52044 198.18.70.1 22"),
		allow: prefixes("198.18.50.0/24", "2001:db8:50::/48")}
	for _, tc := range []struct {
		ban      string
		refused  string // "" when accepted
		shadowed string // "" when not
	}{
		{"0.0.0.0/0", "0.0.0.0/0 is wider than /8 (guard_rails.widest_ban_v4)", ""},
		{"10.0.0.0/7", "wider than /8", ""},
		{"10.0.0.0/8", "", ""},
		{"::/0", "::/0 is wider than /32 (guard_rails.widest_ban_v6)", ""},
		{"2001:db8:ff00::/40", "", ""},
		{"198.18.70.0/24", "198.18.70.0/24 covers this host's address 198.18.70.1", ""},
		{"198.18.70.1/32", "covers this host's address 198.18.70.1", ""},
		{"2001:db8:70::/48", "covers this host's address 2001:db8:70::1", ""},
		{"127.0.0.0/8", "covers this host's address 127.0.0.1", ""},
		{"198.18.99.9/32", "198.18.99.9/32 covers 198.18.99.9, the SSH client of this session (SSH_CONNECTION)", ""},
		{"198.18.96.0/20", "the SSH client", ""},
		{"198.18.0.0/16", "198.18.0.0/16 covers the allowed prefix 198.18.50.0/24", ""},
		{"198.18.50.0/24", "covers the allowed prefix 198.18.50.0/24", ""},
		{"2001:db8::/32", "covers the allowed prefix 2001:db8:50::/48", ""},
		{"198.18.50.7/32", "", "198.18.50.7/32 is inside the allowed prefix 198.18.50.0/24"},
		{"2001:db8:50:1::/64", "", "inside the allowed prefix 2001:db8:50::/48"},
		{"198.18.3.3/32", "", ""},
	} {
		refused, shadowed := r.check(prefixes(tc.ban))
		got := strings.Join(refused, "; ")
		if (tc.refused == "") != (got == "") || !strings.Contains(got, tc.refused) {
			t.Errorf("ban %s: refused %q, want %q", tc.ban, got, tc.refused)
		}
		gotS := strings.Join(shadowed, "; ")
		if (tc.shadowed == "") != (gotS == "") || !strings.Contains(gotS, tc.shadowed) {
			t.Errorf("ban %s: shadowed %q, want %q", tc.ban, gotS, tc.shadowed)
		}
	}

	// The kernel bans an address as its granularity's network: with /24,
	// banning a neighbour bans the host too.
	r.gran4 = 24
	if refused, _ := r.check(prefixes("198.18.70.9/32")); len(refused) != 1 || !strings.Contains(refused[0], "198.18.70.0/24 covers this host's address") {
		t.Errorf("ban 198.18.70.9 at /24 granularity: refused %q", refused)
	}

	// A list is refused as a whole, naming every refused entry.
	refused, _ := r.check(prefixes("198.18.3.3/32", "10.0.0.0/7", "198.18.50.0/24", "203.0.113.0/24"))
	if len(refused) != 2 || !strings.Contains(refused[0], "10.0.0.0/7") || !strings.Contains(refused[1], "198.18.50.0/24") {
		t.Errorf("list: refused %q, want the width of 10.0.0.0/7 and the allowed 198.18.50.0/24", refused)
	}
}

func TestSSHClient(t *testing.T) {
	for env, want := range map[string]string{
		"198.18.99.9 52044 198.18.70.1 22":       "198.18.99.9",
		"2001:db8::9 52044 2001:db8::1 22":       "2001:db8::9",
		"::ffff:198.18.99.9 52044 198.18.70.1 2": "198.18.99.9",
		"fe80::1%eth0 52044 fe80::2%eth0 22":     "fe80::1",
		"":                                       "invalid IP",
		"garbage":                                "invalid IP",
	} {
		if got := sshClient(env).String(); got != want {
			t.Errorf("sshClient(%q) = %s, want %s", env, got, want)
		}
	}
}

// A million-entry blocklist is checked against many allow rules without
// a product of the two.
func BenchmarkRails(b *testing.B) {
	r := rails{widest4: 8, widest6: 32, gran4: 32, gran6: 64, own: hostaddr.Set()}
	for i := range 10000 {
		r.allow = append(r.allow, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	ps := make([]netip.Prefix, 1_000_000)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for b.Loop() {
		r.check(ps)
	}
}
