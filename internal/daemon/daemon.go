// Package daemon is `xdpguard run`: it attaches (or adopts) the XDP program,
// follows the mail logs, turns log decisions and kernel auto-bans into bans,
// frees the login slots banned sources hold, persists bans and offender
// history, and serves metrics.
//
// One goroutine owns the decision engine and the state: log lines, kernel
// events, reloads and the housekeeping tick all arrive on channels to the
// main loop, so nothing here needs a lock.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/hostaddr"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/state"
)

// Config is everything the daemon runs on: the file (with flags applied) and
// its decoded detection policy.
type Config struct {
	config.Config
	Detect logwatch.Config
}

// Options are the daemon's run-time choices that are not configuration.
type Options struct {
	// Reload re-reads the configuration on SIGHUP. Nil: reloads keep the
	// current configuration.
	Reload func() (Config, error)
	// DetachOnExit removes the program and its pins on shutdown. By
	// default protection, and the bans, stay in force without the daemon.
	DetachOnExit bool
	Logger       *slog.Logger
	// Tick is the housekeeping period: sweeping expired bans, saving state.
	Tick time.Duration
	// ConfigFile is the file the configuration came from, for status.
	ConfigFile string
}

// Daemon is a running xdpguard.
type Daemon struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	guard   *datapath.Guard
	engine  *logwatch.Engine
	store   state.Store
	metrics *metrics

	// records remembers the evidence behind the daemon's bans, for the
	// state file: the kernel keeps only origin and reason codes.
	records map[netip.Prefix]datapath.Ban
	// configAllow is the allowlist the daemon put in the kernel, so that a
	// reload can take back what the file no longer lists, and nothing else.
	configAllow map[netip.Prefix]bool
	// dirty: something changed that only compaction writes in full.
	dirty     bool
	nextSweep time.Time
	pending   []pendingBan
	own       map[netip.Addr]bool // the host's addresses
	slots     slotWatch
	// cursor is the journal cursor of the last line processed; seen
	// counts lines per input, for status.
	cursor   string
	seen     map[string]*logSeen
	started  time.Time
	status   statusWriter
	kg       kgState       // known-good sources (knowngood.go)
	evict    evictState    // pre-auth evictions under pressure (evict.go)
	conns    connSource    // where the slot checks read connections (conns.go)
	priority priorityState // known-good sources' own accept queue (priority.go)
	esc      escState      // IPv6 escalation (escalate.go)
	tr       trawlState    // user-name trawlers (trawl.go)
	cs       *crowdsecLink // nil without crowdsec.lapi_url
	pj       persistState  // the state journal (persist.go)
}

// maxBatch bounds how many queued log lines are scored before their bans
// are written.
const maxBatch = 4096

// Run runs the daemon until ctx is done. reload receives a value per SIGHUP.
func Run(ctx context.Context, cfg Config, opts Options, reload <-chan struct{}) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	d := &Daemon{cfg: cfg, opts: opts, log: opts.Logger, store: state.Store{Dir: cfg.StateDir},
		records: map[netip.Prefix]datapath.Ban{}, configAllow: map[netip.Prefix]bool{}, own: hostaddr.Set(),
		seen: map[string]*logSeen{}, started: time.Now()}
	if err := d.start(); err != nil {
		if d.guard != nil {
			// A failed start leaves nothing behind that it created.
			if derr := d.guard.Discard(); derr != nil {
				d.log.Warn("cleaning up after the failed start", "error", derr)
			}
		}
		return err
	}
	defer d.guard.Close()
	defer d.priority.close()
	defer d.conns.close()
	return d.loop(ctx, reload)
}

func (d *Daemon) start() error {
	// The journal is read while the program loads and its maps are made:
	// neither needs the other, and with a million bans each takes a few
	// hundred milliseconds.
	loaded := d.loadStateAsync()
	_, err := os.Stat(journaldSocket)
	checkLogSources(d.cfg.Logs, err == nil, d.log)

	k := d.cfg.Kernel
	d.guard, err = datapath.New(datapath.Options{PinRoot: d.cfg.PinRoot, MaxBans: uint32(k.MaxBans),
		MaxTracked: uint32(k.MaxTracked), MaxCIDR: uint32(k.MaxCIDRRules)})
	st, bans, lerr := loaded()
	if err != nil {
		return err
	}
	if lerr != nil {
		return lerr
	}
	d.cursor = st.JournalCursor
	if err := d.guard.SetSettings(d.cfg.Kernel.Settings()); err != nil {
		return err
	}
	if err := d.syncAllow(); err != nil {
		return err
	}
	if err := d.restoreAllow(st.Allow); err != nil {
		return err
	}
	mode := d.cfg.XDPMode
	for _, ifname := range d.cfg.Interfaces {
		used, err := d.guard.Attach(ifname, mode)
		if err != nil {
			return err
		}
		d.log.Info("attached", "iface", ifname, "mode", used.String())
	}

	d.engine, err = logwatch.New(d.cfg.Detect)
	if err != nil {
		return fmt.Errorf("detect: %w", err)
	}
	for rule, why := range d.engine.DisabledRules() {
		d.log.Warn("rule disabled", "rule", rule, "why", why)
	}
	if err := d.engine.History().Restore(st.Offenders, time.Now()); err != nil {
		d.log.Error("offender history not restored", "error", err)
	}
	if err := d.restoreBans(bans); err != nil {
		return err
	}
	d.restoreKnownGood(st.KnownGood, time.Now())
	d.startPriority()
	d.metrics, err = newMetrics(d.cfg.Metrics.Listen, d.guard, d.priority.p, d.log)
	return err
}

func (d *Daemon) loop(ctx context.Context, reload <-chan struct{}) error {
	events, err := d.guard.OpenEvents()
	if err != nil {
		return err
	}
	evc := make(chan datapath.Ban, 1024)
	go func() {
		for {
			ev, err := events.Read()
			if errors.Is(err, datapath.ErrClosed) {
				close(evc)
				return
			}
			if err != nil {
				d.log.Error("kernel event", "error", err)
				time.Sleep(100 * time.Millisecond) // no hot loop on a broken reader
				continue
			}
			select {
			case evc <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer events.Close()

	csDeltas, err := d.startCrowdsec(ctx)
	if err != nil {
		return err
	}

	fctx, stopFollow := context.WithCancel(ctx)
	lines, err := d.follow(fctx)
	if err != nil {
		stopFollow()
		return err
	}
	tick := time.NewTicker(d.opts.Tick)
	defer tick.Stop()
	// The slot-holder detector has a clock of its own: it looks several
	// times a second while the login slots are under pressure.
	slotTick := time.NewTicker(slotPeriod(d.cfg.SlotHolders))
	defer slotTick.Stop()
	d.log.Info("running", "interfaces", d.cfg.Interfaces, "logs", d.cfg.Logs.Files, "journal", d.cfg.Logs.Journal.Enabled,
		"monitor", d.cfg.Kernel.Monitor, "pin_root", d.cfg.PinRoot, "state_dir", d.cfg.StateDir)
	sd := newNotifier(d.log) // systemd: ready now, watchdog on the tick
	sd.ready()

	for {
		select {
		case <-ctx.Done():
			stopFollow()
			sd.stopping()
			return d.shutdown()
		case l, ok := <-lines:
			if !ok {
				lines = nil // follower stopped (reload restarts it)
				continue
			}
			d.onLine(l)
			// Whatever else is already queued joins the same batch; a
			// lone line is flushed at once, so reaction time does not
			// wait for company.
			for len(lines) > 0 && len(d.pending) < maxBatch {
				if l, ok = <-lines; ok {
					d.onLine(l)
				}
			}
			if len(d.pending) > 0 {
				d.flush()
			}
			d.syncKnownGood()
		case ev, ok := <-evc:
			if !ok {
				evc = nil
				continue
			}
			// A SYN flood from many sources bans many at once: one
			// socket scan for the whole batch.
			batch := []datapath.Ban{ev}
			for len(evc) > 0 && len(batch) < maxBatch {
				batch = append(batch, <-evc)
			}
			d.onKernelBans(batch)
		case delta := <-csDeltas:
			d.onCrowdsec(delta)
		case <-tick.C:
			d.housekeeping(time.Now())
			sd.alive(time.Now())
		case <-slotTick.C:
			d.watchSlots(time.Now())
		case <-reload:
			next, restart, err := d.reload()
			if err != nil {
				d.log.Error("reload failed; keeping the running configuration", "error", err)
				continue
			}
			slotTick.Reset(slotPeriod(d.cfg.SlotHolders))
			if restart {
				stopFollow()
				fctx, stopFollow = context.WithCancel(ctx)
				lines, err = next(fctx)
				if err != nil {
					stopFollow()
					d.log.Error("follow logs after reload", "error", err)
				}
			}
		}
	}
}

// housekeeping runs every tick. Saving and sweeping walk every ban, which
// is cheap for thousands and not for a million-entry blocklist, so each
// waits at least ten times as long as it last took.
func (d *Daemon) housekeeping(now time.Time) {
	d.metrics.update(d.engine.Counters())
	d.reportCrowdsec(now)
	d.engine.Expire(now)
	d.expireKnownGood(now)
	d.expireTrawl(now)
	if now.After(d.nextSweep) {
		start := time.Now()
		if n, err := d.guard.Sweep(); err != nil {
			d.log.Error("sweep expired bans", "error", err)
		} else if n > 0 {
			d.dirty = true
		}
		d.nextSweep = now.Add(max(10*time.Second, 10*time.Since(start)))
	}
	d.persistTick(now)
	if now.Sub(d.status.last) >= state.StatusInterval {
		d.writeStatus(now, false)
	}
}

func (d *Daemon) shutdown() error {
	d.setAdmission(false) // pressure cannot end without the daemon
	err := d.compact()
	d.writeStatus(time.Now(), true)
	d.metrics.close()
	if d.opts.DetachOnExit {
		if derr := d.guard.DetachAll(); derr != nil {
			return errors.Join(err, derr)
		}
		d.log.Info("detached: protection removed (--detach-on-exit)")
	} else {
		d.log.Info("stopped; the XDP program and its bans stay in force")
	}
	return err
}
