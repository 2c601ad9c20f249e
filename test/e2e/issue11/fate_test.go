//go:build e2e

package issue11

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// fate is what became of an attack's sources by the end of a phase. A
// source is banned if the defence banned it while the attack ran, and
// starved if Dovecot accepted none of its connections to the mail ports
// in any of the server's samples of the phase's last starvedWindow:
// whatever it tried, it held no login slot. Queued counts the starved that
// still had a connection waiting in an accept queue then (behind the
// users' queues, for a slot it did not get). Both are measured on the
// server, not from the attacker's side.
type fate struct {
	Sources int          `json:"sources"`
	Banned  int          `json:"banned"`
	Starved int          `json:"starved"` // starved and not banned
	Queued  int          `json:"queued"`  // of Starved
	Neither []netip.Addr `json:"neither,omitempty"`
	// When each source became banned or starved (starved: the sample
	// after the last in which it held a connection), from the attack's
	// start: the median and the last. Last is the time by which the whole
	// attack was stopped only if Neither is empty.
	Median time.Duration `json:"median_ns"`
	Last   time.Duration `json:"last_ns"`
}

// computeFate classifies sources; bannedAt says whether and since when a
// source was banned (a zero time: banned, time unknown).
func computeFate(res *phaseResult, sources []netip.Addr, bannedAt func(netip.Addr) (time.Time, bool)) *fate {
	f := &fate{Sources: len(sources)}
	var at []time.Duration
	for _, a := range sources {
		var when time.Duration = -1
		bt, banned := bannedAt(a)
		if banned && !bt.IsZero() {
			when = max(bt.Sub(res.Start), 0)
		}
		last, held := res.conns.lastHeld(a)
		if starved := !held || last.Before(res.End.Add(-starvedWindow)); starved {
			st := time.Duration(0)
			if held {
				st = last.Add(connSampleEvery).Sub(res.Start)
			}
			if when < 0 || st < when {
				when = st
			}
			if !banned {
				f.Starved++
				if q, ok := res.conns.lastConnected(a); ok && !q.Before(res.End.Add(-starvedWindow)) {
					f.Queued++
				}
			}
		} else if !banned {
			f.Neither = append(f.Neither, a)
			continue
		}
		if banned {
			f.Banned++
		}
		if when >= 0 {
			at = append(at, when)
		}
	}
	if len(at) > 0 {
		slices.Sort(at)
		f.Median, f.Last = at[len(at)/2], at[len(at)-1]
	}
	return f
}

// String is the table's cell: banned + starved of all, and when.
func (f *fate) String() string {
	if f == nil {
		return "-"
	}
	s := fmt.Sprintf("%d+%d/%d", f.Banned, f.Starved, f.Sources)
	if len(f.Neither) == 0 && f.Last > 0 {
		s += fmt.Sprintf(" by %.1fs (p50 %.1fs)", f.Last.Seconds(), f.Median.Seconds())
	}
	return s
}
