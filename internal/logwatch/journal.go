package logwatch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// JournalFile is Line.File for lines read from the systemd journal; a
// custom rule's files list may name it.
const JournalFile = "journal"

// Following the journal: the choice.
//
// coreos/go-systemd/sdjournal links libsystemd through cgo, so a
// CGO_ENABLED=0 build (the static binary the README installs) could not
// have it, and a build host would need libsystemd-dev. Reading the journal
// files natively means tracking a file format systemd changes (compact
// mode, zstd) and its rotation and locking rules. journalctl is on every
// host that runs journald, reads its own format, filters with the same
// matches an operator types, and with --after-cursor resumes exactly after
// a given entry. So the follower runs `journalctl -o json --follow` and
// reads one JSON object per line; it costs a process and a JSON decode a
// line, measured in README.md against file input.

// JournalOptions controls FollowJournal.
type JournalOptions struct {
	// Units and Identifiers select entries: an entry of any of the units
	// (_SYSTEMD_UNIT) or with any of the syslog identifiers is read
	// (config.Logs.Journal has the defaults).
	Units       []string
	Identifiers []string
	// Directory reads the journal files of that directory (journalctl
	// --directory) instead of the system journal.
	Directory string
	// Cursor resumes after the entry with this cursor. Empty: start at the
	// end, or Backlog ago.
	Cursor string
	// Backlog, without a Cursor, replays the entries of the last Backlog
	// first, marked as Line.Backlog.
	Backlog time.Duration
	// MaxLineBytes: longer messages are dropped and counted.
	MaxLineBytes int
	// Buffer is the capacity of the Lines channel (default 4096).
	Buffer int
	// Command is the journalctl binary (default "journalctl").
	Command string
	// OnExit, if set, hears why journalctl exited when it did so by
	// itself; it is started again a second later.
	OnExit func(error)
}

// JournalFollower follows the journal through journalctl, restarting it
// after the last entry delivered when it exits.
type JournalFollower struct {
	opt                             JournalOptions
	lines                           chan Line
	nLines, nBacklog, capped, nErrs atomic.Uint64
	restarts                        atomic.Uint64
	mu                              sync.Mutex
	lastErr                         string
	// start is when following began; since, when replaying a backlog,
	// how far back.
	start, since time.Time
}

// ErrNoJournalctl is returned when journalctl cannot be found.
var ErrNoJournalctl = errors.New("journalctl not found: following the journal needs systemd's journalctl")

// FollowJournal starts following the journal until ctx is done; the Lines
// channel is closed after that.
func FollowJournal(ctx context.Context, opt JournalOptions) (*JournalFollower, error) {
	if len(opt.Units) == 0 && len(opt.Identifiers) == 0 {
		return nil, errors.New("follow journal: no units or identifiers to select")
	}
	if opt.Command == "" {
		opt.Command = "journalctl"
	}
	if _, err := exec.LookPath(opt.Command); err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoJournalctl, err)
	}
	if opt.MaxLineBytes <= 0 {
		opt.MaxLineBytes = DefaultMaxLineBytes
	}
	if opt.Buffer <= 0 {
		opt.Buffer = 4096
	}
	f := &JournalFollower{opt: opt, lines: make(chan Line, opt.Buffer), start: time.Now()}
	if opt.Cursor == "" && opt.Backlog > 0 {
		f.since = f.start.Add(-opt.Backlog)
	}
	go f.run(ctx)
	return f, nil
}

// Lines delivers the lines; it is closed when following has stopped.
func (f *JournalFollower) Lines() <-chan Line { return f.lines }

// Stats returns the counters; safe from any goroutine.
func (f *JournalFollower) Stats() FollowStats {
	return FollowStats{Lines: f.nLines.Load(), Backlog: f.nBacklog.Load(), Capped: f.capped.Load(),
		Errors: f.nErrs.Load(), Restarts: f.restarts.Load()}
}

// LastError is journalctl's last complaint, if it exited.
func (f *JournalFollower) LastError() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// journalArgs is journalctl's command line. Matches on one field are
// alternatives, "+" joins the groups: (unit A or B) or (identifier C or D).
func journalArgs(opt JournalOptions, cursor string, since time.Time) []string {
	args := []string{"--output=json", "--follow", "--no-pager", "--quiet",
		"--output-fields=MESSAGE,SYSLOG_IDENTIFIER,_PID,SYSLOG_PID,_HOSTNAME"}
	if opt.Directory != "" {
		args = append(args, "--directory="+opt.Directory)
	}
	switch {
	case cursor != "":
		args = append(args, "--after-cursor="+cursor)
	case !since.IsZero():
		args = append(args, "--since=@"+strconv.FormatInt(since.Unix(), 10))
	default:
		args = append(args, "--lines=0")
	}
	for _, u := range opt.Units {
		args = append(args, "_SYSTEMD_UNIT="+u)
	}
	if len(opt.Units) > 0 && len(opt.Identifiers) > 0 {
		args = append(args, "+")
	}
	for _, id := range opt.Identifiers {
		args = append(args, "SYSLOG_IDENTIFIER="+id)
	}
	return args
}

func (f *JournalFollower) run(ctx context.Context) {
	defer close(f.lines)
	cursor := f.opt.Cursor
	for {
		err := f.follow(ctx, &cursor)
		if ctx.Err() != nil {
			return
		}
		// journalctl exited by itself: resume after the last entry
		// delivered, so nothing is lost or read twice.
		f.restarts.Add(1)
		if err == nil {
			err = errors.New("journalctl exited")
		}
		f.mu.Lock()
		f.lastErr = err.Error()
		f.mu.Unlock()
		if f.opt.OnExit != nil {
			f.opt.OnExit(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// follow runs journalctl once, delivering its entries and advancing
// *cursor past each one delivered.
func (f *JournalFollower) follow(ctx context.Context, cursor *string) error {
	since := f.since
	if *cursor != "" {
		since = time.Time{}
	}
	cmd := exec.CommandContext(ctx, f.opt.Command, journalArgs(f.opt, *cursor, since)...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	err = f.read(ctx, out, cursor, since)
	out.Close()
	werr := cmd.Wait()
	if err == nil && werr != nil && ctx.Err() == nil {
		err = fmt.Errorf("journalctl: %w: %s", werr, strings.TrimSpace(stderr.String()))
	}
	return err
}

// entry is what the follower needs of a journal entry. MESSAGE is a string,
// or an array of bytes when it is not valid UTF-8.
type entry struct {
	Cursor   string          `json:"__CURSOR"`
	Realtime string          `json:"__REALTIME_TIMESTAMP"`
	Message  json.RawMessage `json:"MESSAGE"`
	Ident    string          `json:"SYSLOG_IDENTIFIER"`
	PID      string          `json:"_PID"`
	SysPID   string          `json:"SYSLOG_PID"`
	Host     string          `json:"_HOSTNAME"`
}

func (f *JournalFollower) read(ctx context.Context, r io.Reader, cursor *string, since time.Time) error {
	br := bufio.NewReaderSize(r, 64<<10)
	limit := 4*f.opt.MaxLineBytes + 4096 // a JSON-escaped message and its fields
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) <= limit {
			buf = append(buf, chunk...)
		} else {
			buf = append(buf[:0], '!') // too long: dropped at its newline
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		line := buf
		buf = buf[:0]
		var e entry
		if line[0] == '!' {
			f.capped.Add(1)
			continue
		}
		if json.Unmarshal(line, &e) != nil {
			f.nErrs.Add(1)
			continue
		}
		data, at, ok := e.line()
		if !ok {
			f.nErrs.Add(1)
			*cursor = e.Cursor
			continue
		}
		*cursor = e.Cursor
		if len(data) > f.opt.MaxLineBytes {
			f.capped.Add(1)
			continue
		}
		l := Line{File: JournalFile, Data: data, Arrival: time.Now(), Cursor: e.Cursor}
		if !since.IsZero() && at.Before(f.start) {
			l.Backlog = true
		}
		select {
		case f.lines <- l:
			f.nLines.Add(1)
			if l.Backlog {
				f.nBacklog.Add(1)
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// line renders an entry as the syslog line the rules parse, with an
// RFC 3339 timestamp: "2026-12-02T03:10:39.645643+00:00 mx
// postfix/smtpd[123]: message".
func (e *entry) line() ([]byte, time.Time, bool) {
	us, err := strconv.ParseInt(e.Realtime, 10, 64)
	if err != nil || e.Cursor == "" {
		return nil, time.Time{}, false
	}
	var msg []byte
	if len(e.Message) > 0 && e.Message[0] == '[' {
		var raw []byte
		var ints []int
		if json.Unmarshal(e.Message, &ints) != nil {
			return nil, time.Time{}, false
		}
		for _, c := range ints {
			raw = append(raw, byte(c))
		}
		msg = raw
	} else {
		var s string
		if json.Unmarshal(e.Message, &s) != nil {
			return nil, time.Time{}, false
		}
		msg = []byte(s)
	}
	at := time.UnixMicro(us).UTC()
	host := e.Host
	if host == "" {
		host = "localhost"
	}
	pid := e.SysPID
	if pid == "" {
		pid = e.PID
	}
	b := make([]byte, 0, 48+len(host)+len(e.Ident)+len(msg))
	b = at.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, host...)
	b = append(b, ' ')
	b = append(b, e.Ident...)
	if pid != "" {
		b = append(b, '[')
		b = append(b, pid...)
		b = append(b, ']')
	}
	b = append(b, ':', ' ')
	b = append(b, bytes.ReplaceAll(msg, []byte{'\n'}, []byte{' '})...)
	return b, at, true
}

// limitedWriter keeps the first n bytes written.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
