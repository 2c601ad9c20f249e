package daemon

import (
	"os"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/state"
)

// statusWriter is what the status file needs beyond the daemon's state.
type statusWriter struct {
	last   time.Time      // last written
	recent []datapath.Ban // ring of the latest bans, oldest first
	bans   int            // bans in force at the last save
	failed bool           // the last write failed (logged once)
}

// remember records the evidence of a ban the daemon made, for the state
// file and the status file's recent bans.
func (d *Daemon) remember(b datapath.Ban) {
	d.records[b.Prefix] = b
	d.journalBan(b)
	if len(d.status.recent) == state.MaxRecent {
		d.status.recent = append(d.status.recent[:0], d.status.recent[1:]...)
	}
	d.status.recent = append(d.status.recent, b)
}

// writeStatus publishes the daemon's status file (state.Status); stopped
// marks the last one, written at a clean shutdown.
func (d *Daemon) writeStatus(now time.Time, stopped bool) {
	st := state.Status{PID: os.Getpid(), Started: d.started, Written: now, ConfigFile: d.opts.ConfigFile,
		Interfaces: d.cfg.Interfaces, PinRoot: d.cfg.PinRoot, Monitor: d.cfg.Kernel.Monitor}
	if stopped {
		st.Stopped = now
	}
	input := func(name, kind string, exists bool) state.LogInput {
		in := state.LogInput{Name: name, Kind: kind, Exists: exists}
		if s := d.seen[name]; s != nil {
			in.Lines, in.Last = s.Lines, s.Last
		}
		return in
	}
	for _, f := range d.cfg.Logs.Files {
		_, err := os.Stat(f)
		st.Logs = append(st.Logs, input(f, "file", err == nil))
	}
	if d.cfg.Logs.Journal.Enabled {
		st.Logs = append(st.Logs, input(logwatch.JournalFile, "journal", true))
	}
	w := &d.slots
	st.Pressure = state.Pressure{On: w.on, Waiting: w.waiting, Silent: w.silent}
	if w.on {
		st.Pressure.Since = w.since
	}
	if stats, err := d.guard.Stats(); err == nil {
		st.Kernel.Stats = stats
	}
	st.Kernel.Bans = d.status.bans
	for i := len(d.status.recent) - 1; i >= 0; i-- {
		st.Recent = append(st.Recent, d.status.recent[i])
	}
	for _, s := range d.engine.TopSources(state.MaxScores) {
		st.Scores = append(st.Scores, state.Score{Prefix: s.Prefix, Score: s.Score, Events: s.Events})
	}
	d.status.last = now
	if err := d.store.WriteStatus(st); err != nil {
		if !d.status.failed {
			d.log.Error("write status file", "error", err)
		}
		d.status.failed = true
		return
	}
	d.status.failed = false
}
