package logwatch

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// collect reads lines until want arrive or 60 s pass.
func collect(t *testing.T, lines <-chan Line, want int) []Line {
	t.Helper()
	var got []Line
	deadline := time.After(60 * time.Second)
	for len(got) < want {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("lines closed after %d of %d", len(got), want)
			}
			if strings.HasSuffix(string(l.Data), ": marker") {
				// A straggler of waitFollowing's: on a busy machine
				// one may come after its drain gave up waiting.
				continue
			}
			got = append(got, l)
		case <-deadline:
			t.Fatalf("got %d of %d lines in 60s", len(got), want)
		}
	}
	return got
}

// seqOf reads the sequence number at the end of a test message.
func seqOf(t *testing.T, l Line) int {
	t.Helper()
	i := strings.LastIndex(string(l.Data), " seq=")
	n, err := strconv.Atoi(string(l.Data[i+5:]))
	if i < 0 || err != nil {
		t.Fatalf("not a test line: %q", l.Data)
	}
	return n
}

func expectSeq(t *testing.T, got []Line, from int) {
	t.Helper()
	for i, l := range got {
		if n := seqOf(t, l); n != from+i {
			t.Fatalf("line %d is seq %d, want %d (lost or duplicated): %q", i, n, from+i, l.Data)
		}
	}
}

// The follower reads a real journald across a restart of journald, and
// resumes from a cursor after its own restart: no line lost, none twice.
func TestJournalFollowAcrossRestarts(t *testing.T) {
	j := testutil.StartJournald(t)
	ident := fmt.Sprintf("xdpguard-statusjournal-%d", os.Getpid())
	other := ident + "-other"
	opt := JournalOptions{Identifiers: []string{ident}, Directory: j.Dir()}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := FollowJournal(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	// journalctl starts at the end: wait until it is running before
	// logging, by logging until a marker arrives.
	waitFollowing(t, j, ident, f.Lines())

	const n = 300
	for i := 0; i < n; i++ {
		j.Send(other, "not selected")
		j.Send(ident, fmt.Sprintf("imap-login: Disconnected: test seq=%d", i))
	}
	got := collect(t, f.Lines(), n)
	expectSeq(t, got, 0)
	l := got[0]
	if l.File != JournalFile || l.Cursor == "" || !strings.Contains(string(l.Data), " "+ident+"[4242]: imap-login: Disconnected: test seq=0") {
		t.Fatalf("line %+v", l)
	}
	if p := ParseHeader(l.Data, true, time.Time{}); string(p.Tag) != ident || p.Time.IsZero() {
		t.Fatalf("the rules' header parser reads tag %q time %v from %q", p.Tag, p.Time, l.Data)
	}

	j.Restart()
	for i := n; i < 2*n; i++ {
		j.Send(ident, fmt.Sprintf("imap-login: Disconnected: test seq=%d", i))
	}
	expectSeq(t, collect(t, f.Lines(), n), n)

	// The daemon stops (its last cursor is saved), lines keep coming, and
	// it starts again from the cursor.
	cursor := lastCursor(t, f, j, ident, 2*n)
	cancel()
	for range f.Lines() {
	}
	for i := 2*n + 1; i < 3*n; i++ {
		j.Send(ident, fmt.Sprintf("imap-login: Disconnected: test seq=%d", i))
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	opt.Cursor = cursor
	f2, err := FollowJournal(ctx2, opt)
	if err != nil {
		t.Fatal(err)
	}
	j.Send(ident, fmt.Sprintf("imap-login: Disconnected: test seq=%d", 3*n))
	expectSeq(t, collect(t, f2.Lines(), n), 2*n+1)
	if st := f2.Stats(); st.Lines != n || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}

	// Without a cursor, a backlog replays the recent entries, marked.
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	f3, err := FollowJournal(ctx3, JournalOptions{Identifiers: []string{ident}, Directory: j.Dir(), Backlog: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for want <= 3*n {
		l := collect(t, f3.Lines(), 1)[0]
		if !l.Backlog {
			t.Fatalf("replayed line not marked backlog: %q", l.Data)
		}
		if strings.HasSuffix(string(l.Data), ": marker") {
			continue
		}
		if seqOf(t, l) != want {
			t.Fatalf("backlog: seq %d, want %d", seqOf(t, l), want)
		}
		want++
	}
	j.Send(ident, "imap-login: Disconnected: test seq=live")
	if l := collect(t, f3.Lines(), 1)[0]; l.Backlog || !strings.HasSuffix(string(l.Data), "seq=live") {
		t.Fatalf("live line after the backlog: %+v", l)
	}
}

// lastCursor logs one more line (seq) and returns its cursor, as the
// daemon would hold it after processing it.
func lastCursor(t *testing.T, f *JournalFollower, j *testutil.Journald, ident string, seq int) string {
	t.Helper()
	j.Send(ident, fmt.Sprintf("imap-login: Disconnected: test seq=%d", seq))
	l := collect(t, f.Lines(), 1)[0]
	if seqOf(t, l) != seq {
		t.Fatalf("got %q", l.Data)
	}
	return l.Cursor
}

// waitFollowing logs markers until the follower delivers one.
func waitFollowing(t *testing.T, j *testutil.Journald, ident string, lines <-chan Line) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		j.Send(ident, "marker")
		select {
		case l := <-lines:
			if !strings.HasSuffix(string(l.Data), ": marker") {
				t.Fatalf("unexpected first line %q", l.Data)
			}
			// Drain the other markers already sent.
			for {
				select {
				case l := <-lines:
					if !strings.HasSuffix(string(l.Data), ": marker") {
						t.Fatalf("unexpected line %q", l.Data)
					}
				case <-time.After(500 * time.Millisecond):
					return
				}
			}
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatal("the follower delivered nothing in 60s")
}

// journalctl's command line: a unit or an identifier selects an entry.
func TestJournalArgs(t *testing.T) {
	got := strings.Join(journalArgs(JournalOptions{Units: []string{"dovecot.service"}, Identifiers: []string{"postfix/smtpd", "dovecot"}},
		"s=abc;i=1", time.Time{}), " ")
	for _, want := range []string{"--output=json", "--follow", "--after-cursor=s=abc;i=1",
		"_SYSTEMD_UNIT=dovecot.service + SYSLOG_IDENTIFIER=postfix/smtpd SYSLOG_IDENTIFIER=dovecot"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := strings.Join(journalArgs(JournalOptions{Identifiers: []string{"x"}}, "", time.Time{}), " "); !strings.Contains(got, "--lines=0") || strings.Contains(got, "+") {
		t.Errorf("no cursor: %q", got)
	}
	if got := strings.Join(journalArgs(JournalOptions{Identifiers: []string{"x"}}, "", time.Unix(1700000000, 0)), " "); !strings.Contains(got, "--since=@1700000000") {
		t.Errorf("backlog: %q", got)
	}
}

// An entry becomes the syslog line the rules parse; a message that is not
// UTF-8 (journalctl writes it as a byte array) survives.
func TestJournalEntryLine(t *testing.T) {
	e := entry{Cursor: "c", Realtime: "1796181039645643", Message: []byte(`[104,105,255]`), Ident: "postfix/smtpd", PID: "9", Host: "mx"}
	b, at, ok := e.line()
	if !ok || string(b) != "2026-12-02T03:10:39.645643Z mx postfix/smtpd[9]: hi\xff" || at.UnixMicro() != 1796181039645643 {
		t.Fatalf("%q %v %v", b, at, ok)
	}
	e.Message = []byte(`"warning: unknown[198.18.0.9]: SASL LOGIN authentication failed: x"`)
	b, _, _ = e.line()
	eng := newEngine(t, nil)
	if rule, kind, addr, ok := eng.Classify(b, JournalFile); !ok || rule != RulePostfixSASL || kind != KindAuthFailed || addr.String() != "198.18.0.9" {
		t.Fatalf("%q: %v %v %v %v", b, rule, kind, addr, ok)
	}
}

// Whatever journalctl writes, the reader delivers one line per valid
// entry, never a newline inside one, and advances the cursor only past
// entries it has seen.
func FuzzJournalRead(f *testing.F) {
	f.Add([]byte(`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1796181039645643","MESSAGE":"imap-login: x\nnext","SYSLOG_IDENTIFIER":"dovecot","_PID":"7","_HOSTNAME":"mx"}` + "\n"))
	f.Add([]byte(`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,0,255]}` + "\n" + `{"__CURSOR":"d"}` + "\nnot json\n"))
	f.Add([]byte(`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"-5","MESSAGE":[999,-1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		jf := &JournalFollower{opt: JournalOptions{MaxLineBytes: 256}, lines: make(chan Line, bytes.Count(data, []byte{'\n'})+1)}
		cursor := "start"
		if err := jf.read(context.Background(), bytes.NewReader(data), &cursor, time.Time{}); err != nil {
			t.Fatal(err)
		}
		close(jf.lines)
		n := 0
		for l := range jf.lines {
			n++
			if bytes.IndexByte(l.Data, '\n') >= 0 || len(l.Data) > 256 || l.Cursor == "" || l.File != JournalFile {
				t.Fatalf("bad line %+v", l)
			}
		}
		if uint64(n) != jf.Stats().Lines {
			t.Fatalf("%d lines delivered, %d counted", n, jf.Stats().Lines)
		}
		if n > 0 && cursor == "start" {
			t.Fatal("cursor not advanced past delivered lines")
		}
	})
}
