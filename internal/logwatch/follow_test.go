package logwatch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startFollow(t *testing.T, files []string, opt FollowOptions) *Follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f, err := Follow(ctx, files, opt)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		for range f.Lines() {
		}
	})
	// Let the tailers open their files and install inotify watches.
	time.Sleep(150 * time.Millisecond)
	return f
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	fd, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteString(s); err != nil {
		t.Fatal(err)
	}
	fd.Close()
}

// lineWait bounds the wait for a line that must come. It is long because a
// re-created file can be missed by the tailer's inotify watch and found only
// by the stall check (stallCheck), and because CI runs these tests on a busy
// 2-core machine: a passing test never waits this long, and a failing one
// fails all the same. Five seconds failed once in four fresh runs.
const lineWait = 30 * time.Second

func expect(t *testing.T, f *Follower, want ...string) []Line {
	t.Helper()
	var got []Line
	for _, w := range want {
		select {
		case l := <-f.Lines():
			if string(l.Data) != w {
				t.Fatalf("got line %q, want %q", l.Data, w)
			}
			got = append(got, l)
		case <-time.After(lineWait):
			t.Fatalf("timed out after %v waiting for %q", lineWait, w)
		}
	}
	return got
}

func expectNothing(t *testing.T, f *Follower, d time.Duration) {
	t.Helper()
	select {
	case l := <-f.Lines():
		t.Fatalf("unexpected line %q", l.Data)
	case <-time.After(d):
	}
}

// afterRotation does to p what a rotation does (rotate must not fail),
// gives the follower a moment to notice, and then checks that lines
// appended to p still arrive.
func afterRotation(t *testing.T, f *Follower, p string, rotate func() error, lines ...string) {
	t.Helper()
	if err := rotate(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	appendFile(t, p, strings.Join(lines, "\n")+"\n")
	expect(t, f, lines...)
}

func TestFollowStartsAtEndAndRenameRotation(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "maillog")
	os.WriteFile(p, []byte("old 1\nold 2\n"), 0o644)
	f := startFollow(t, []string{p}, FollowOptions{})
	expectNothing(t, f, 200*time.Millisecond)

	start := time.Now()
	appendFile(t, p, "new 1\n")
	got := expect(t, f, "new 1")
	t.Logf("inotify reaction time: %v", got[0].Arrival.Sub(start))
	if got[0].Backlog || got[0].File != p {
		t.Fatalf("line %+v", got[0])
	}

	// logrotate without copytruncate: rename, create a new file.
	afterRotation(t, f, p, func() error { return os.Rename(p, p+".1") }, "after rename 1", "after rename 2")
	appendFile(t, p, "after rename 3\n")
	expect(t, f, "after rename 3")
}

func TestFollowCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "maillog")
	os.WriteFile(p, []byte(strings.Repeat("filler line before rotation\n", 50)), 0o644)
	f := startFollow(t, []string{p}, FollowOptions{})
	appendFile(t, p, "before truncate\n")
	expect(t, f, "before truncate")
	// logrotate copytruncate: copy, then truncate in place.
	data, _ := os.ReadFile(p)
	os.WriteFile(p+".1", data, 0o644)
	afterRotation(t, f, p, func() error { return os.Truncate(p, 0) }, "after truncate")
}

func TestFollowMissingDeletedRecreated(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mail.log")
	f := startFollow(t, []string{p}, FollowOptions{})
	appendFile(t, p, "first line of a new file\n")
	expect(t, f, "first line of a new file")
	afterRotation(t, f, p, func() error { return os.Remove(p) }, "recreated")
}

func TestFollowPartialLongBinaryLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "maillog")
	os.WriteFile(p, nil, 0o644)
	f := startFollow(t, []string{p}, FollowOptions{MaxLineBytes: 1024})
	appendFile(t, p, "Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=198.18.")
	expectNothing(t, f, 300*time.Millisecond)
	appendFile(t, p, "200.102, lip=198.18.0.1\n")
	got := expect(t, f, "Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=198.18.200.102, lip=198.18.0.1")
	e := newEngine(t, nil)
	if _, _, addr, ok := e.Classify(got[0].Data, p); !ok || addr.String() != "198.18.200.102" {
		t.Fatalf("reassembled line: %v %v", ok, addr)
	}
	appendFile(t, p, strings.Repeat("x", 5000)+"\nafter long\n")
	expect(t, f, "after long")
	if c := f.Stats().Capped; c != 1 {
		t.Fatalf("capped %d, want 1", c)
	}
	bin := "nul \x00 and invalid \xff\xfe utf-8 \xc3"
	appendFile(t, p, bin+"\nnext\n")
	got = expect(t, f, bin, "next")
	if !bytes.Equal(got[0].Data, []byte(bin)) {
		t.Fatal("bytes changed")
	}
}

func TestFollowBacklog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "maillog")
	now := time.Now()
	line := func(at time.Time, n int) string {
		return fmt.Sprintf("%s vm dovecot: pop3-login: Disconnected (no auth attempts): rip=198.18.3.%d, lip=198.18.0.1", at.Format(time.Stamp), n)
	}
	old, recent := line(now.Add(-2*time.Hour), 1), line(now.Add(-5*time.Minute), 2)
	os.WriteFile(p, []byte(old+"\n"+recent+"\nno timestamp, follows a recent line\npartial"), 0o644)
	f := startFollow(t, []string{p}, FollowOptions{Backlog: 30 * time.Minute})
	got := expect(t, f, recent, "no timestamp, follows a recent line")
	if !got[0].Backlog || !got[1].Backlog {
		t.Fatal("backlog lines not marked")
	}
	appendFile(t, p, " line completed\n")
	got = expect(t, f, "partial line completed")
	if got[0].Backlog {
		t.Fatal("live line marked as backlog")
	}
	if s := f.Stats(); s.Backlog != 2 || s.Lines != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// A tailer restarted after a stall resumes where it was, without
// delivering a line twice.
func TestFollowNoDuplicatesAfterStart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "maillog")
	os.WriteFile(p, []byte(strings.Repeat("existing line\n", 2000)), 0o644)
	f := startFollow(t, []string{p}, FollowOptions{MaxLineBytes: 256})
	for i := 0; i < 3; i++ {
		appendFile(t, p, fmt.Sprintf("live %d\n", i))
		expect(t, f, fmt.Sprintf("live %d", i))
	}
	time.Sleep(2500 * time.Millisecond)
	expectNothing(t, f, 100*time.Millisecond)
	if s := f.Stats(); s.Restarts != 0 || s.Lines != 3 {
		t.Fatalf("stats %+v", s)
	}
}

// A partial line that stays unfinished is not mistaken for a stall.
func TestFollowPendingPartialLineIsNotAStall(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "maillog")
	os.WriteFile(p, []byte("complete\n"), 0o644)
	f := startFollow(t, []string{p}, FollowOptions{})
	appendFile(t, p, "half a li")
	time.Sleep(2500 * time.Millisecond)
	appendFile(t, p, "ne\n")
	expect(t, f, "half a line")
	if s := f.Stats(); s.Restarts != 0 {
		t.Fatalf("stats %+v", s)
	}
}
