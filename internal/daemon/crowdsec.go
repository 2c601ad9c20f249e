package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpguard/xdpguard/internal/crowdsec"
	"github.com/xdpguard/xdpguard/internal/datapath"
)

// crowdsecLink is the daemon's side of a CrowdSec LAPI: the bouncer and the
// pusher run in goroutines of their own, and every pull comes to the main
// loop as a Delta, so the kernel and the state are still written from one
// place.
type crowdsecLink struct {
	bouncer *crowdsec.Bouncer
	pusher  *crowdsec.Pusher
	deltas  chan crowdsec.Delta
	// ids maps each applied decision to the prefix the kernel holds it
	// under, and refs counts the decisions per prefix: an address can
	// have several (two scenarios, or two IPv6 addresses in one /64), and
	// deleting one of them must not lift the ban.
	ids  map[int64]netip.Prefix
	refs map[netip.Prefix]int

	reportFailed bool // logged once

	mu        sync.Mutex // guards what the metrics read
	active    int
	lastApply time.Duration
}

// startCrowdsec starts the link when crowdsec.lapi_url is set, and returns
// the channel of pulls (nil, which blocks forever, when off).
func (d *Daemon) startCrowdsec(ctx context.Context) (<-chan crowdsec.Delta, error) {
	c := d.cfg.CrowdSec
	if c.LAPIURL == "" {
		return nil, nil
	}
	key, err := c.Key()
	if err != nil {
		return nil, fmt.Errorf("crowdsec.api_key_file: %w", err)
	}
	client, err := crowdsec.NewClient(crowdsec.ClientOptions{URL: c.LAPIURL, APIKey: key,
		CACertPath: c.CACertPath, CertPath: c.CertPath, KeyPath: c.KeyPath, InsecureSkipVerify: c.InsecureSkipVerify,
		Timeout: max(time.Minute, 2*c.UpdateFrequency), UserAgent: "xdpguard-bouncer/1"})
	if err != nil {
		return nil, fmt.Errorf("crowdsec: %w", err)
	}
	l := &crowdsecLink{deltas: make(chan crowdsec.Delta), ids: map[int64]netip.Prefix{}, refs: map[netip.Prefix]int{}}
	log := d.log.With("component", "crowdsec")
	if key != "" {
		l.bouncer = &crowdsec.Bouncer{Client: client, Period: c.UpdateFrequency, Log: log, Resync: time.Hour,
			Filter: crowdsec.Filter{Scopes: c.Scopes, Types: c.SupportedDecisionsTypes, Origins: c.Origins,
				ScenariosContaining: c.ScenariosContaining, ScenariosNotContaining: c.ScenariosNotContaining}}
		go l.bouncer.Run(ctx, l.deltas)
	}
	if c.MachineID != "" {
		l.pusher = &crowdsec.Pusher{Client: client, MachineID: c.MachineID, Password: c.Password, Log: log}
		go l.pusher.Run(ctx)
	}
	d.cs = l
	d.metrics.setCrowdsec(l)
	d.log.Info("crowdsec link", "lapi", c.LAPIURL, "bouncer", l.bouncer != nil, "push", l.pusher != nil,
		"update_frequency", c.UpdateFrequency)
	return l.deltas, nil
}

// onCrowdsec applies one pull: deleted decisions first, as CrowdSec's
// firewall bouncer does, so that a decision replaced within one pull ends
// up banned.
func (d *Daemon) onCrowdsec(delta crowdsec.Delta) {
	l := d.cs
	start := time.Now()
	if delta.Bad > 0 {
		d.log.Warn("crowdsec: decisions not understood, skipped", "count", delta.Bad, "first", delta.BadExample)
	}
	var gone []netip.Prefix
	drop := func(id int64) {
		kp, ok := l.ids[id]
		if !ok {
			return
		}
		delete(l.ids, id)
		if l.refs[kp]--; l.refs[kp] <= 0 {
			delete(l.refs, kp)
			gone = append(gone, kp)
		}
	}
	if delta.Startup {
		// The whole set: anything of ours it lacks was deleted while
		// this daemon was not looking (restarted, or the LAPI's
		// database was replaced). The kernel is checked too, because
		// bans outlive the daemon.
		for id := range l.ids {
			drop(id)
		}
	}
	for _, b := range delta.Deleted {
		drop(b.ID)
	}

	// New decisions, grouped by remaining time so that 100,000 decisions
	// are a few batch writes, not 100,000 (see kernelTTL).
	groups := map[time.Duration][]netip.Prefix{}
	var kept []crowdsec.Remediation
	skipped := 0
	for _, b := range delta.New {
		if d.neverBanPrefix(b.Prefix) {
			skipped++
			continue
		}
		if !delta.Startup && d.heldByOther(b) {
			// Usually this host's own ban, posted as an alert and
			// coming back as a decision: it keeps its origin and
			// story. (Skipped at startup, where 100,000 lookups
			// would cost more than the writes.)
			continue
		}
		ttl := kernelTTL(b.TTL)
		groups[ttl] = append(groups[ttl], b.Prefix)
		kept = append(kept, b)
	}
	failed := 0
	for ttl, ps := range groups {
		if err := d.guard.BanMany(ps, ttl, datapath.OriginCrowdsec, datapath.ReasonBlocklist); err != nil {
			d.log.Error("crowdsec: ban failed", "prefixes", len(ps), "error", err)
			failed += len(ps)
			delete(groups, ttl)
		}
	}
	applied := 0
	if len(kept) > 0 {
		ps := make([]netip.Prefix, len(kept))
		for i, b := range kept {
			ps[i] = b.Prefix
		}
		eff, err := d.guard.Effective(ps)
		if err != nil {
			d.log.Error("crowdsec: ban prefixes", "error", err)
			eff = ps
		}
		for i, b := range kept {
			if _, ok := groups[kernelTTL(b.TTL)]; !ok {
				continue
			}
			kp := eff[i]
			if old, ok := l.ids[b.ID]; ok && old == kp {
				continue // the same decision again (a startup pull)
			}
			l.ids[b.ID] = kp
			l.refs[kp]++
			// The scenario is the ban's detector; records, not remember:
			// a pull of 100,000 decisions is not 100,000 recent bans.
			d.records[kp] = datapath.Ban{Prefix: kp, Origin: datapath.OriginCrowdsec, Reason: datapath.ReasonBlocklist,
				Detector: b.Scenario, Events: 1}
			d.journalCrowdsec(kp, start.Add(kernelTTL(b.TTL)), b.Scenario)
			applied++
		}
	}
	// A prefix that lost its last decision is unbanned, unless another
	// decision of this pull gave it a new one, or another origin (a log
	// ban, an operator) holds it now.
	var unban []netip.Prefix
	for _, kp := range gone {
		if l.refs[kp] > 0 {
			continue
		}
		if d.bannedByOther(kp) {
			continue
		}
		unban = append(unban, kp)
	}
	removed := 0
	if len(unban) > 0 {
		n, err := d.guard.UnbanMany(unban)
		if err != nil {
			d.log.Error("crowdsec: unban failed", "prefixes", len(unban), "error", err)
		} else {
			d.pj.batch.Unban(unban...)
		}
		removed = n
	}
	took := time.Since(start)
	// Bans that outlived a restart of this daemon after CrowdSec deleted
	// them. Walking every ban is the slow part of a large first pull, so
	// it comes after the new bans are in force, and is timed apart.
	var sweep time.Duration
	if delta.Startup {
		sweepStart := time.Now()
		if stray := d.strayCrowdsecBans(); len(stray) > 0 {
			n, err := d.guard.UnbanMany(stray)
			if err != nil {
				d.log.Error("crowdsec: unban failed", "prefixes", len(stray), "error", err)
			} else {
				d.pj.batch.Unban(stray...)
			}
			removed += n
		}
		sweep = time.Since(sweepStart)
	}
	d.commit() // before the pull is reported applied
	l.mu.Lock()
	l.active, l.lastApply = len(l.ids), took
	l.mu.Unlock()
	if applied+removed+failed+skipped > 0 || delta.Startup {
		d.dirty = true
		d.log.Info("crowdsec decisions applied", "startup", delta.Startup, "new", applied, "removed", removed,
			"allowlisted", skipped, "failed", failed, "not_for_us", delta.Skipped, "active", len(l.ids), "pulled", delta.Pulled.Round(time.Microsecond), "took", took.Round(time.Microsecond),
			"sweep", sweep.Round(time.Microsecond))
	}
}

// kernelTTL is the duration a decision's ban gets in the kernel: its
// remaining time rounded up, to the second, or to the minute for decisions
// of ten minutes or more. Decisions imported or pulled together then share
// a handful of durations, and so of batch writes; the exact end comes from
// the LAPI, which lists an expired decision as deleted in the next pull.
func kernelTTL(ttl time.Duration) time.Duration {
	unit := time.Second
	if ttl >= 10*time.Minute {
		unit = time.Minute
	}
	return (ttl + unit - 1).Truncate(unit)
}

// heldByOther says whether another origin already bans b's address for at
// least as long.
func (d *Daemon) heldByOther(b crowdsec.Remediation) bool {
	if b.Prefix.Bits() != b.Prefix.Addr().BitLen() || !d.otherReason(b.Prefix) {
		return false
	}
	old, ok, err := d.guard.BanOf(b.Prefix.Addr())
	if err != nil || !ok || old.Origin == datapath.OriginCrowdsec {
		return false
	}
	return old.Expires.IsZero() || !old.Expires.Before(time.Now().Add(b.TTL-time.Second))
}

// otherReason says whether this daemon has banned p itself (a log,
// slot-holder or SYN-rate ban) since CrowdSec did: only then is the kernel
// asked, so that a pull of 1,000 decisions costs no 1,000 map lookups.
// (An operator's `xdpguard ban` on an address CrowdSec also bans is not
// seen here, and goes when the CrowdSec decision does.)
func (d *Daemon) otherReason(kp netip.Prefix) bool {
	r, ok := d.records[kp]
	return ok && r.Origin != datapath.OriginCrowdsec
}

// bannedByOther says whether the exact ban at kp now has another origin.
func (d *Daemon) bannedByOther(kp netip.Prefix) bool {
	if !d.otherReason(kp) {
		return false
	}
	b, ok, err := d.guard.BanOf(kp.Addr())
	return err == nil && ok && b.Prefix == kp && b.Origin != datapath.OriginCrowdsec
}

// strayCrowdsecBans lists the kernel's crowdsec bans that no current
// decision holds: they survived a daemon restart after CrowdSec deleted
// them.
func (d *Daemon) strayCrowdsecBans() []netip.Prefix {
	bans, err := d.guard.Bans()
	if err != nil {
		d.log.Error("crowdsec: list bans", "error", err)
		return nil
	}
	var out []netip.Prefix
	for _, b := range bans {
		if b.Origin == datapath.OriginCrowdsec && d.cs.refs[b.Prefix] == 0 {
			out = append(out, b.Prefix)
		}
	}
	return out
}

// neverBanPrefix extends neverBan to CrowdSec's ranges: a range that covers
// loopback or one of the host's own addresses is refused whole. An
// allowlisted address inside a range needs nothing here: the kernel's
// allow rule is the longer match and wins.
func (d *Daemon) neverBanPrefix(p netip.Prefix) bool {
	if p.Bits() == p.Addr().BitLen() {
		return d.neverBan(p.Addr())
	}
	if p.Contains(netip.AddrFrom4([4]byte{127, 0, 0, 1})) || p.Contains(netip.IPv6Loopback()) {
		return true
	}
	for a := range d.own {
		if p.Contains(a) {
			return true
		}
	}
	for _, a := range d.cfg.Allow {
		// An allow rule wider than the range covers all of it.
		if a.Bits() <= p.Bits() && a.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// reportCrowdsec leaves the link's health in the state directory for
// `xdpguard status`; housekeeping calls it every tick.
func (d *Daemon) reportCrowdsec(now time.Time) {
	l := d.cs
	if l == nil {
		return
	}
	r := crowdsec.Report{LAPI: d.cfg.CrowdSec.LAPIURL, Updated: now, Decisions: len(l.ids)}
	if l.bouncer != nil {
		h := l.bouncer.Health()
		r.Pull = &h
	}
	if l.pusher != nil {
		s := l.pusher.Stats()
		r.Push = &s
	}
	if err := os.MkdirAll(d.cfg.StateDir, 0o700); err == nil {
		err = crowdsec.WriteReport(d.cfg.StateDir, r)
		if err != nil && !l.reportFailed {
			d.log.Warn("crowdsec: cannot write the status report", "error", err)
		}
		l.reportFailed = err != nil
	}
}

// signal posts a ban this daemon decided to the LAPI, when pushing is on.
// Bans of origin crowdsec never come here: only the log layer, the slot
// watcher and the kernel's SYN limit call it.
func (d *Daemon) signal(p netip.Prefix, scenario string, events int, start, stop time.Time, dur time.Duration, msg string) {
	if d.cs == nil || d.cs.pusher == nil || d.cfg.Kernel.Monitor {
		return
	}
	if !d.cs.pusher.Push(crowdsec.Signal{Prefix: p, Scenario: scenario, Events: events, Start: start, Stop: stop,
		Duration: dur, Message: msg}) {
		d.log.Warn("crowdsec: alert queue full, signal dropped", "prefix", p)
	}
}

// scenarioOf names the CrowdSec scenario of a log decision.
func scenarioOf(reason datapath.Reason) string {
	if reason == datapath.ReasonNoAuth {
		return crowdsec.ScenarioNoAuth
	}
	return "xdpguard/dovecot-" + reason.String()
}

var (
	descCSUp      = prometheus.NewDesc("xdpguard_crowdsec_up", "1 while the last call to the CrowdSec LAPI succeeded, by direction (pull: decisions, push: alerts).", []string{"direction"}, nil)
	descCSFail    = prometheus.NewDesc("xdpguard_crowdsec_failures", "Failed LAPI calls since the last success, by direction.", []string{"direction"}, nil)
	descCSActive  = prometheus.NewDesc("xdpguard_crowdsec_decisions", "CrowdSec decisions applied in the kernel.", nil, nil)
	descCSApply   = prometheus.NewDesc("xdpguard_crowdsec_apply_seconds", "Time the last pull took to apply in the kernel.", nil, nil)
	descCSPosted  = prometheus.NewDesc("xdpguard_crowdsec_alerts_total", "Alerts posted to the LAPI, and dropped because the queue was full.", []string{"result"}, nil)
	descCSLastOK  = prometheus.NewDesc("xdpguard_crowdsec_last_success_timestamp_seconds", "When a pull last succeeded.", nil, nil)
	crowdsecDescs = []*prometheus.Desc{descCSUp, descCSFail, descCSActive, descCSApply, descCSPosted, descCSLastOK}
)

// crowdsecCollector reads the link's health at scrape time.
type crowdsecCollector struct {
	mu sync.Mutex
	l  *crowdsecLink
}

func (c *crowdsecCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range crowdsecDescs {
		ch <- d
	}
}

func (c *crowdsecCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	l := c.l
	c.mu.Unlock()
	if l == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, label ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, label...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	if l.bouncer != nil {
		h := l.bouncer.Health()
		gauge(descCSUp, b2f(h.Up), "pull")
		gauge(descCSFail, float64(h.Failures), "pull")
		if !h.LastSuccess.IsZero() {
			gauge(descCSLastOK, float64(h.LastSuccess.UnixNano())/1e9)
		}
		l.mu.Lock()
		gauge(descCSActive, float64(l.active))
		gauge(descCSApply, l.lastApply.Seconds())
		l.mu.Unlock()
	}
	if l.pusher != nil {
		s := l.pusher.Stats()
		gauge(descCSUp, b2f(s.Up), "push")
		gauge(descCSFail, float64(s.Failures), "push")
		ch <- prometheus.MustNewConstMetric(descCSPosted, prometheus.CounterValue, float64(s.Posted), "posted")
		ch <- prometheus.MustNewConstMetric(descCSPosted, prometheus.CounterValue, float64(s.Dropped), "dropped")
	}
}

func (m *metrics) setCrowdsec(l *crowdsecLink) {
	m.cs.mu.Lock()
	m.cs.l = l
	m.cs.mu.Unlock()
}
