package daemon

import (
	"bytes"
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/sockets"
)

// evictState is the eviction side of slot pressure
// (slot_holders.pressure.evict). Only the main loop touches it.
type evictState struct {
	// firstSeen is when each connection (by socket cookie) was first seen
	// established: the kernel keeps no connection age, so the grace period
	// is counted from the first scan that saw it.
	firstSeen map[uint64]time.Time
	// admission is what the daemon last asked of the kernel.
	admission bool
	// evicted counts, per source (masked like a ban), the connections
	// destroyed within the log layer's window: a source evicted again and
	// again is holding slots, and is banned (evidenceBan).
	evicted map[netip.Prefix][]time.Time
	// late holds the sources marked late in this spell of pressure
	// (Daemon.late): each is told to the kernel once.
	late map[netip.Prefix]bool
}

// evictBan is how many evictions of one source within the log layer's
// window ban it. A real user never reaches it: a source that logged in is
// never evicted, and a new user's client authenticates within the grace.
const evictBan = 3

// seen updates first-seen times from a scan and forgets the connections
// that are gone. A scan is one list or more (the slot holders' and the
// pre-auth connections), which may share connections.
func (w *evictState) seen(now time.Time, scan ...[]sockets.Conn) {
	if w.firstSeen == nil {
		w.firstSeen = map[uint64]time.Time{}
	}
	live := make(map[uint64]bool, len(scan[0]))
	for _, conns := range scan {
		for _, c := range conns {
			live[c.Cookie] = true
			if _, ok := w.firstSeen[c.Cookie]; !ok {
				w.firstSeen[c.Cookie] = now
			}
		}
	}
	for k := range w.firstSeen {
		if !live[k] {
			delete(w.firstSeen, k)
		}
	}
}

// victims picks the connections to destroy: n of the pre-auth ones whose
// source may be evicted, first seen at least grace ago and leaving the
// floor unused for at least grace (the server spoke last and the client
// has acknowledged it: Holder.Quiet), oldest first. A client waiting for
// the server's answer, a login in progress on a slow server, is never
// picked: the client spoke last.
func (w *evictState) victims(pre []sockets.Conn, n int, grace time.Duration, now time.Time, spared func(netip.Addr) bool) []sockets.Conn {
	var out []sockets.Conn
	for _, c := range pre {
		if first, ok := w.firstSeen[c.Cookie]; ok && now.Sub(first) >= grace && c.Quiet() >= grace && !spared(c.Remote) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b sockets.Conn) int {
		if c := w.firstSeen[a.Cookie].Compare(w.firstSeen[b.Cookie]); c != 0 {
			return c
		}
		return cmp.Compare(a.Cookie, b.Cookie)
	})
	return out[:min(n, len(out))]
}

// setAdmission turns the kernel's admission limit (kernel.admission) on or
// off, when it changes.
func (d *Daemon) setAdmission(on bool) {
	on = on && d.cfg.Kernel.Admission.Interval > 0 && !d.cfg.Kernel.Monitor
	if on == d.evict.admission {
		return
	}
	if err := d.kernelKG().SetAdmission(on); err != nil {
		d.log.Error("kernel admission limit", "on", on, "error", err)
		return
	}
	d.evict.admission = on
	d.log.Info("kernel admission limit for sources that are not known-good", "on", on)
}

// evictPreAuth runs with every connection scan (conns: its result;
// banned: the prefixes the scan's slot holders were banned as). It tracks
// when each pre-auth connection was first seen, and, under pressure with
// connections waiting
// in the accept queues, destroys as many pre-auth connections as are
// waiting: those of sources that are not known-good, past the grace
// period, oldest first. Why not known-good: with TLS, Dovecot's login
// process proxies a session after login, so a logged-in TLS session looks
// pre-auth too; its source has logged in, so it is known-good and spared.
func (d *Daemon) evictPreAuth(ctx context.Context, now time.Time, pressure bool, conns []sockets.Conn, banned []netip.Prefix) {
	e := d.cfg.SlotHolders.Pressure.Evict
	if !e.Enabled || !d.cfg.KillConnections || d.cfg.Kernel.Monitor {
		return
	}
	pre, err := d.preAuthConns(ctx, conns)
	if err != nil {
		d.slotError("find the pre-auth connections", err)
		return
	}
	// A connection's age counts from its first scan, in the accept queue
	// if it waited there (the scan lists it: it has said nothing yet),
	// not from its first scan as pre-auth: a bot accepted late would
	// otherwise get a second grace period.
	d.evict.seen(now, conns, pre)
	if pressure {
		d.late(conns, pre)
	}
	// The accept queues as the check that began this tick saw them.
	waiting := d.slots.waiting
	if !pressure || waiting == 0 {
		return
	}
	// Sources banned since the scan have lost their connections already.
	spared := func(a netip.Addr) bool {
		return d.neverBan(a) || d.isKnownGood(a) || slices.ContainsFunc(banned, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	victims := d.evict.victims(pre, waiting, e.Grace, now, spared)
	if len(victims) == 0 {
		return
	}
	n, err := sockets.DestroyConns(ctx, victims)
	if err != nil {
		d.slotError("evict pre-auth connections", err)
	}
	d.metrics.evicted(n)
	d.log.Info("evicted pre-auth connections to make room", "waiting", waiting, "pre_auth", len(pre), "evicted", n)
	from := make([]netip.Addr, len(victims))
	for i, c := range victims {
		from[i] = c.Remote
	}
	d.evidence(from, now)
}

// evidence counts evictions per source, xdpguard's own and Dovecot's
// ("Connection queue full"), and bans the sources evicted evictBan times
// within the log layer's window: they keep taking slots back without ever
// logging in. Known-good and allowed sources are never counted.
func (d *Daemon) evidence(from []netip.Addr, now time.Time) {
	if d.evict.evicted == nil {
		d.evict.evicted = map[netip.Prefix][]time.Time{}
	}
	cut := now.Add(-d.cfg.Detect.Window)
	for p, ts := range d.evict.evicted {
		if len(ts) > 0 && ts[len(ts)-1].Before(cut) {
			delete(d.evict.evicted, p)
		}
	}
	var banned, refused []netip.Prefix
	for _, a := range from {
		p, ok := d.prefixOf(a)
		if !ok {
			continue
		}
		refused = append(refused, p)
		ts := append(d.evict.evicted[p], now)
		for len(ts) > 0 && ts[0].Before(cut) {
			ts = ts[1:]
		}
		d.evict.evicted[p] = ts
		if len(ts) < evictBan || slices.Contains(banned, p) {
			continue
		}
		if _, isBanned, _ := d.guard.BanOf(p.Addr()); isBanned {
			continue
		}
		dur, offence := d.engine.History().Record(p, now, datapath.ReasonNoAuth, datapath.DetectorEvictions)
		if err := d.guard.Ban(p, dur, datapath.OriginLog, datapath.ReasonNoAuth); err != nil {
			d.log.Error("ban failed", "prefix", p, "error", err)
			continue
		}
		d.metrics.banned(datapath.OriginLog, 0)
		// The evidence: evicted len(ts) times before authenticating while
		// the login slots ran out.
		d.remember(datapath.Ban{Prefix: p, Expires: now.Add(dur), Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth,
			Detector: datapath.DetectorEvictions, Events: len(ts), First: ts[0], Last: now, Offence: offence})
		d.dirty = true
		delete(d.evict.evicted, p)
		banned = append(banned, p)
		d.log.Info("banned", "prefix", p, "origin", "log", "reason", "no-auth", "rule", "evictions", "evicted", len(ts), "for", dur)
	}
	d.refuse(refused, now)
	if len(banned) > 0 {
		d.kill(banned...)
		d.escalate(banned, now)
	}
}

// late tells the steering program that the sources holding connections
// under pressure (the scan's, and the pre-auth ones) are not new users:
// they never use the fresh queue's rate (datapath.Priority.Late).
// Known-good sources have their own queue and are left out.
func (d *Daemon) late(scan ...[]sockets.Conn) {
	if d.priority.p == nil {
		return
	}
	if d.evict.late == nil {
		d.evict.late = map[netip.Prefix]bool{}
	}
	var ps []netip.Prefix
	for _, conns := range scan {
		for _, c := range conns {
			if p, ok := d.prefixOf(c.Remote); ok && !d.evict.late[p] {
				d.evict.late[p] = true
				ps = append(ps, p)
			}
		}
	}
	if err := d.priority.p.Late(ps); err != nil {
		d.log.Error("sources holding slots not marked late", "error", err)
	}
}

// refuse has the steering program reset the new connections of evicted
// sources while the fresh tier is on (slot_holders.pressure.evict.refuse).
func (d *Daemon) refuse(ps []netip.Prefix, now time.Time) {
	r := d.cfg.SlotHolders.Pressure.Evict.Refuse
	if d.priority.p == nil || r == 0 || len(ps) == 0 {
		return
	}
	if err := d.priority.p.Refuse(ps, now.Add(r)); err != nil {
		d.log.Error("evicted sources not refused", "error", err)
	}
}

// queueFull reports whether a Dovecot no-auth line is one of Dovecot's own
// evictions: 2.3's "Disconnected: Connection queue full (no auth
// attempts ...)", 2.4's "Login aborted: Connection queue full ... " or
// "(process_full)". Only the text before ": user=<" is looked at; the user
// name after it is the client's.
func queueFull(line []byte) bool {
	i := bytes.Index(line, []byte(": user=<"))
	if i < 0 {
		i = bytes.Index(line, []byte(": rip="))
	}
	if i < 0 {
		return false
	}
	head := line[:i]
	return bytes.Contains(head, []byte("Connection queue full")) || bytes.Contains(head, []byte("(process_full)"))
}
