package datapath

import "time"

// Sweep deletes expired bans and rules. The kernel already ignores them;
// sweeping returns their memory, and keeps the IPv4 table's lookups short.
// An IPv6 source the kernel re-bans between the read and the delete loses
// that ban, and is banned again at its next burst.
func (g *Guard) Sweep() (int, error) {
	n := 0
	if err := g.writeTable(func(t *table4) error {
		n = t.sweep(tickOf(monoNow()))
		return nil
	}); err != nil {
		return 0, err
	}
	now := time.Now()
	d, err := g.unbanWhere(func(b Ban) bool {
		v4table := b.Prefix.Addr().Is4() && !b.CIDR
		return !v4table && !b.Expires.IsZero() && !b.Expires.After(now)
	})
	n += d
	if err != nil {
		return n, err
	}
	rules, err := g.Rules()
	if err != nil {
		return n, err
	}
	for _, r := range rules {
		if r.Action == ActionAllow && !r.Expires.IsZero() && !r.Expires.After(now) {
			if g.deleteRule(r.Prefix) == nil {
				n++
			}
		}
	}
	return n, g.recountRules()
}
