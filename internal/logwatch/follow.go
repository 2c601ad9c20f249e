package logwatch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nxadm/tail"
)

// Line is one complete line read from a followed file.
type Line struct {
	File string
	Data []byte
	// Arrival is when the line was read. Score live lines at Arrival.
	Arrival time.Time
	// Backlog marks lines replayed from the file's recent history at
	// start-up (FollowOptions.Backlog); score them at their own timestamp
	// (Engine.ProcessHistory).
	Backlog bool
	// Cursor is the journal's cursor of a line read from journald, to
	// resume after it (JournalOptions.Cursor); empty for files.
	Cursor string
}

// FollowOptions controls Follow.
type FollowOptions struct {
	// Backlog, when positive, replays the lines of the last Backlog (by
	// their timestamps) of each existing file before following it. Zero
	// starts at the end: old attacks must not ban anyone at start-up.
	Backlog time.Duration
	// MaxLineBytes: longer lines are dropped and counted (default
	// DefaultMaxLineBytes). A cut Dovecot line would have lost its
	// trustworthy tail, so it is not passed on.
	MaxLineBytes int
	// Buffer is the capacity of the Lines channel (default 4096).
	Buffer int
}

// FollowStats are the follower's counters.
type FollowStats struct {
	Lines   uint64 `json:"lines"`   // delivered
	Backlog uint64 `json:"backlog"` // delivered from the start-up backlog
	Capped  uint64 `json:"capped"`  // dropped for length
	Errors  uint64 `json:"errors"`  // read errors reported by the tailer
	// Restarts counts tailers started again after they gave up or stalled.
	Restarts uint64 `json:"restarts"`
}

// Follower follows files with inotify, across rotation by rename and by
// copytruncate, files that do not exist yet, and files deleted and
// recreated. Lines are delivered whole: a partial last line waits for its
// newline.
type Follower struct {
	lines                           chan Line
	nLines, nBacklog, capped, nErrs atomic.Uint64
	stalls                          atomic.Uint64
	wg                              sync.WaitGroup
	maxLine                         int
}

// Follow starts following files until ctx is done; the Lines channel is
// closed after that. Files that do not exist yet are read from their start
// when they appear.
func Follow(ctx context.Context, files []string, opt FollowOptions) (*Follower, error) {
	if len(files) == 0 {
		return nil, errors.New("follow: no files")
	}
	if opt.MaxLineBytes <= 0 {
		opt.MaxLineBytes = DefaultMaxLineBytes
	}
	if opt.Buffer <= 0 {
		opt.Buffer = 4096
	}
	f := &Follower{lines: make(chan Line, opt.Buffer), maxLine: opt.MaxLineBytes}
	type start struct {
		name    string
		loc     *tail.SeekInfo
		backlog [][]byte
	}
	var starts []start
	now := time.Now()
	for _, name := range files {
		st := start{name: name}
		off, backlog, err := startPosition(name, opt, now)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Read it from the start when it appears.
		case err != nil:
			return nil, fmt.Errorf("follow %s: %w", name, err)
		default:
			st.loc = &tail.SeekInfo{Offset: off, Whence: io.SeekStart}
			st.backlog = backlog
		}
		starts = append(starts, st)
	}
	var tails []*tail.Tail
	for _, st := range starts {
		t, err := openTail(st.name, st.loc)
		if err != nil {
			for _, t := range tails {
				t.Stop()
				t.Cleanup()
			}
			return nil, fmt.Errorf("follow %s: %w", st.name, err)
		}
		tails = append(tails, t)
	}
	for i, t := range tails {
		f.wg.Add(1)
		var pos int64
		if starts[i].loc != nil {
			pos = starts[i].loc.Offset
		}
		go f.forward(ctx, t, starts[i].name, starts[i].backlog, pos)
	}
	go func() {
		f.wg.Wait()
		close(f.lines)
	}()
	return f, nil
}

// Lines delivers the lines; it is closed when following has stopped.
func (f *Follower) Lines() <-chan Line { return f.lines }

// Stats returns the counters; safe from any goroutine.
func (f *Follower) Stats() FollowStats {
	return FollowStats{Lines: f.nLines.Load(), Backlog: f.nBacklog.Load(), Capped: f.capped.Load(), Errors: f.nErrs.Load(), Restarts: f.stalls.Load()}
}

func openTail(name string, loc *tail.SeekInfo) (*tail.Tail, error) {
	return tail.TailFile(name, tail.Config{
		Location:      loc,
		ReOpen:        true,
		MustExist:     false,
		Follow:        true,
		CompleteLines: true,
		Logger:        tail.DiscardingLogger,
	})
}

// forward passes one file's lines on. The tailer gives up on some races
// (a file deleted while it re-opens it); forward then starts a new one:
// where the old one stopped if the file is the same and not shorter, at
// its start otherwise (a new file). pos counts the bytes delivered from
// the file being read.
func (f *Follower) forward(ctx context.Context, t *tail.Tail, name string, backlog [][]byte, pos int64) {
	defer f.wg.Done()
	for _, b := range backlog {
		select {
		case f.lines <- Line{File: name, Data: b, Arrival: time.Now(), Backlog: true}:
			f.nBacklog.Add(1)
			f.nLines.Add(1)
		case <-ctx.Done():
			t.Stop()
			t.Cleanup()
			return
		}
	}
	ino := inode(name)
	for {
		f.pump(ctx, t, name, &pos, &ino)
		t.Stop()
		t.Cleanup()
		if ctx.Err() != nil {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			var loc *tail.SeekInfo
			if st, err := os.Stat(name); err == nil && st.Size() >= pos && (ino == 0 || inode(name) == ino) {
				loc = &tail.SeekInfo{Offset: pos, Whence: io.SeekStart}
			} else {
				pos = 0
			}
			nt, err := openTail(name, loc)
			if err == nil {
				t = nt
				ino = inode(name)
				break
			}
		}
	}
}

// stallCheck is how often pump checks that the tailer has not missed a
// file's re-creation (an inotify race in the tailer).
const stallCheck = time.Second

func (f *Follower) pump(ctx context.Context, t *tail.Tail, name string, pos *int64, ino *uint64) {
	tick := time.NewTicker(stallCheck)
	defer tick.Stop()
	last := time.Now()
	// The first line after we (re)started the tailer continues from pos;
	// a later line number 1 means the tailer re-opened the file itself.
	fresh := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if time.Since(last) < stallCheck {
				continue
			}
			st, err := os.Stat(name)
			if err != nil {
				continue
			}
			cur := inode(name)
			if (*ino != 0 && cur != *ino) || (cur == *ino && st.Size() > *pos && hasNewline(name, *pos)) || (*ino == 0 && st.Size() > 0 && *pos == 0) {
				// Replaced, or grown, without a line reaching us for a
				// second: the tailer missed an inotify event. Restarting
				// resumes at pos, the end of the last delivered line, so
				// nothing is lost or delivered twice.
				f.stalls.Add(1)
				return
			}
		case l, ok := <-t.Lines:
			if !ok {
				return
			}
			if l.Err != nil {
				f.nErrs.Add(1)
				continue
			}
			last = time.Now()
			if l.Num == 1 && !fresh {
				// The tailer re-opened the file (rotation, truncation):
				// positions count from its start again.
				*pos, *ino = 0, inode(name)
			}
			fresh = false
			*pos += int64(len(l.Text)) + 1
			if len(l.Text) == 0 {
				continue
			}
			if len(l.Text) > f.maxLine {
				f.capped.Add(1)
				continue
			}
			select {
			case f.lines <- Line{File: name, Data: []byte(l.Text), Arrival: l.Time}:
				f.nLines.Add(1)
			case <-ctx.Done():
				return
			}
		}
	}
}

// hasNewline reports whether a complete line follows offset pos: a partial
// line being written is not a stall.
func hasNewline(name string, pos int64) bool {
	fd, err := os.Open(name)
	if err != nil {
		return false
	}
	defer fd.Close()
	buf := make([]byte, 64<<10)
	n, _ := fd.ReadAt(buf, pos)
	return bytes.IndexByte(buf[:n], '\n') >= 0 || n == len(buf)
}

func inode(name string) uint64 {
	st, err := os.Stat(name)
	if err != nil {
		return 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

// startPosition returns where following starts: just after the last
// complete line (so a line being written is read whole, never from its
// middle), and, with a backlog, the recent lines before that point.
func startPosition(name string, opt FollowOptions, now time.Time) (int64, [][]byte, error) {
	fd, err := os.Open(name)
	if err != nil {
		return 0, nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return 0, nil, err
	}
	if st.IsDir() {
		return 0, nil, errors.New("is a directory")
	}
	if opt.Backlog > 0 {
		return readBacklog(fd, opt, now)
	}
	size := st.Size()
	const chunk = 64 << 10
	from := max(size-chunk, 0)
	buf := make([]byte, size-from)
	if _, err := fd.ReadAt(buf, from); err != nil && !errors.Is(err, io.EOF) {
		return 0, nil, err
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return from + int64(i) + 1, nil, nil
	}
	return size, nil, nil
}

// readBacklog scans the whole file and keeps the lines stamped within the
// backlog. Lines without a timestamp are kept if they follow a kept line.
func readBacklog(fd *os.File, opt FollowOptions, now time.Time) (int64, [][]byte, error) {
	cut := now.Add(-opt.Backlog)
	r := bufio.NewReaderSize(fd, opt.MaxLineBytes+1)
	var off int64
	var out [][]byte
	keep := false
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			n := int64(len(line))
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				n += int64(len(line))
			}
			if err != nil {
				return off, out, nil // an unfinished over-long line: follow from before it
			}
			off += n
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return off, out, nil // a partial last line is left to the tailer
			}
			return 0, nil, err
		}
		off += int64(len(line))
		body := line[:len(line)-1]
		if p := ParseHeader(body, true, now); !p.Time.IsZero() {
			keep = !p.Time.Before(cut)
		}
		if keep {
			out = append(out, append([]byte(nil), body...))
		}
	}
}

// FollowOptions returns the follower's options from the configuration.
func (c Config) FollowOptions() FollowOptions {
	return FollowOptions{Backlog: c.Backlog, MaxLineBytes: c.MaxLineBytes}
}
