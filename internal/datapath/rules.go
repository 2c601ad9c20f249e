package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// Action is what a CIDR rule does to matching sources.
type Action uint8

const (
	// ActionAllow passes the source untouched: never counted, never banned.
	ActionAllow = Action(bpf.XdpguardCidrActionCIDR_ALLOW)
	// ActionDeny drops the source.
	ActionDeny = Action(bpf.XdpguardCidrActionCIDR_DENY)
)

func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionDeny:
		return "deny"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// MarshalText makes Action readable in JSON.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText accepts "allow" and "deny".
func (a *Action) UnmarshalText(b []byte) error {
	switch string(b) {
	case "allow":
		*a = ActionAllow
	case "deny":
		*a = ActionDeny
	default:
		return fmt.Errorf("unknown rule action %q", b)
	}
	return nil
}

// Rule is one entry of the CIDR trie. The longest matching prefix decides,
// so an allowed host inside a denied network passes, and the other way round.
type Rule struct {
	Prefix  netip.Prefix `json:"prefix"`
	Action  Action       `json:"action"`
	Origin  Origin       `json:"origin"`
	Reason  Reason       `json:"reason"`
	Expires time.Time    `json:"expires,omitzero"`
}

// Allow adds an allow rule for p (ttl 0: permanent). Allowed sources are
// passed before any ban is looked at.
func (g *Guard) Allow(p netip.Prefix, ttl time.Duration) error {
	p, err := normalize(p)
	if err != nil {
		return err
	}
	r := bpf.XdpguardCidrRule{Action: uint8(ActionAllow), Origin: uint8(OriginManual)}
	if ttl > 0 {
		r.ExpiresNs = monoNow() + uint64(ttl)
	}
	if err := g.writeRule(p, r); err != nil {
		return err
	}
	return g.recountRules()
}

// RemoveAllow removes the allow rule on exactly p.
func (g *Guard) RemoveAllow(p netip.Prefix) error {
	p, err := normalize(p)
	if err != nil {
		return err
	}
	if r, ok, err := g.lookupRule(p); err != nil || !ok || r.Action != uint8(ActionAllow) {
		return fmt.Errorf("remove allow %s: no such rule", p)
	}
	if err := g.deleteRule(p); err != nil {
		return err
	}
	return g.recountRules()
}

// Rules lists the CIDR trie, allow and deny, including expired entries.
func (g *Guard) Rules() ([]Rule, error) { return g.rules(newClock()) }

func (g *Guard) rules(c clock) ([]Rule, error) {
	table, err := g.ruleTable()
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(table))
	for p, v := range table {
		out = append(out, Rule{Prefix: p, Action: Action(v.Action), Origin: Origin(v.Origin),
			Reason: Reason(v.Reason), Expires: c.wall(v.ExpiresNs)})
	}
	return out, nil
}

// ruleTable reads both tries whole. A lookup on an LPM trie answers with the
// longest matching prefix, not the exact one, so the exact key of a rule is
// found by walking; callers that touch many rules walk once and use this.
func (g *Guard) ruleTable() (map[netip.Prefix]bpf.XdpguardCidrRule, error) {
	table := map[netip.Prefix]bpf.XdpguardCidrRule{}
	var k4 bpf.XdpguardCidrV4Key
	var k6 bpf.XdpguardCidrV6Key
	var v bpf.XdpguardCidrRule
	it := g.maps.CidrV4.Iterate()
	for it.Next(&k4, &v) {
		var a [4]byte
		putNative32(a[:], k4.Addr)
		table[netip.PrefixFrom(netip.AddrFrom4(a), int(k4.Prefixlen))] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read IPv4 CIDR rules: %w", err)
	}
	it = g.maps.CidrV6.Iterate()
	for it.Next(&k6, &v) {
		table[netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Prefixlen))] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read IPv6 CIDR rules: %w", err)
	}
	return table, nil
}

// putRule writes r under p; table is the rules as they were, for undo.
func (g *Guard) putRule(p netip.Prefix, r bpf.XdpguardCidrRule, table map[netip.Prefix]bpf.XdpguardCidrRule, undo *[]func()) error {
	if err := g.writeRule(p, r); err != nil {
		return err
	}
	if undo != nil {
		old, existed := table[p]
		*undo = append(*undo, func() {
			if existed {
				g.writeRule(p, old)
			} else {
				g.deleteRule(p)
			}
		})
	}
	return nil
}

func (g *Guard) writeRule(p netip.Prefix, r bpf.XdpguardCidrRule) error {
	var err error
	if p.Addr().Is4() {
		k := v4Key(p)
		err = g.maps.CidrV4.Put(&k, &r)
	} else {
		k := v6Key(p)
		err = g.maps.CidrV6.Put(&k, &r)
	}
	if err != nil {
		return fmt.Errorf("add CIDR rule %s: %w", p, privilegeHint(err))
	}
	return nil
}

// lookupRule finds the rule on exactly p.
func (g *Guard) lookupRule(p netip.Prefix) (bpf.XdpguardCidrRule, bool, error) {
	table, err := g.ruleTable()
	if err != nil {
		return bpf.XdpguardCidrRule{}, false, err
	}
	r, ok := table[p]
	return r, ok, nil
}

func (g *Guard) deleteRule(p netip.Prefix) error {
	var err error
	if p.Addr().Is4() {
		k := v4Key(p)
		err = g.maps.CidrV4.Delete(&k)
	} else {
		k := v6Key(p)
		err = g.maps.CidrV6.Delete(&k)
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete CIDR rule %s: %w", p, privilegeHint(err))
	}
	return nil
}

// recountRules tells the program how many rules each trie holds, so it skips
// an empty trie. Counting the trie, instead of keeping a tally, stays right
// when the daemon and a CLI command change rules at the same time.
func (g *Guard) recountRules() error {
	table, err := g.ruleTable()
	if err != nil {
		return err
	}
	var n4, n6 uint32
	for p := range table {
		if p.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	if err := g.maps.CidrCount.Put(uint32(0), n4); err != nil {
		return fmt.Errorf("update CIDR rule count: %w", err)
	}
	if err := g.maps.CidrCount.Put(uint32(1), n6); err != nil {
		return fmt.Errorf("update CIDR rule count: %w", err)
	}
	return nil
}

func v4Key(p netip.Prefix) bpf.XdpguardCidrV4Key {
	a := p.Addr().As4()
	return bpf.XdpguardCidrV4Key{Prefixlen: uint32(p.Bits()), Addr: native32(a[:])}
}

func v6Key(p netip.Prefix) bpf.XdpguardCidrV6Key {
	return bpf.XdpguardCidrV6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
}
