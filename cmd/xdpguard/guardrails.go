package main

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/hostaddr"
)

// rails are the checks a manual ban passes before anything reaches the
// kernel: one typo in `xdpguard ban` can drop every packet, the operator's
// SSH session included, and nothing on the host would then let them undo it.
type rails struct {
	widest4, widest6 int                 // guard_rails.widest_ban_v4/v6
	gran4, gran6     int                 // the kernel's ban granularity
	own              map[netip.Addr]bool // this host's addresses
	ssh              netip.Addr          // the SSH client of this session, if any
	allow            []netip.Prefix      // kernel allow rules and the file's
}

// newRails gathers what the checks need from the configuration, the host,
// the environment and the kernel.
func newRails(cfg config.Config, g *datapath.Guard) (rails, error) {
	r := rails{widest4: cfg.GuardRails.WidestBanV4, widest6: cfg.GuardRails.WidestBanV6, own: hostaddr.Set(),
		ssh: sshClient(os.Getenv("SSH_CONNECTION"))}
	s, err := g.Settings()
	if err != nil {
		return rails{}, err
	}
	r.gran4, r.gran6 = s.PrefixV4, s.PrefixV6
	rules, err := g.Rules()
	if err != nil {
		return rails{}, err
	}
	now := time.Now()
	for _, rule := range rules {
		if rule.Action == datapath.ActionAllow && (rule.Expires.IsZero() || now.Before(rule.Expires)) {
			r.allow = append(r.allow, rule.Prefix)
		}
	}
	r.allow = append(r.allow, cfg.Allow...)
	return r, nil
}

// prefixSet answers "which member contains this prefix" with one map
// lookup per prefix length in use among the members.
type prefixSet struct {
	set  map[netip.Prefix]bool
	lens [2][]int // by family: 0 IPv4, 1 IPv6
}

func newPrefixSet(ps []netip.Prefix) prefixSet {
	s := prefixSet{set: make(map[netip.Prefix]bool, len(ps))}
	for _, p := range ps {
		p = p.Masked()
		s.set[p] = true
		f := family(p.Addr())
		if !slices.Contains(s.lens[f], p.Bits()) {
			s.lens[f] = append(s.lens[f], p.Bits())
		}
	}
	for f := range s.lens {
		slices.Sort(s.lens[f])
	}
	return s
}

// containing returns the shortest member that contains p, if any.
func (s prefixSet) containing(p netip.Prefix) (netip.Prefix, bool) {
	for _, l := range s.lens[family(p.Addr())] {
		if l > p.Bits() {
			break
		}
		if q := netip.PrefixFrom(p.Addr(), l).Masked(); s.set[q] {
			return q, true
		}
	}
	return netip.Prefix{}, false
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// check returns why each refused ban is refused, and a note for each ban
// that an allow rule shadows (it would be in the kernel and drop nothing).
// It checks the prefixes as the kernel will hold them: a single address is
// banned as its /prefix_v4 or /prefix_v6 network.
func (r rails) check(ps []netip.Prefix) (refused, shadowed []string) {
	// Index what must not be covered by its network at each ban length in
	// use, so that each ban costs one lookup in a small map: a list of a
	// million bans is checked in milliseconds, not against every rule.
	type guarded struct {
		p    netip.Prefix
		what string
	}
	var points []guarded
	for _, a := range slices.SortedFunc(maps.Keys(r.own), netip.Addr.Compare) {
		points = append(points, guarded{netip.PrefixFrom(a, a.BitLen()), "this host's address " + a.String()})
	}
	if r.ssh.IsValid() {
		points = append(points, guarded{netip.PrefixFrom(r.ssh, r.ssh.BitLen()),
			r.ssh.String() + ", the SSH client of this session (SSH_CONNECTION)"})
	}
	for _, q := range r.allow {
		points = append(points, guarded{q, "the allowed prefix " + q.String()})
	}
	lens := newPrefixSet(nil).lens
	for _, p := range ps {
		if w := r.widest(p.Addr()); p.Bits() < w {
			key := "widest_ban_v4"
			if !p.Addr().Is4() {
				key = "widest_ban_v6"
			}
			refused = append(refused, fmt.Sprintf("%s is wider than /%d (guard_rails.%s)", p, w, key))
		}
		p = r.effective(p)
		if f := family(p.Addr()); !slices.Contains(lens[f], p.Bits()) {
			lens[f] = append(lens[f], p.Bits())
		}
	}
	covered := map[netip.Prefix][]string{}
	for _, g := range points {
		for _, l := range lens[family(g.p.Addr())] {
			if l <= g.p.Bits() {
				k := netip.PrefixFrom(g.p.Addr(), l).Masked()
				covered[k] = append(covered[k], g.what)
			}
		}
	}
	allowed := newPrefixSet(r.allow)
	for _, p := range ps {
		p = r.effective(p)
		for _, what := range covered[p] {
			refused = append(refused, fmt.Sprintf("%s covers %s", p, what))
		}
		if q, ok := allowed.containing(p); ok && q != p {
			shadowed = append(shadowed, fmt.Sprintf("%s is inside the allowed prefix %s: the ban drops nothing while that allow rule stands", p, q))
		}
	}
	return refused, shadowed
}

func (r rails) widest(a netip.Addr) int {
	if a.Is4() {
		return r.widest4
	}
	return r.widest6
}

// effective is p as the kernel bans it: masked to the ban granularity when
// it is longer, as is.
func (r rails) effective(p netip.Prefix) netip.Prefix {
	gran := r.gran6
	if p.Addr().Is4() {
		gran = r.gran4
	}
	if p.Bits() > gran {
		return netip.PrefixFrom(p.Addr(), gran).Masked()
	}
	return p
}

// sshClient is the client address of SSH_CONNECTION ("client port server
// port"), or the zero Addr.
func sshClient(env string) netip.Addr {
	f := strings.Fields(env)
	if len(f) == 0 {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(f[0])
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// summary joins reasons for one line: the first few, then a count.
func summary(lines []string, max int) string {
	if len(lines) <= max {
		return strings.Join(lines, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(lines[:max], "; "), len(lines)-max)
}
