package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// maxHistoryBytes bounds how much of each log file's end is read at start
// for past logins: a day of a busy server's mail log, read in well under a
// second by the prefilter below.
const maxHistoryBytes = 64 << 20

// learnHistory learns known-good sources from the successful logins
// already in the log files (their last maxHistoryBytes), within the
// retention, so that a fresh install, or a start after the state was
// lost, knows the regular users before the first attack. Only logins are
// read: old attack lines must not ban anyone at start-up, which is why
// logs.read_back is 0 by default. Lines without a timestamp are skipped.
func (d *Daemon) learnHistory(now time.Time) {
	if d.cfg.KnownGood.MaxEntries == 0 {
		return
	}
	for _, path := range d.cfg.Logs.Files {
		n, err := d.learnFile(path, now)
		if err != nil {
			d.log.Warn("known-good sources: could not read the log's history", "file", path, "error", err)
		} else if n > 0 {
			d.log.Info("known-good sources learnt from the log's history", "file", path, "logins", n)
		}
	}
}

// loginMarks are cheap substrings that every login line holds, so the
// parser sees only candidate lines.
var loginMarks = [][]byte{[]byte("-login: "), []byte("sasl_username=")}

func (d *Daemon) learnFile(path string, now time.Time) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	start := max(0, st.Size()-maxHistoryBytes)
	if _, err := f.Seek(start, 0); err != nil {
		return 0, err
	}
	rd := bufio.NewReaderSize(f, 64<<10)
	// Everything up to the first newline of a cut file is a partial line.
	skip := start > 0
	n := 0
	cut := now.Add(-d.cfg.KnownGood.Retention)
	for {
		line, err := rd.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) { // a line too long to be a login: skip it
			line = nil
			_, err = rd.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		if skip {
			skip = false
		} else if d.learnLine(bytes.TrimSuffix(line, []byte("\n")), path, now, cut) {
			n++
		}
		if err != nil { // EOF
			break
		}
	}
	return n, nil
}

// learnLine learns the source of a login line seen within the retention.
func (d *Daemon) learnLine(line []byte, path string, now, cut time.Time) bool {
	if !bytes.Contains(line, loginMarks[0]) && !bytes.Contains(line, loginMarks[1]) {
		return false
	}
	if _, kind, _, ok := d.engine.Classify(line, path); !ok || kind != logwatch.KindLogin {
		return false
	}
	// ProcessHistory gives the line's own time; for a login it only
	// counts the line and withdraws no-auth events (there are none yet at
	// start).
	r := d.engine.ProcessHistory(line, path, time.Time{})
	if r.Time.IsZero() || r.Time.Before(cut) || r.Time.After(now.Add(time.Minute)) {
		return false
	}
	d.learn(r)
	return true
}
