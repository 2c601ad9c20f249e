package daemon

import (
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/knowngood"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/state"
)

// knownGoodKernel is what the daemon needs from the loader for known-good
// sources and the admission limit.
type knownGoodKernel interface {
	PutKnownGood(ps []netip.Prefix) error
	DeleteKnownGood(ps []netip.Prefix) error
	KnownGood() ([]netip.Prefix, error)
	SetAdmission(on bool) error
}

var _ knownGoodKernel = (*datapath.Guard)(nil)

// kernelKG is the loader's side of known-good sources.
func (d *Daemon) kernelKG() knownGoodKernel { return d.guard }

// kgState is the daemon's side of known-good sources: the store, and the
// kernel updates not yet written (batched per log batch and tick).
type kgState struct {
	store    *knowngood.Store
	put, del []netip.Prefix
	// strikes are the failed-password decisions spared per known-good
	// source, within the log window (spare).
	strikes map[netip.Prefix][]time.Time
}

func newKnownGood(c Config) *knowngood.Store {
	return knowngood.New(c.KnownGood.Retention, c.KnownGood.MaxEntries, c.Kernel.Settings().Granularity())
}

// restoreKnownGood loads the saved known-good sources and puts them all in
// the kernel, which may have lost them (reboot) or hold stale ones (a
// restart after they expired): the kernel gets exactly the store's set.
func (d *Daemon) restoreKnownGood(saved []state.KnownGood, now time.Time) {
	d.kg.store = newKnownGood(d.cfg)
	es := make([]knowngood.Entry, len(saved))
	for i, k := range saved {
		es[i] = knowngood.Entry(k)
	}
	d.kg.store.Restore(es, now)
	d.kg.put = append(d.kg.put, d.kg.store.Prefixes()...)
	if live, err := d.guard.KnownGood(); err != nil {
		d.log.Error("read the kernel's known-good sources", "error", err)
	} else {
		for _, p := range live {
			if !d.kg.store.Contains(p.Addr()) {
				d.kg.del = append(d.kg.del, p)
			}
		}
	}
	if n := d.kg.store.Len(); n > 0 {
		d.log.Info("restored known-good sources from the state file", "count", n)
	}
	d.learnHistory(now)
	d.syncKnownGood()
	// A daemon that stopped under pressure may have left the admission
	// limit on; pressure starts unknown, so it starts off.
	if err := d.kernelKG().SetAdmission(false); err != nil {
		d.log.Error("kernel admission limit", "on", false, "error", err)
	}
}

// learn records a successful login seen in the log.
func (d *Daemon) learn(r logwatch.Result) {
	if !r.Matched || r.Kind != logwatch.KindLogin || !r.Addr.IsValid() {
		return
	}
	p, isNew, evicted := d.kg.store.Learn(r.Addr, r.Time)
	d.journalKnownGood(p, r.Time, isNew, evicted)
	if isNew {
		d.kg.put = append(d.kg.put, p)
		d.dirty = true
		d.log.Debug("known-good source", "prefix", p)
	}
	d.kg.del = append(d.kg.del, evicted...)
}

// isKnownGood reports whether a has logged in within the retention.
func (d *Daemon) isKnownGood(a netip.Addr) bool {
	return d.kg.store != nil && d.kg.store.Contains(a)
}

// knownGoodStrikes is the higher bar for a known-good source: it takes
// this many failed-password decisions within the log window (three times
// the threshold: 15 failed logins in 10 minutes on defaults) to ban it.
// A NAT office of 50 users, a few of whose clients retry an old password,
// stays under it; a brute-forcer that once logged in does not.
const knownGoodStrikes = 3

// spare decides whether a log decision against a known-good source is
// dropped, and takes it back from the engine if so. Decision: evidence of
// held slots (no-auth, probes, TLS failures, connection limits) never bans
// a source that has logged in: its users' clients are exactly what a busy
// or attacked server makes look idle. Failed passwords still ban it,
// because a source that logged in once and then guesses passwords is still
// a brute-forcer, but with a higher bar (knownGoodStrikes).
func (d *Daemon) spare(dec *logwatch.Decision) bool {
	if !d.isKnownGood(dec.Prefix.Addr()) {
		return false
	}
	switch dec.Reason {
	case datapath.ReasonAuthFailed:
		if d.kg.strikes == nil {
			d.kg.strikes = map[netip.Prefix][]time.Time{}
		}
		cut := dec.Time.Add(-d.cfg.Detect.Window)
		ts := d.kg.strikes[dec.Prefix]
		for len(ts) > 0 && !ts[0].After(cut) {
			ts = ts[1:]
		}
		ts = append(ts, dec.Time)
		if len(ts) >= knownGoodStrikes {
			delete(d.kg.strikes, dec.Prefix)
			return false
		}
		d.kg.strikes[dec.Prefix] = ts
	}
	d.engine.Forgive(dec.Prefix, dec.Time)
	d.log.Info("not banned: known-good source", "prefix", dec.Prefix, "reason", dec.Reason, "rule", dec.Rule, "events", dec.Events)
	return true
}

// expireKnownGood drops sources whose last login is older than the
// retention, from the store and the kernel.
func (d *Daemon) expireKnownGood(now time.Time) {
	cut := now.Add(-d.cfg.Detect.Window)
	for p, ts := range d.kg.strikes {
		if len(ts) == 0 || !ts[len(ts)-1].After(cut) {
			delete(d.kg.strikes, p)
		}
	}
	if gone := d.kg.store.Expire(now); len(gone) > 0 {
		d.pj.batch.ForgetKnownGood(gone...)
		d.kg.del = append(d.kg.del, gone...)
		d.dirty = true
	}
	d.metrics.knownGood(d.kg.store.Len())
	d.syncKnownGood()
}

// syncKnownGood writes the pending additions and removals to the kernel.
// A failed write is retried on the next call.
func (d *Daemon) syncKnownGood() {
	if len(d.kg.put) == 0 && len(d.kg.del) == 0 {
		return
	}
	k := d.kernelKG()
	if len(d.kg.del) > 0 {
		if err := k.DeleteKnownGood(d.kg.del); err != nil {
			d.log.Error("remove known-good sources from the kernel", "count", len(d.kg.del), "error", err)
		} else {
			d.kg.del = d.kg.del[:0]
		}
	}
	if len(d.kg.put) > 0 {
		if err := k.PutKnownGood(d.kg.put); err != nil {
			d.log.Error("add known-good sources to the kernel", "count", len(d.kg.put), "error", err)
		} else {
			d.kg.put = d.kg.put[:0]
		}
	}
}

// knownGoodSnapshot is the store for the state file.
func (d *Daemon) knownGoodSnapshot() []state.KnownGood {
	es := d.kg.store.Snapshot()
	out := make([]state.KnownGood, len(es))
	for i, e := range es {
		out[i] = state.KnownGood(e)
	}
	return out
}

// reloadKnownGood applies new limits; a smaller bound evicts at once.
func (d *Daemon) reloadKnownGood(next Config) {
	if next.Kernel.PrefixV4 != d.cfg.Kernel.PrefixV4 || next.Kernel.PrefixV6 != d.cfg.Kernel.PrefixV6 {
		// Re-mask everything: the kernel gets the new set.
		old := d.kg.store.Prefixes()
		snap := d.kg.store.Snapshot()
		d.kg.store = newKnownGood(next)
		d.kg.store.Restore(snap, time.Now())
		d.kg.del = append(d.kg.del, old...)
		d.kg.put = append(d.kg.put, d.kg.store.Prefixes()...)
	} else {
		d.kg.del = append(d.kg.del, d.kg.store.SetLimits(next.KnownGood.Retention, next.KnownGood.MaxEntries)...)
	}
	d.syncKnownGood()
}
