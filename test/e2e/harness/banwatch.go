package harness

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// BanWatch polls `xdpguard status --json` every 500 ms and remembers every
// ban it saw, so a ban that expired or was lifted still counts. It watches
// the world's attackers, trawlers, the slow attacker and every legitimate
// source; a legitimate source seen banned is a false ban.
type BanWatch struct {
	logf  func(string, ...any)
	x     *Xdpguard
	legit map[netip.Addr]bool
	mu    sync.Mutex
	seen  map[netip.Addr]StatusBan
	first map[netip.Addr]time.Time
	wrong map[netip.Addr]StatusBan
	all   map[netip.Prefix]SeenBan // every ban status ever showed
	errs  int                      // failed status calls
	poll  *Poller
	addrs []netip.Addr
}

// SeenBan is a ban as status first showed it.
type SeenBan struct {
	StatusBan
	First time.Time `json:"first_seen"`
}

// WatchBans starts watching x's bans.
func (w *World) WatchBans(x *Xdpguard) *BanWatch {
	bw := &BanWatch{logf: w.opts.Logf, x: x, legit: map[netip.Addr]bool{}, seen: map[netip.Addr]StatusBan{},
		first: map[netip.Addr]time.Time{}, wrong: map[netip.Addr]StatusBan{}, all: map[netip.Prefix]SeenBan{}}
	for _, a := range w.Legitimate() {
		bw.legit[a] = true
	}
	bw.addrs = append(append(append(append(bw.addrs, w.Attackers...), w.Trawlers...), Slow), w.Legitimate()...)
	bw.poll = StartPoller(500*time.Millisecond, bw.sample)
	return bw
}

func (bw *BanWatch) sample() {
	st, err := bw.x.Status()
	bw.mu.Lock()
	defer bw.mu.Unlock()
	if err != nil {
		bw.errs++
		if bw.errs == 1 && bw.logf != nil {
			bw.logf("xdpguard status failed (further failures are only counted): %v", err)
		}
		return
	}
	now := time.Now()
	for _, b := range st.Bans {
		if _, ok := bw.all[b.Prefix]; !ok {
			bw.all[b.Prefix] = SeenBan{StatusBan: b, First: now}
		}
	}
	for _, a := range bw.addrs {
		b, ok := st.Banned(a)
		if !ok {
			continue
		}
		if _, had := bw.seen[a]; !had {
			bw.first[a] = now
		}
		bw.seen[a] = b
		if bw.legit[a] {
			bw.wrong[a] = b
		}
	}
}

// Stop stops the polling; it may be called more than once.
func (bw *BanWatch) Stop() { bw.poll.Stop() }

// Get is the last ban status showed for a, if any.
func (bw *BanWatch) Get(a netip.Addr) (StatusBan, bool) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	b, ok := bw.seen[a]
	return b, ok
}

// FirstBan is when a was first seen banned (zero: never).
func (bw *BanWatch) FirstBan(a netip.Addr) time.Time {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return bw.first[a]
}

// Snapshot is every watched address seen banned so far.
func (bw *BanWatch) Snapshot() map[netip.Addr]StatusBan {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	out := map[netip.Addr]StatusBan{}
	for k, v := range bw.seen {
		out[k] = v
	}
	return out
}

// LegitBannedBy lists the legitimate sources banned, first seen by until.
func (bw *BanWatch) LegitBannedBy(until time.Time) []string {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	var out []string
	for a, b := range bw.wrong {
		if !bw.first[a].After(until) {
			out = append(out, fmt.Sprintf("%s (%s by %s: %s)", a, b.Prefix, b.Origin, b.Reason))
		}
	}
	slices.Sort(out)
	return out
}

// FalseBans is every legitimate source seen banned.
func (bw *BanWatch) FalseBans() map[netip.Addr]StatusBan {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return bw.wrong
}

// All is every ban status showed, by first sighting.
func (bw *BanWatch) All() []SeenBan {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	out := make([]SeenBan, 0, len(bw.all))
	for _, b := range bw.all {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b SeenBan) int { return a.First.Compare(b.First) })
	return out
}

// Errs counts the failed status calls.
func (bw *BanWatch) Errs() int {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return bw.errs
}
