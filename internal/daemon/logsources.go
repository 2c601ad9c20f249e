package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// journaldSocket exists where journald runs.
const journaldSocket = "/run/systemd/journal/socket"

// follow starts the configured log inputs, files and journal, and returns
// one channel of their lines (nil when there are none). On an error, the
// caller cancels ctx to stop what did start.
func (d *Daemon) follow(ctx context.Context) (<-chan logwatch.Line, error) {
	var srcs []<-chan logwatch.Line
	var stats followers
	if len(d.cfg.Logs.Files) > 0 {
		f, err := logwatch.Follow(ctx, d.cfg.Logs.Files, logwatch.FollowOptions{
			Backlog: d.cfg.Logs.ReadBack, MaxLineBytes: d.cfg.Detect.MaxLineBytes})
		if err != nil {
			return nil, err
		}
		srcs, stats = append(srcs, f.Lines()), append(stats, f)
	}
	if j := d.cfg.Logs.Journal; j.Enabled {
		f, err := logwatch.FollowJournal(ctx, logwatch.JournalOptions{Units: j.Units, Identifiers: j.Identifiers,
			Directory: j.Directory, Cursor: d.cursor, Backlog: d.cfg.Logs.ReadBack, MaxLineBytes: d.cfg.Detect.MaxLineBytes,
			OnExit: func(err error) {
				d.log.Warn("journalctl exited; starting it again after the last entry read", "error", err)
			}})
		if err != nil {
			return nil, fmt.Errorf("logs.journal: %w", err)
		}
		srcs, stats = append(srcs, f.Lines()), append(stats, f)
		if d.cursor != "" {
			d.log.Info("following the journal after the saved cursor")
		}
	}
	d.metrics.setFollower(stats)
	switch len(srcs) {
	case 0:
		return nil, nil
	case 1:
		return srcs[0], nil
	}
	out := make(chan logwatch.Line, 4096)
	var wg sync.WaitGroup
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range src {
				out <- l
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	return out, nil
}

// followers adds up the counters of several inputs.
type followers []interface{ Stats() logwatch.FollowStats }

func (fs followers) Stats() logwatch.FollowStats {
	var s logwatch.FollowStats
	for _, f := range fs {
		x := f.Stats()
		s.Lines += x.Lines
		s.Backlog += x.Backlog
		s.Capped += x.Capped
		s.Errors += x.Errors
		s.Restarts += x.Restarts
	}
	return s
}

// logSeen is what status reports of one input: lines read and the last
// one's arrival.
type logSeen struct {
	Lines uint64
	Last  time.Time
}

// noteLine records a line for status and, for the journal, its cursor:
// the cursor saved is the last line the engine has processed, so a
// restart reads on from there, nothing lost and nothing twice.
func (d *Daemon) noteLine(l logwatch.Line) {
	s := d.seen[l.File]
	if s == nil {
		s = &logSeen{}
		d.seen[l.File] = s
	}
	s.Lines++
	s.Last = l.Arrival
	if l.Cursor != "" {
		d.cursor = l.Cursor
	}
}

// checkLogSources warns about inputs that will read nothing, and says
// what to configure on a host that logs mail to the journal only.
func checkLogSources(logs config.Logs, journald bool, log *slog.Logger) {
	exists := func(name string) bool {
		_, err := os.Stat(name)
		return !errors.Is(err, os.ErrNotExist)
	}
	warnings := logSourceWarnings(logs, journald, exists)
	for _, w := range warnings {
		log.Warn(w)
	}
	if len(warnings) == 0 {
		// Some file exists; the default list names both the Debian and
		// the Red Hat path, so one missing is normal: said, not warned.
		for _, f := range logs.Files {
			if !exists(f) {
				log.Info("log file does not exist; it is followed when it appears", "file", f)
			}
		}
	}
}

func logSourceWarnings(logs config.Logs, journald bool, exists func(string) bool) []string {
	var out, missing []string
	for _, f := range logs.Files {
		if !exists(f) {
			missing = append(missing, f)
		}
	}
	switch {
	case len(logs.Files) > 0 && len(missing) == len(logs.Files) && !logs.Journal.Enabled && journald:
		out = append(out, fmt.Sprintf("no log file exists (%s) and journald runs: this host likely logs mail to the journal only "+
			"(Debian 12 without rsyslog); set logs.journal.enabled: true (or run --journal)", strings.Join(missing, ", ")))
	case len(logs.Files) > 0 && len(missing) == len(logs.Files):
		out = append(out, fmt.Sprintf("no log file exists yet (%s); each is followed when it appears", strings.Join(missing, ", ")))
	case len(logs.Files) == 0 && !logs.Journal.Enabled:
		out = append(out, "no log input (logs.files empty, logs.journal off): only the kernel and the slot-holder scan ban")
	}
	if logs.Journal.Enabled && !journald && logs.Journal.Directory == "" {
		out = append(out, "logs.journal is on but journald does not seem to run here ("+journaldSocket+" is missing)")
	}
	return out
}
