package config

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// KnownGood is the memory of sources that logged in successfully
// (Dovecot's Login / Logged in, Postfix SASL): they are never banned by
// the slot-holder detector or by evidence of held slots, pass the kernel's
// admission limit, and get a login slot first when the slots run out.
// Entries last Retention after the source's last login; at most
// MaxEntries are kept (the least recently seen go first). MaxEntries 0
// turns learning off.
//
// PriorityPorts maps a protected port to the port of the server's
// priority listener for it: a known-good source's new connections to the
// protected port are handed to that listener (internal/bpf/priority.c),
// which Dovecot serves before the public one when it is configured first
// in the login service (README, "Priority listeners"). Only the entries
// of protected ports are used; an empty map turns steering off.
type KnownGood struct {
	Retention     time.Duration `yaml:"retention"`
	MaxEntries    int           `yaml:"max_entries"`
	PriorityPorts PortMap       `yaml:"priority_ports"`
}

// PortMap maps ports to ports. A map in the file replaces the default one
// whole, so that {} turns priority steering off and a smaller map drops
// the other defaults.
type PortMap map[uint16]uint16

// DefaultPriorityPorts and DefaultFreshPorts are the listeners of the
// Dovecot snippet the README gives (dist/dovecot-priority.conf): the
// protected port plus 10000 and plus 20000, on loopback.
func DefaultPriorityPorts() PortMap {
	return PortMap{110: 10110, 143: 10143, 993: 10993, 995: 10995}
}

func DefaultFreshPorts() PortMap {
	return PortMap{110: 20110, 143: 20143, 993: 20993, 995: 20995}
}

// SlotEvict makes room for users while the login slots are under pressure
// (SlotPressure): when connections wait in the accept queues, the oldest
// pre-authentication connections (still in a Dovecot login process) of
// sources that are not known-good are destroyed, one per waiting
// connection, once they are Grace old and their client has left the floor
// unused for Grace (the server spoke last). (The kernel's admission limit,
// kernel.admission, is on for as long as pressure lasts.)
//
// FreshPorts maps a protected port to the port of the server's fresh
// listener for it: while the slots are under pressure, the new connections
// of sources that are not known-good go there, so that they are served
// ahead of the queue that filled the slots (internal/bpf/priority.c).
// Only the entries of protected ports are used; {} turns it off.
//
// Refuse is how long a source evicted before authenticating (by xdpguard
// or by Dovecot's "Connection queue full") has its new connections reset
// while the fresh tier is on: otherwise it reconnects at once into the
// fresh queue, ahead of the new users that queue is for. Known-good
// sources are never refused; without pressure nobody is; 0 turns it off.
//
// FreshRate is how many new sources a second the fresh queue takes, at
// most: an attack that brings hundreds of new sources at once would
// otherwise fill it ahead of the new users who come after. The others go
// to the public queue, as without the fresh tier. 0 takes every source.
type SlotEvict struct {
	Enabled    bool          `yaml:"enabled"`
	Grace      time.Duration `yaml:"grace"`
	FreshPorts PortMap       `yaml:"fresh_ports"`
	Refuse     time.Duration `yaml:"refuse"`
	FreshRate  int           `yaml:"fresh_rate"`
}

// IPv6Escalation bans the whole /Prefix (48 by default) when Offenders
// distinct banned IPv6 sources (masked to kernel.prefix_v6) inside it were
// banned within Window: an attacker with a /48 has 65,536 /64s to rotate
// through. A prefix that holds a known-good source or an allowed one is
// never banned this way. A Prefix not wider than kernel.prefix_v6 does
// nothing.
type IPv6Escalation struct {
	Enabled   bool          `yaml:"enabled"`
	Prefix    int           `yaml:"prefix"`
	Offenders int           `yaml:"offenders"`
	Window    time.Duration `yaml:"window"`
}

// Bounds of these settings.
const (
	minKnownGoodRetention = time.Hour
	// The kernel's known-good maps hold 1<<17 sources per family
	// (datapath.MaxKnownGood); the store's bound covers both families.
	maxKnownGoodEntries = 1 << 17
	minEvictGrace       = 200 * time.Millisecond
)

func (c *Config) validateLoginSlots(ps *problems) {
	if k := c.KnownGood; k.Retention < minKnownGoodRetention || k.Retention > 10*365*24*time.Hour {
		ps.add("known_good.retention", "must be %s-87600h, got %q", minKnownGoodRetention, k.Retention.String())
	}
	if n := c.KnownGood.MaxEntries; n < 0 || n > maxKnownGoodEntries {
		ps.add("known_good.max_entries", "must be 0-%d (0 turns learning off), got %d", maxKnownGoodEntries, n)
	}
	c.validatePriority(ps)
	if e := c.SlotHolders.Pressure.Evict; e.Enabled && (e.Grace < minEvictGrace || e.Grace > time.Minute) {
		ps.add("slot_holders.pressure.evict.grace", "must be %s-1m, got %q", minEvictGrace, e.Grace.String())
	}
	if n := c.SlotHolders.Pressure.Evict.FreshRate; n < 0 || n > 100000 {
		ps.add("slot_holders.pressure.evict.fresh_rate", "must be 0-100000 new sources a second (0: no limit), got %d", n)
	}
	if r := c.SlotHolders.Pressure.Evict.Refuse; r < 0 || r > 24*time.Hour {
		ps.add("slot_holders.pressure.evict.refuse", "must be 0-24h (0 turns it off), got %q", r.String())
	}
	if x := c.IPv6Escalation; x.Enabled {
		// A prefix no wider than kernel.prefix_v6 escalates nothing; it is
		// allowed, so that narrowing prefix_v6 alone stays a valid file.
		if x.Prefix < minPrefixV6 || x.Prefix > 127 {
			ps.add("ipv6_escalation.prefix", "must be %d-127, got %d", minPrefixV6, x.Prefix)
		}
		if x.Offenders < 2 {
			ps.add("ipv6_escalation.offenders", "must be >= 2, got %d", x.Offenders)
		}
		if x.Window <= 0 || x.Window > 24*time.Hour {
			ps.add("ipv6_escalation.window", "must be > 0 and at most 24h, got %q", x.Window.String())
		}
	}
}

// validatePriority: each listener port neither protected nor another
// entry's. A key that kernel.ports does not protect is unused, so that
// narrowing kernel.ports alone stays a valid file.
func (c *Config) validatePriority(ps *problems) {
	protected := map[uint16]bool{}
	for _, p := range c.Kernel.Ports {
		protected[p] = true
	}
	used := map[uint16]string{}
	for _, m := range []struct {
		key   string
		ports PortMap
	}{{"known_good.priority_ports", c.KnownGood.PriorityPorts}, {"slot_holders.pressure.evict.fresh_ports", c.SlotHolders.Pressure.Evict.FreshPorts}} {
		for _, from := range slices.Sorted(maps.Keys(m.ports)) {
			to := m.ports[from]
			key := fmt.Sprintf("%s.%d", m.key, from)
			switch {
			case to == 0 || protected[to]:
				ps.add(key, "must be a port that kernel.ports does not protect, got %d", to)
			case used[to] != "":
				ps.add(key, "port %d is already %s", to, used[to])
			}
			used[to] = key
		}
	}
}
