// The daemon's side of the state journal: every ban, unban and known-good
// change is a record, committed (written and fsynced) before the daemon
// reports it; compaction rewrites the journal from the kernel and the
// daemon's memory now and then.

package daemon

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
)

// Compaction: when the journal has grown to compactGrowth times its size
// after the last compaction (and at least compactMin); and, when anything
// changed, on the tick, but at most 1% of the time (100 times as long
// apart as the last one took: a million bans take a fraction of a
// second). What only compaction writes (known-good last-seen times,
// forgiven offenders) and the status file's ban count stay that fresh.
const (
	compactGrowth = 2
	compactMin    = 1 << 20
)

type persistState struct {
	batch state.Batch
	// holding: a batch of bans is being built; remember does not commit
	// each one, the batch's commit does.
	holding     bool
	cursor      string // last journal cursor committed
	compacted   int64  // journal size after the last compaction
	lastCompact time.Time
	took        time.Duration // the last compaction
	failed      bool          // the last commit failed (logged once)
}

// journalBan queues b and its offender history; outside a batch it is
// committed at once.
func (d *Daemon) journalBan(b datapath.Ban) {
	d.pj.batch.Ban(b)
	if o, ok := d.engine.History().Get(b.Prefix); ok {
		d.pj.batch.Offender(o)
	}
	if !d.pj.holding {
		d.commit()
	}
}

// hold starts a batch of bans; commit ends it.
func (d *Daemon) hold() { d.pj.holding = true }

// commit syncs what is queued. A failure is logged and the records stay
// queued for the next commit: the kernel has the bans, and the next
// compaction writes them from it in any case.
func (d *Daemon) commit() {
	d.pj.holding = false
	if d.cursor != d.pj.cursor {
		d.pj.batch.Cursor(d.cursor)
	}
	if d.pj.batch.Len() == 0 {
		return
	}
	if err := d.store.Commit(&d.pj.batch); err != nil {
		if !d.pj.failed {
			d.log.Error("state journal: commit failed; retrying with the next change", "error", err)
		}
		d.pj.failed = true
		return
	}
	if d.pj.failed {
		d.log.Info("state journal: commits work again")
	}
	d.pj.failed = false
	d.pj.cursor = d.cursor
	d.pj.batch.Reset()
}

// persistTick commits what waits (known-good sources, the cursor) and
// compacts when due.
func (d *Daemon) persistTick(now time.Time) {
	d.commit()
	size := d.store.Size()
	due := size > max(compactMin, compactGrowth*d.pj.compacted) ||
		((d.dirty || size > d.pj.compacted) && now.Sub(d.pj.lastCompact) >= 100*d.pj.took)
	if !due {
		return
	}
	start := time.Now()
	if err := d.compact(); err != nil {
		d.log.Error("state journal: compaction failed", "error", err)
		d.pj.lastCompact = now // not again at once
		return
	}
	d.pj.took = time.Since(start)
	d.log.Debug("state journal compacted", "bytes", d.pj.compacted, "took", d.pj.took)
}

// compact rewrites the journal: the kernel's bans (the truth for what is
// banned, including bans whose events were lost) with the journal's
// evidence, and the daemon's offender history, known-good sources and
// cursor.
func (d *Daemon) compact() error {
	d.commit()
	bans, err := d.guard.Bans()
	if err != nil {
		return err
	}
	live := make(map[netip.Prefix]bool, len(bans))
	size, err := d.store.Compact(func(st *state.State) {
		known := make(map[netip.Prefix]datapath.Ban, len(st.Bans))
		for _, b := range st.Bans {
			known[b.Prefix] = b
		}
		for i, b := range bans {
			live[b.Prefix] = true
			// A record adds evidence only to a ban of the same origin: one
			// left from an older ban never describes a newer one.
			if rec, ok := known[b.Prefix]; ok && rec.Origin == b.Origin {
				bans[i] = b.WithEvidence(rec)
			}
		}
		st.Bans = bans
		st.Offenders = d.engine.History().Snapshot()
		st.JournalCursor = d.cursor
		st.KnownGood = d.knownGoodSnapshot()
	})
	if err != nil {
		return err
	}
	maps.DeleteFunc(d.records, func(p netip.Prefix, _ datapath.Ban) bool { return !live[p] })
	d.status.bans = len(live)
	d.pj.compacted, d.pj.lastCompact = size, time.Now()
	d.pj.cursor = d.cursor
	d.dirty = false
	return nil
}

// loadState reads the journal (importing a legacy state file), the bans
// as lists for restoreBans. Dropped records are logged, not fatal; only a
// newer version's state is.
func (d *Daemon) loadState() (state.State, []state.BanList, error) {
	st, lists, err := d.store.LoadLists()
	switch {
	case errors.Is(err, state.ErrFutureVersion):
		return st, nil, fmt.Errorf("state: %w", err)
	case errors.Is(err, state.ErrDropped):
		d.log.Warn("state journal: torn or corrupt records dropped, the rest restored", "error", err)
	case err != nil:
		// Corrupt or unreadable: reported, set aside by Load, not fatal.
		d.log.Error("state file unusable, starting without it", "error", err)
	}
	d.pj.cursor = st.JournalCursor
	d.pj.compacted, d.pj.lastCompact = d.store.Size(), time.Now()
	// The first tick compacts: it writes down the kernel's bans made
	// while no daemon ran (SYN-rate bans), and drops what Load dropped.
	d.dirty = true
	return st, lists, nil
}

// loadStateAsync runs loadState in a goroutine; the function it returns
// waits for the result. Until then the caller leaves the journal's
// bookkeeping (d.pj, d.dirty) alone.
func (d *Daemon) loadStateAsync() func() (state.State, []state.BanList, error) {
	type loaded struct {
		st    state.State
		lists []state.BanList
		err   error
	}
	ch := make(chan loaded, 1)
	go func() {
		var l loaded
		l.st, l.lists, l.err = d.loadState()
		ch <- l
	}()
	return func() (state.State, []state.BanList, error) {
		l := <-ch
		return l.st, l.lists, l.err
	}
}

// restoreBans puts back bans the kernel no longer has: after a reboot, or
// after the pins were removed. Bans the kernel still holds are left alone.
// A list banned together goes back in one batch write, so a million bans
// from one `ban --from` cost one BanMany.
func (d *Daemon) restoreBans(lists []state.BanList) error {
	live, err := d.guard.Bans()
	if err != nil {
		return err
	}
	have := make(map[netip.Prefix]bool, len(live))
	for _, b := range live {
		have[b.Prefix] = true
	}
	type group struct {
		expires time.Time
		origin  datapath.Origin
		reason  datapath.Reason
	}
	groups := map[group][]netip.Prefix{}
	for _, l := range lists {
		// The daemon's own bans and CrowdSec's keep their evidence in
		// memory (crowdsec.go asks who banned what); an operator's ban
		// list need not.
		if l.Like.Origin != datapath.OriginManual {
			for _, p := range l.Prefixes {
				b := l.Like
				b.Prefix = p
				d.records[p] = b
			}
		}
		ps := l.Prefixes
		if len(have) > 0 {
			ps = slices.DeleteFunc(slices.Clone(ps), func(p netip.Prefix) bool { return have[p] })
		}
		k := group{l.Like.Expires, l.Like.Origin, l.Like.Reason}
		if groups[k] == nil {
			groups[k] = ps // most often the only list of its group: no copy
		} else {
			groups[k] = append(groups[k], ps...)
		}
	}
	now := time.Now()
	restored := 0
	for k, ps := range groups {
		if len(ps) == 0 {
			continue
		}
		ttl := time.Duration(0)
		if !k.expires.IsZero() {
			ttl = max(time.Second, k.expires.Sub(now))
		}
		if err := d.guard.BanMany(ps, ttl, k.origin, k.reason); err != nil {
			return fmt.Errorf("restore %d bans: %w", len(ps), err)
		}
		restored += len(ps)
	}
	if restored > 0 {
		d.log.Info("restored bans from the state file", "count", restored)
	}
	d.status.bans = len(live) + restored
	return nil
}

// journalCrowdsec queues a CrowdSec decision's ban; onCrowdsec commits the
// pull's records together.
func (d *Daemon) journalCrowdsec(kp netip.Prefix, expires time.Time, scenario string) {
	gran := d.cfg.Kernel.PrefixV6
	if kp.Addr().Is4() {
		gran = d.cfg.Kernel.PrefixV4
	}
	d.pj.batch.Ban(datapath.Ban{Prefix: kp, Expires: expires, Origin: datapath.OriginCrowdsec, Reason: datapath.ReasonBlocklist,
		CIDR: kp.Bits() < gran, Detector: scenario, Events: 1})
}

// journalKnownGood queues a login's known-good change, committed with the
// next batch of bans or on the next tick. A login of a source already known
// only moves its last-seen time, which compaction writes: no record per
// login.
func (d *Daemon) journalKnownGood(p netip.Prefix, at time.Time, isNew bool, evicted []netip.Prefix) {
	if isNew {
		d.pj.batch.KnownGood(state.KnownGood{Prefix: p, LastSeen: at})
	}
	d.pj.batch.ForgetKnownGood(evicted...)
}
