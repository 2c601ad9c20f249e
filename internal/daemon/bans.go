// The daemon's ban path: lines scored into decisions, kernel events, and the kills
// that free the slots a banned source holds.

package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/internal/crowdsec"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/sockets"
)

// onLine scores a line and queues the ban it decides, if any.
func (d *Daemon) onLine(l logwatch.Line) {
	d.noteLine(l)
	var r logwatch.Result
	if l.Backlog {
		r = d.engine.ProcessHistory(l.Data, l.File, l.Arrival)
	} else {
		r = d.engine.Process(l.Data, l.File, l.Arrival)
	}
	d.learn(r)
	if r.Pressure != nil && !l.Backlog {
		d.dovecotFull(*r.Pressure, time.Now())
	}
	if r.Matched && !l.Backlog {
		d.trawl(r, l.Data)
	}
	// Dovecot's own evictions: no-auth lines here, their own kind where
	// the log rules tell them apart.
	if r.Matched && r.Kind != logwatch.KindLogin && !l.Backlog && queueFull(l.Data) {
		d.evidence([]netip.Addr{r.Addr}, r.Time)
	}
	if r.Decision != nil && !d.spare(r.Decision) {
		d.pending = append(d.pending, pendingBan{dec: r.Decision, arrival: l.Arrival})
	}
}

type pendingBan struct {
	dec     *logwatch.Decision
	arrival time.Time
}

// flush writes the queued decisions to the kernel, one batch update per
// duration and reason: 10,000 sources arriving at once cost a few syscalls
// instead of tens of thousands.
func (d *Daemon) flush() {
	type group struct {
		dur    time.Duration
		reason datapath.Reason
	}
	groups := map[group][]netip.Prefix{}
	for _, p := range d.pending {
		k := group{p.dec.Duration, p.dec.Reason}
		groups[k] = append(groups[k], p.dec.Prefix)
	}
	failed := map[netip.Prefix]bool{}
	for k, ps := range groups {
		if err := d.guard.BanMany(ps, k.dur, datapath.OriginLog, k.reason); err != nil {
			d.log.Error("ban failed", "prefixes", len(ps), "error", err)
			for _, p := range ps {
				failed[p] = true
			}
		}
	}
	var done []netip.Prefix
	for _, p := range d.pending {
		if !failed[p.dec.Prefix] {
			done = append(done, p.dec.Prefix)
		}
	}
	// The batch's bans reach the disk before any is reported (logged,
	// counted, signalled).
	d.hold()
	for _, p := range d.pending {
		if dec := p.dec; !failed[dec.Prefix] {
			d.remember(datapath.Ban{Prefix: dec.Prefix, Expires: time.Now().Add(dec.Duration), Origin: datapath.OriginLog, Reason: dec.Reason,
				Detector: dec.Rule, Events: dec.Events, First: dec.First, Last: dec.Time, Offence: dec.Offence})
		}
	}
	d.commit()
	killed := d.kill(done...)
	d.escalate(done, time.Now())
	for _, p := range d.pending {
		dec := p.dec
		if failed[dec.Prefix] {
			continue
		}
		d.metrics.banned(datapath.OriginLog, time.Since(p.arrival))
		d.signal(dec.Prefix, scenarioOf(dec.Reason), dec.Events, dec.Time, dec.Time, dec.Duration, "rule "+dec.Rule)
		d.dirty = true
		d.log.Info("banned", "prefix", dec.Prefix, "origin", "log", "reason", dec.Reason, "rule", dec.Rule,
			"events", dec.Events, "score", dec.Score, "offence", dec.Offence, "for", dec.Duration, "killed", killed[dec.Prefix])
	}
	d.pending = d.pending[:0]
}

// onKernelBan hears of a SYN-rate ban the program made by itself. It enters
// the same offender history as log bans, so a repeat offender's next kernel
// ban is lengthened here.
func (d *Daemon) onKernelBans(evs []datapath.Ban) {
	d.hold()
	durs := make([]time.Duration, len(evs))
	prefixes := make([]netip.Prefix, len(evs))
	for i, ev := range evs {
		d.metrics.banned(datapath.OriginKernel, 0)
		// The history escalates from the log layer's first ban; apply the
		// same factor to the kernel's own ban duration.
		logDur, offence := d.engine.History().Record(ev.Prefix, ev.Last, ev.Reason, ev.Detector)
		base := d.cfg.Kernel.BanDuration
		dur := time.Duration(float64(base) * float64(logDur) / float64(d.cfg.Detect.BanDuration))
		dur = min(dur, d.cfg.Detect.MaxBanDuration)
		if dur > base {
			if err := d.guard.Ban(ev.Prefix, dur, ev.Origin, ev.Reason); err != nil {
				d.log.Error("escalate kernel ban", "prefix", ev.Prefix, "error", err)
			}
		} else {
			dur = base
			if _, err := d.guard.EnsureBan(ev.Prefix, dur, ev.Origin, ev.Reason); err != nil {
				d.log.Error("kernel ban not in the table", "prefix", ev.Prefix, "error", err)
			}
		}
		rec := ev
		rec.Expires, rec.Offence = ev.Last.Add(dur), offence
		d.remember(rec)
		durs[i], prefixes[i] = dur, ev.Prefix
	}
	d.dirty = true
	d.commit()
	killed := d.kill(prefixes...)
	d.escalate(prefixes, time.Now())
	for i, p := range prefixes {
		ev := evs[i]
		d.signal(ev.Prefix, crowdsec.ScenarioSYNRate, ev.Events, ev.Last.Add(-d.cfg.Kernel.SYNRate.Window), ev.Last, durs[i],
			fmt.Sprintf("over %d SYNs per %s", ev.Events-1, d.cfg.Kernel.SYNRate.Window))
		d.log.Info("banned", "prefix", p, "origin", "kernel", "reason", "syn-rate", "for", durs[i], "killed", killed[p])
	}
}

// neverBan covers the allowlist, loopback and the host's own addresses,
// as in the log layer.
func (d *Daemon) neverBan(a netip.Addr) bool {
	if a.IsLoopback() || d.own[a] {
		return true
	}
	for _, p := range d.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// kill destroys the banned sources' established connections to the
// protected ports, so Dovecot's login slots free now, not at its timeout.
// It returns how many went per prefix.
func (d *Daemon) kill(ps ...netip.Prefix) map[netip.Prefix]int {
	if !d.cfg.KillConnections || d.cfg.Kernel.Monitor || len(ps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out := map[netip.Prefix]int{}
	if len(ps) == 1 {
		n, err := sockets.Destroy(ctx, ps[0], d.cfg.Kernel.Ports)
		if err != nil {
			d.log.Warn("could not destroy connections", "prefix", ps[0], "error", err)
		}
		d.metrics.killed(n)
		out[ps[0]] = n
		return out
	}
	// One scan for the batch; the count is not split by prefix.
	n, err := sockets.DestroyAll(ctx, ps, d.cfg.Kernel.Ports)
	if err != nil {
		d.log.Warn("could not destroy connections", "prefixes", len(ps), "error", err)
	}
	d.metrics.killed(n)
	if n > 0 {
		d.log.Info("destroyed held connections", "prefixes", len(ps), "connections", n)
	}
	return out
}
