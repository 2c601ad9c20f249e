package daemon

import (
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// escState remembers, per wide IPv6 prefix (ipv6_escalation.prefix), the
// banned sources inside it and when each was last banned.
type escState struct {
	inside map[netip.Prefix]map[netip.Prefix]time.Time
}

// escalate notes bans and bans the wide IPv6 prefix around them once
// ipv6_escalation.offenders distinct sources inside it were banned within
// the window. It never bans a prefix holding a known-good source, an
// allowed one or one of the host's addresses.
func (d *Daemon) escalate(banned []netip.Prefix, now time.Time) {
	x := d.cfg.IPv6Escalation
	if !x.Enabled || x.Prefix >= d.cfg.Kernel.PrefixV6 {
		return
	}
	if d.esc.inside == nil {
		d.esc.inside = map[netip.Prefix]map[netip.Prefix]time.Time{}
	}
	cut := now.Add(-x.Window)
	var wide []netip.Prefix
	for _, p := range banned {
		if !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() <= x.Prefix {
			continue
		}
		w, _ := p.Addr().Prefix(x.Prefix)
		m := d.esc.inside[w]
		if m == nil {
			m = map[netip.Prefix]time.Time{}
			d.esc.inside[w] = m
		}
		m[p] = now
		for q, t := range m {
			if t.Before(cut) {
				delete(m, q)
			}
		}
		if len(m) >= x.Offenders && !d.coversGood(w) {
			wide = append(wide, w)
		}
	}
	for _, w := range wide {
		n := len(d.esc.inside[w])
		delete(d.esc.inside, w)
		dur, offence := d.engine.History().Record(w, now, datapath.ReasonNoAuth, datapath.DetectorIPv6Escalation)
		if err := d.guard.Ban(w, dur, datapath.OriginLog, datapath.ReasonNoAuth); err != nil {
			d.log.Error("ban failed", "prefix", w, "error", err)
			continue
		}
		d.metrics.banned(datapath.OriginLog, 0)
		d.metrics.escalated()
		d.remember(datapath.Ban{Prefix: w, Expires: now.Add(dur), Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth,
			Detector: datapath.DetectorIPv6Escalation, Events: n, First: now.Add(-x.Window), Last: now, Offence: offence})
		d.dirty = true
		d.log.Info("banned", "prefix", w, "origin", "log", "reason", "escalated", "sources", n, "for", dur)
		d.kill(w)
	}
	// Forget wide prefixes with nothing recent, so the map stays small.
	for w, m := range d.esc.inside {
		for q, t := range m {
			if t.Before(cut) {
				delete(m, q)
			}
		}
		if len(m) == 0 {
			delete(d.esc.inside, w)
		}
	}
}

// coversGood reports whether banning p would hit a known-good source, an
// allowed prefix or the host itself.
func (d *Daemon) coversGood(p netip.Prefix) bool {
	if d.kg.store != nil && d.kg.store.Overlaps(p) {
		return true
	}
	for _, a := range d.cfg.Allow {
		if p.Overlaps(a) {
			return true
		}
	}
	for a := range d.own {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
