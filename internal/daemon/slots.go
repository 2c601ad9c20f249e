package daemon

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/crowdsec"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/sockets"
)

// slotWatch is the state of the slot-holder detector (config.SlotHolders):
// whether the login slots are under pressure, and when the next full
// connection scan is due. Only the main loop touches it.
type slotWatch struct {
	on      bool            // under pressure, as last logged
	until   time.Time       // pressure holds until then
	since   time.Time       // when this spell of pressure began
	waiting int             // connections in the accept queues, last check
	silent  int             // accepted connections quiet for pressure.idle, last scan
	full    string          // the login service Dovecot last said was full, until noted
	next    time.Time       // next full scan when not under pressure
	failing map[string]bool // what failed last time (logged once)
	// conns is the last scan's result, whose slice the next scan reuses:
	// nothing keeps an element past the check that made it.
	conns []sockets.Conn
}

const (
	queueCheck = "check the accept queues"
	connScan   = "scan the connections"
)

// slotPeriod is how often the main loop looks at the slots: the accept
// queue check when pressure is on, else the scan itself.
func slotPeriod(h config.SlotHolders) time.Duration {
	if h.Pressure.Connections > 0 {
		return min(h.Pressure.ScanInterval, h.ScanInterval)
	}
	return h.ScanInterval
}

// pressureIdle is the silence that counts under pressure; never longer
// than the usual idle.
func pressureIdle(h config.SlotHolders) time.Duration { return min(h.Pressure.Idle, h.Idle) }

// quietCount counts the connections that signal pressure: silent for the
// pressure idle since the client acknowledged all the server sent.
func quietCount(hs []sockets.Holder, h config.SlotHolders) int {
	n := 0
	for _, c := range hs {
		if c.Received <= uint64(h.MaxBytes) && c.Quiet() >= pressureIdle(h) {
			n++
		}
	}
	return n
}

// offenders counts, per source, the connections that count towards a ban:
// silent for h.Idle since the last data received, or, under pressure,
// quiet for the pressure idle since the client's acknowledgement. prefix
// masks a source, or says it is never banned. Sources holding fewer than
// h.MinConnections are left out; the rest come busiest first.
func offenders(hs []sockets.Holder, h config.SlotHolders, pressure bool, prefix func(netip.Addr) (netip.Prefix, bool)) []holding {
	per := map[netip.Prefix]int{}
	for _, c := range hs {
		if c.Received > uint64(h.MaxBytes) {
			continue
		}
		if c.Idle < h.Idle && !(pressure && c.Quiet() >= pressureIdle(h)) {
			continue
		}
		if p, ok := prefix(c.Remote); ok {
			per[p]++
		}
	}
	var out []holding
	for p, n := range per {
		if n >= h.MinConnections {
			out = append(out, holding{p, n})
		}
	}
	slices.SortFunc(out, func(a, b holding) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return a.p.Addr().Compare(b.p.Addr())
	})
	return out
}

type holding struct {
	p netip.Prefix
	n int
}

// note records what the last check and scan saw, and turns pressure on
// (or extends it) when they reach pressure.connections. It reports
// whether pressure has just begun.
func (w *slotWatch) note(now time.Time, p config.SlotPressure) bool {
	if p.Connections <= 0 || (w.waiting+w.silent < p.Connections && w.full == "") {
		return false
	}
	w.full = ""
	w.until = now.Add(p.Hold)
	if w.on {
		return false
	}
	w.on, w.since = true, now
	return true
}

// under reports whether pressure holds at now; ended is true once, when
// it has just stopped.
func (w *slotWatch) under(now time.Time) (on, ended bool) {
	if w.on && now.After(w.until) {
		w.on = false
		return false, true
	}
	return w.on, false
}

// watchSlots runs on every slot tick: the accept-queue check when
// pressure is configured, then the full connection scan when it is due
// (every scan_interval, or every tick under pressure).
func (d *Daemon) watchSlots(now time.Time) {
	h := d.cfg.SlotHolders
	w := &d.slots
	if !h.Enabled {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if h.Pressure.Connections > 0 {
		// A failed check leaves the scan to judge pressure alone.
		if n, err := sockets.Waiting(ctx, d.cfg.Kernel.Ports); err != nil {
			d.slotError(queueCheck, err)
		} else {
			delete(w.failing, queueCheck)
			w.waiting = n
			d.notePressure(now)
		}
	}
	on, ended := w.under(now)
	if ended {
		d.log.Info("login slot pressure over", "lasted", now.Sub(w.since).Round(time.Second))
		d.evict.late = nil
	}
	d.setAdmission(on)
	d.syncPriority(ctx, on)
	d.metrics.slots(on, w.waiting, w.silent)
	if !on && now.Before(w.next) {
		return
	}
	// Half a period of slack: a tick that comes a little early must not
	// put the scan off by a whole period.
	w.next = now.Add(h.ScanInterval - slotPeriod(h)/2)
	start := time.Now()
	conns, err := d.holderConns(ctx, w.conns[:0])
	if err != nil {
		d.slotError(connScan, err)
		return
	}
	w.conns = conns
	delete(w.failing, connScan)
	banned := d.banHolders(now, conns, time.Since(start))
	on, _ = w.under(now)
	d.setAdmission(on)
	d.syncPriority(ctx, on)
	d.evictPreAuth(ctx, now, on, conns, banned)
}

func (d *Daemon) notePressure(now time.Time) {
	h, w := d.cfg.SlotHolders, &d.slots
	full := w.full
	if w.note(now, h.Pressure) {
		d.log.Warn("login slots under pressure: scanning faster, shorter idle", "waiting", w.waiting,
			"silent", w.silent, "dovecot_full", full, "idle", pressureIdle(h), "scan_interval", slotPeriod(h), "hold", h.Pressure.Hold)
	}
}

// dovecotFull takes Dovecot's own word that a login service is out of
// slots ("master: Warning: service(imap-login): process_limit (100)
// reached, client connections are being dropped") as pressure. The
// accept queues alone can miss it: Dovecot's login processes evict their
// oldest pre-auth clients to take the next ones, so while chatty bots
// (a trawler talks every few seconds, so none is ever quiet) cycle
// through the slots the queues may never hold pressure.connections at
// the moment they are looked at, and yet every slot is taken.
func (d *Daemon) dovecotFull(p logwatch.Pressure, now time.Time) {
	h := d.cfg.SlotHolders
	if !h.Enabled || h.Pressure.Connections <= 0 || !p.Login() {
		return
	}
	d.slots.full = p.Service
	d.notePressure(now)
}

// slotError logs a failed check or scan, once until it succeeds again.
func (d *Daemon) slotError(what string, err error) {
	if d.slots.failing == nil {
		d.slots.failing = map[string]bool{}
	}
	if !d.slots.failing[what] {
		d.log.Warn("slot holders: "+what+" (further failures are not logged until one succeeds)", "error", err)
	}
	d.slots.failing[what] = true
}

// banHolders bans, from a scan of the accepted connections, the sources
// that hold several login slots without a word: the bots this project
// exists for, caught before the server's login timeout makes them visible
// in the log. Every ban of a scan is written first, then their
// connections are all destroyed in one pass. It returns the prefixes it
// banned.
func (d *Daemon) banHolders(now time.Time, conns []sockets.Conn, scanned time.Duration) []netip.Prefix {
	h := d.cfg.SlotHolders
	w := &d.slots
	idle := h.Idle
	if h.Pressure.Connections > 0 {
		idle = pressureIdle(h)
	}
	start := time.Now()
	holders := sockets.HoldersOf(conns, idle, uint64(h.MaxBytes))
	if h.Pressure.Connections > 0 {
		w.silent = quietCount(holders, h)
		d.notePressure(now)
	}
	on, _ := w.under(now)
	d.metrics.slots(on, w.waiting, w.silent)
	var banned []netip.Prefix
	for _, o := range offenders(holders, h, on, d.prefixOf) {
		if _, isBanned, _ := d.guard.BanOf(o.p.Addr()); isBanned {
			continue // its connections are being destroyed, or monitor mode
		}
		dur, offence := d.engine.History().Record(o.p, now, datapath.ReasonNoAuth, datapath.DetectorSlotHolders)
		if err := d.guard.Ban(o.p, dur, datapath.OriginLog, datapath.ReasonNoAuth); err != nil {
			d.log.Error("ban failed", "prefix", o.p, "error", err)
			continue
		}
		d.metrics.banned(datapath.OriginLog, 0)
		silence := h.Idle
		if on {
			silence = pressureIdle(h)
		}
		// The evidence is the connections held silent, which have been
		// silent since at least now - silence.
		d.remember(datapath.Ban{Prefix: o.p, Expires: now.Add(dur), Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth,
			Detector: datapath.DetectorSlotHolders, Events: o.n, First: now.Add(-silence), Last: now, Offence: offence})
		d.signal(o.p, crowdsec.ScenarioSlotHolder, o.n, now.Add(-silence), now, dur,
			fmt.Sprintf("holding %d login slots silent for %s", o.n, silence))
		d.dirty = true
		banned = append(banned, o.p)
		d.log.Info("banned", "prefix", o.p, "origin", "log", "reason", "no-auth", "detector", datapath.DetectorSlotHolders,
			"held", o.n, "pressure", on, "for", dur)
	}
	if len(banned) == 0 {
		return nil
	}
	killed := d.kill(banned...)
	d.escalate(banned, now)
	if len(banned) == 1 {
		d.log.Info("destroyed held connections", "prefixes", 1, "connections", killed[banned[0]])
	}
	d.log.Info("slot holders banned", "sources", len(banned), "pressure", on, "scan", scanned.Round(time.Microsecond),
		"ban_and_destroy", time.Since(start).Round(time.Microsecond))
	return banned
}

// prefixOf masks a source like a ban, or says it is never banned. A
// known-good source is never a slot holder: a server under attack makes
// its users' clients look idle too.
func (d *Daemon) prefixOf(a netip.Addr) (netip.Prefix, bool) {
	if d.neverBan(a) || d.isKnownGood(a) {
		return netip.Prefix{}, false
	}
	return d.cfg.Kernel.Settings().Granularity().Mask(a), true
}
