package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// ErrNotBanned is returned by Unban for a prefix with no ban.
var ErrNotBanned = errors.New("not banned")

// Ban bans p for ttl (0: until unbanned). A prefix at least as long as the
// ban granularity is masked to it and goes into the exact-match map; a wider
// one becomes a deny rule in the CIDR trie. Banning again replaces the old
// ban, so the last deadline wins.
func (g *Guard) Ban(p netip.Prefix, ttl time.Duration, origin Origin, reason Reason) error {
	return g.BanMany([]netip.Prefix{p}, ttl, origin, reason)
}

// EnsureBan bans p for ttl unless a ban of p is in force already, and
// says whether it did. The daemon calls it for each ban the program made
// on its own: the program leaves one out of the table when the table is
// full or a userspace writer holds its bucket (Stats.BanTableFull,
// Stats.BanDeferred), and announces it all the same.
func (g *Guard) EnsureBan(p netip.Prefix, ttl time.Duration, origin Origin, reason Reason) (bool, error) {
	if _, ok, err := g.BanOf(p.Addr()); err != nil || ok {
		return false, err
	}
	return true, g.Ban(p, ttl, origin, reason)
}

// BanMany bans every prefix, with batch map updates. Either all of them are
// in the kernel when it returns nil, or none of the new ones are.
func (g *Guard) BanMany(ps []netip.Prefix, ttl time.Duration, origin Origin, reason Reason) error {
	if ttl < 0 {
		return fmt.Errorf("ban duration %v is negative", ttl)
	}
	s, err := g.Settings()
	if err != nil {
		return err
	}
	deadline := uint64(0)
	if ttl > 0 {
		deadline = monoNow() + uint64(ttl)
	}
	val := bpf.XdpguardBan{ExpiresNs: deadline, Origin: uint8(origin), Reason: uint8(reason)}

	// Most lists are IPv4 addresses: room for all, not copies as it grows.
	keys4 := make([][4]byte, 0, len(ps))
	var keys6 [][16]byte
	var cidrs []netip.Prefix
	for _, p := range ps {
		p, err := normalize(p)
		if err != nil {
			return err
		}
		switch gran := s.Granularity().Bits(p.Addr()); {
		case p.Bits() < gran:
			cidrs = append(cidrs, p)
		case p.Addr().Is4():
			keys4 = append(keys4, netip.PrefixFrom(p.Addr(), gran).Masked().Addr().As4())
		default:
			keys6 = append(keys6, netip.PrefixFrom(p.Addr(), gran).Masked().Addr().As16())
		}
	}

	var undo []func()
	rollback := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return err
	}
	if err := g.put4(keys4, deadline, origin, reason, &undo); err != nil {
		return rollback(err)
	}
	if err := batchPut(g.maps.BansV6, keys6, val, &undo); err != nil {
		return rollback(fmt.Errorf("ban %d IPv6 sources: %w", len(keys6), privilegeHint(err)))
	}
	rule := bpf.XdpguardCidrRule{ExpiresNs: deadline, Action: uint8(bpf.XdpguardCidrActionCIDR_DENY), Origin: uint8(origin), Reason: uint8(reason)}
	if len(cidrs) > 0 {
		table, err := g.ruleTable()
		if err != nil {
			return rollback(err)
		}
		for _, p := range cidrs {
			if err := g.putRule(p, rule, table, &undo); err != nil {
				return rollback(err)
			}
		}
	}
	if len(cidrs) > 0 {
		return g.recountRules()
	}
	return nil
}

// put4 bans keys in the IPv4 table, recording how to restore what was there.
func (g *Guard) put4(keys [][4]byte, deadline uint64, origin Origin, reason Reason, undo *[]func()) error {
	if len(keys) == 0 {
		return nil
	}
	for _, k := range keys {
		if !used(key4(k)) {
			return fmt.Errorf("ban %s: %w", netip.AddrFrom4(k), errUnbannable4)
		}
	}
	tick := tickOf(monoNow())
	// What the undo needs: the keys written, in order, and the bans they
	// replaced, which for a list of new bans is none. A record per key
	// was 16 MB of fresh memory for a million.
	type was struct {
		at   int // index in order
		prev entry
	}
	var order []uint32
	var replaced []was
	written := 0
	*undo = append(*undo, func() {
		g.writeTable(func(t *table4) error {
			r := len(replaced) - 1
			for i := written - 1; i >= 0; i-- {
				if r >= 0 && replaced[r].at == i {
					t.put(replaced[r].prev, tick)
					r--
				} else {
					t.remove(order[i], tick)
				}
			}
			return nil
		})
	})
	return g.writeTable(func(t *table4) error {
		// A table already at its side's size cannot grow: no need to count.
		if t.buckets() < t.side {
			if n := t.count(tick) + len(keys); !fits(uint32(t.buckets()), uint64(n)) {
				var err error
				if t, err = g.grow(t, n, tick); err != nil {
					return err
				}
			}
		}
		exp := expOf(deadline)
		order = byBucket(t, keys)
		for i, key := range order {
			if prev, had := t.get(key, tick); had {
				prev.key = key
				replaced = append(replaced, was{i, prev})
			}
			if err := t.put(entry{key: key, exp: exp, origin: uint8(origin), reason: uint8(reason)}, tick); err != nil {
				return fmt.Errorf("ban %s: %w", addr4(key), err)
			}
			written = i + 1
		}
		return nil
	})
}

// writeTable runs fn on the IPv4 table in use, under lockWrites.
func (g *Guard) writeTable(fn func(*table4) error) error {
	unlock, err := g.lockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	t, err := g.table()
	if err != nil {
		return err
	}
	return fn(t)
}

// Effective returns the prefixes the kernel holds bans on ps under: each
// masked to the ban granularity, or itself when wider (a CIDR rule). When
// none changes it returns ps itself, not a copy: a million addresses at
// the default granularity are 32 MB that need not be touched again.
func (g *Guard) Effective(ps []netip.Prefix) ([]netip.Prefix, error) {
	s, err := g.Settings()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for i, p := range ps {
		q, err := normalize(p)
		if err != nil {
			return nil, err
		}
		if gran := s.Granularity().Bits(q.Addr()); q.Bits() >= gran {
			q = netip.PrefixFrom(q.Addr(), gran).Masked()
		}
		if out == nil && q != p {
			out = make([]netip.Prefix, len(ps))
			copy(out, ps[:i])
		}
		if out != nil {
			out[i] = q
		}
	}
	if out == nil {
		return ps, nil
	}
	return out, nil
}

// Unban lifts the ban on p: the exact ban its masked address falls under, or
// the prefix ban on exactly p.
func (g *Guard) Unban(p netip.Prefix) error {
	p, err := normalize(p)
	if err != nil {
		return err
	}
	s, err := g.Settings()
	if err != nil {
		return err
	}
	gran := s.Granularity().Bits(p.Addr())
	if p.Bits() < gran {
		if r, ok, err := g.lookupRule(p); err != nil || !ok || r.Action != uint8(bpf.XdpguardCidrActionCIDR_DENY) {
			return fmt.Errorf("unban %s: %w", p, ErrNotBanned)
		}
		if err := g.deleteRule(p); err != nil {
			return err
		}
		return g.recountRules()
	}
	key := netip.PrefixFrom(p.Addr(), gran).Masked()
	if p.Addr().Is4() {
		return g.writeTable(func(t *table4) error {
			if !t.remove(key4(key.Addr().As4()), tickOf(monoNow())) {
				return fmt.Errorf("unban %s: %w", key, ErrNotBanned)
			}
			return nil
		})
	}
	k := key.Addr().As16()
	err = g.maps.BansV6.Delete(&k)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unban %s: %w", key, ErrNotBanned)
	}
	if err != nil {
		return fmt.Errorf("unban %s: %w", key, privilegeHint(err))
	}
	return nil
}

// BanOf returns the exact ban, if any, that covers address a. It is one map
// lookup, for callers that must not walk a million bans.
func (g *Guard) BanOf(a netip.Addr) (Ban, bool, error) {
	s, err := g.Settings()
	if err != nil {
		return Ban{}, false, err
	}
	a = a.Unmap()
	key := s.Granularity().Mask(a)
	clock := newClock()
	if a.Is4() {
		t, err := g.table()
		if err != nil {
			return Ban{}, false, err
		}
		e, ok := t.get(key4(key.Addr().As4()), tickOf(clock.mono))
		if !ok {
			return Ban{}, false, nil
		}
		return Ban{Prefix: key, Origin: Origin(e.origin), Reason: Reason(e.reason), Expires: clock.wall(deadlineOf(e.exp))}, true, nil
	}
	var v bpf.XdpguardBan
	k := key.Addr().As16()
	err = g.maps.BansV6.Lookup(&k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Ban{}, false, nil
	}
	if err != nil {
		return Ban{}, false, err
	}
	b := Ban{Prefix: key, Origin: Origin(v.Origin), Reason: Reason(v.Reason), Expires: clock.wall(v.ExpiresNs)}
	return b, b.Expires.IsZero() || b.Expires.After(clock.wallNow), nil
}

// UnbanMany lifts the bans on ps with batch deletes and returns how many
// existed. Prefixes with no ban are skipped.
func (g *Guard) UnbanMany(ps []netip.Prefix) (int, error) {
	eff, err := g.Effective(ps)
	if err != nil {
		return 0, err
	}
	s, err := g.Settings()
	if err != nil {
		return 0, err
	}
	var k4 [][4]byte
	var k6 [][16]byte
	var cidrs []netip.Prefix
	n := 0
	for _, p := range eff {
		switch {
		case p.Bits() < s.Granularity().Bits(p.Addr()):
			cidrs = append(cidrs, p)
		case p.Addr().Is4():
			k4 = append(k4, p.Addr().As4())
		default:
			k6 = append(k6, p.Addr().As16())
		}
	}
	if len(cidrs) > 0 {
		table, err := g.ruleTable()
		if err != nil {
			return 0, err
		}
		for _, p := range cidrs {
			if r, ok := table[p]; ok && r.Action == uint8(ActionDeny) {
				if err := g.deleteRule(p); err != nil {
					return n, err
				}
				delete(table, p) // a list may name it twice
				n++
			}
		}
		if err := g.recountRules(); err != nil {
			return n, err
		}
	}
	if len(k4) > 0 {
		err := g.writeTable(func(t *table4) error {
			tick := tickOf(monoNow())
			for _, k := range k4 {
				if t.remove(key4(k), tick) {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	d, err := deleteKeys(g.maps.BansV6, k6)
	n += d
	if err != nil {
		return n, fmt.Errorf("unban: %w", privilegeHint(err))
	}
	return n, nil
}

// Bans lists the bans in force now, exact and prefix, sorted by address.
func (g *Guard) Bans() ([]Ban, error) {
	all, err := g.bans()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return slices.DeleteFunc(all, func(b Ban) bool { return !b.Expires.IsZero() && !b.Expires.After(now) }), nil
}

func (g *Guard) bans() ([]Ban, error) {
	s, err := g.Settings()
	if err != nil {
		return nil, err
	}
	clock := newClock()
	var out []Ban
	t, err := g.table()
	if err != nil {
		return nil, err
	}
	t.each(func(i int, e entry) {
		if at, _ := t.find(e.key); at != i {
			return // a duplicate left by a race: the first one decides
		}
		out = append(out, Ban{Prefix: netip.PrefixFrom(addr4(e.key), s.PrefixV4), Origin: Origin(e.origin),
			Reason: Reason(e.reason), Expires: clock.wall(deadlineOf(e.exp))})
	})
	if err := dump(g.maps.BansV6, func(k [16]byte, v bpf.XdpguardBan) {
		out = append(out, Ban{Prefix: netip.PrefixFrom(netip.AddrFrom16(k), s.PrefixV6), Origin: Origin(v.Origin),
			Reason: Reason(v.Reason), Expires: clock.wall(v.ExpiresNs)})
	}); err != nil {
		return nil, fmt.Errorf("list IPv6 bans: %w", err)
	}
	rules, err := g.rules(clock)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		if r.Action == ActionDeny {
			out = append(out, Ban{Prefix: r.Prefix, Origin: r.Origin, Reason: r.Reason, Expires: r.Expires, CIDR: true})
		}
	}
	slices.SortFunc(out, func(a, b Ban) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, nil
}

func (g *Guard) banCount() (int, error) {
	t, err := g.table()
	if err != nil {
		return 0, err
	}
	n := t.count(tickOf(monoNow()))
	var k []byte
	var v bpf.XdpguardBan
	it := g.maps.BansV6.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("count bans: %w", err)
	}
	return n, nil
}

// UnbanAll lifts every ban, exact and prefix, and returns how many.
func (g *Guard) UnbanAll() (int, error) {
	return g.unbanWhere(func(Ban) bool { return true })
}

// unbanWhere lifts, in batches, the bans (expired ones included) that pick
// selects.
func (g *Guard) unbanWhere(pick func(Ban) bool) (int, error) {
	all, err := g.bans()
	if err != nil {
		return 0, err
	}
	var ps []netip.Prefix
	for _, b := range all {
		if pick(b) {
			ps = append(ps, b.Prefix)
		}
	}
	if len(ps) == 0 {
		return 0, nil
	}
	return g.UnbanMany(ps)
}

func normalize(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("invalid prefix")
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: zoned addresses cannot be banned", p)
	}
	return p.Masked(), nil
}

// byBucket returns keys in the order of their buckets in t. A million
// bans written in list order touch the table at random, a cache and TLB
// miss or two each; in bucket order they sweep it once. A counting sort:
// one pass to count, one to place.
func byBucket(t *table4, keys [][4]byte) []uint32 {
	out := make([]uint32, len(keys))
	if len(keys) < 1024 {
		for i, k := range keys {
			out[i] = key4(k)
		}
		return out
	}
	at := make([]uint32, int(t.mask)+2)
	for _, k := range keys {
		at[t.hash(key4(k))&t.mask+1]++
	}
	for b := 1; b < len(at); b++ {
		at[b] += at[b-1]
	}
	for _, k := range keys {
		key := key4(k)
		b := t.hash(key) & t.mask
		out[at[b]] = key
		at[b]++
	}
	return out
}
