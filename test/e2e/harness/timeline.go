package harness

import (
	"net/netip"
	"strings"
	"time"
)

// Timeline is what `xdpguard run`'s own log says happened, by the lines'
// own times: when each prefix was first banned, and the spells of login
// slot pressure.
type Timeline struct {
	Bans     map[netip.Prefix]time.Time
	Pressure []Spell
}

// Spell is one spell of slot pressure; To is zero while it lasts.
type Spell struct{ From, To time.Time }

// ReadTimeline parses the daemon's log (slog's text format).
func ReadTimeline(log string) Timeline {
	tl := Timeline{Bans: map[netip.Prefix]time.Time{}}
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], "time=") {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
		if err != nil {
			continue
		}
		switch {
		case f[2] == "msg=banned":
			for _, kv := range f[3:] {
				if v, ok := strings.CutPrefix(kv, "prefix="); ok {
					if p, err := netip.ParsePrefix(v); err == nil {
						if _, seen := tl.Bans[p]; !seen {
							tl.Bans[p] = at
						}
					}
				}
			}
		case strings.Contains(line, `msg="login slots under pressure`):
			tl.Pressure = append(tl.Pressure, Spell{From: at})
		case strings.Contains(line, `msg="login slot pressure over"`):
			if n := len(tl.Pressure); n > 0 && tl.Pressure[n-1].To.IsZero() {
				tl.Pressure[n-1].To = at
			}
		}
	}
	return tl
}

// BannedDuring is when the log first shows a ban of each of sources
// strictly between from and to: a ban of its host prefix (/32, /64) or of
// a wider one that holds it (an escalation). It returns the earliest and
// the latest of those times and how many sources were banned.
func (tl Timeline) BannedDuring(sources []netip.Addr, from, to time.Time) (first, last time.Time, n int) {
	for _, s := range sources {
		bits := 64
		if s.Is4() {
			bits = 32
		}
		at, ok := time.Time{}, false
		for p, t := range tl.Bans {
			if p.Contains(s) && p.Bits() <= bits && t.After(from) && t.Before(to) && (!ok || t.Before(at)) {
				at, ok = t, true
			}
		}
		if !ok {
			continue
		}
		n++
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	return first, last, n
}

// PressureDuring reports whether the daemon saw slot pressure at some
// time between from and to, and from when in that span: a spell that
// began before from (the last attack's, or the legitimate load's) and
// still held counts from from. A daemon logs only when a spell begins,
// so reading the begin lines alone misses a spell carried over.
func (tl Timeline) PressureDuring(from, to time.Time) (time.Time, bool) {
	for _, s := range tl.Pressure {
		if s.From.After(to) || (!s.To.IsZero() && s.To.Before(from)) {
			continue
		}
		if s.From.Before(from) {
			return from, true
		}
		return s.From, true
	}
	return time.Time{}, false
}
