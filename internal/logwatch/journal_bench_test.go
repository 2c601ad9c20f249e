package logwatch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// The journal follower against the file follower on the same lines: both
// read benchFollowLines lines logged before they start (the journal from a
// time before them, the file as a new file read from its start), and the
// time until the last one is delivered is measured. The journal's cost is
// journalctl's JSON and the decode here.
const benchFollowLines = 100000

func benchLine(i int) string {
	return fmt.Sprintf("imap-login: Disconnected: Connection closed (no auth attempts in 2 secs): user=<>, rip=198.18.%d.%d, lip=198.18.0.1, session=<abcd> seq=%d", i>>8&255, i&255, i)
}

func BenchmarkFollowJournal(b *testing.B) {
	j := testutil.StartJournald(b)
	ident := fmt.Sprintf("xdpguard-statusjournal-bench-%d", os.Getpid())
	start := time.Now().Add(-time.Second)
	for i := 0; i < benchFollowLines; i++ {
		j.Send(ident, benchLine(i))
	}
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		f, err := FollowJournal(ctx, JournalOptions{Identifiers: []string{ident}, Directory: j.Dir(), Backlog: time.Since(start)})
		if err != nil {
			b.Fatal(err)
		}
		drain(b, f.Lines(), benchFollowLines)
		cancel()
		for range f.Lines() {
		}
	}
	b.ReportMetric(float64(benchFollowLines*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkFollowFile(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	fd, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < benchFollowLines; i++ {
		fmt.Fprintf(fd, "2026-12-02T03:10:39.645643Z mx dovecot[4242]: %s\n", benchLine(i))
	}
	fd.Close()
	n := 0
	for b.Loop() {
		n++
		name := filepath.Join(dir, fmt.Sprintf("maillog.%d", n))
		ctx, cancel := context.WithCancel(context.Background())
		f, err := Follow(ctx, []string{name}, FollowOptions{})
		if err != nil {
			b.Fatal(err)
		}
		// A file that appears is read from its start.
		if err := os.Link(src, name); err != nil {
			b.Fatal(err)
		}
		drain(b, f.Lines(), benchFollowLines)
		cancel()
		for range f.Lines() {
		}
	}
	b.ReportMetric(float64(benchFollowLines*b.N)/b.Elapsed().Seconds(), "lines/s")
}

func drain(b *testing.B, lines <-chan Line, n int) {
	deadline := time.After(5 * time.Minute)
	for got := 0; got < n; {
		select {
		case _, ok := <-lines:
			if !ok {
				b.Fatalf("closed after %d of %d", got, n)
			}
			got++
		case <-deadline:
			b.Fatalf("%d of %d lines in 5 minutes", got, n)
		}
	}
}
