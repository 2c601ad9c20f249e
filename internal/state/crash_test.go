package state

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// The crash tests run a writer in a child process (this test binary, in
// TestCrashChild), kill it with SIGKILL at a random moment, and reopen the
// state: every batch the child reported committed must be there, and the
// journal must load (a torn tail dropped, never a failed load). Rounds
// share the directory, so each round also appends after whatever the last
// kill left.

const (
	crashEnvMode  = "XDPGUARD_STATE_CRASH_MODE"
	crashEnvDir   = "XDPGUARD_STATE_CRASH_DIR"
	crashEnvFirst = "XDPGUARD_STATE_CRASH_FIRST"
	crashBatch    = 5000 // bans a batch: 25 KB records, so a kill can land inside a write
	crashBatches  = 40   // a child's most batches (it is killed before, usually)
	crashUnbans   = 10   // each batch lifts this many bans of the one before
)

// crashPrefix is ban j of batch i.
func crashPrefix(i, j int) netip.Prefix {
	n := uint32(i*crashBatch + j)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 32)
}

func crashBan(i int, b *Batch) {
	ps := make([]netip.Prefix, crashBatch)
	for j := range ps {
		ps[j] = crashPrefix(i, j)
	}
	b.BanAll(datapath.Ban{Origin: datapath.OriginManual, Reason: datapath.ReasonManual, Detector: "batch-" + strconv.Itoa(i)}, ps)
	if i > 0 {
		for j := range crashUnbans {
			b.Unban(crashPrefix(i-1, j))
		}
	}
}

// TestCrashChild is the writer; it does nothing unless started by a crash
// test. It prints "ok N" after batch N is committed, and "compacted"
// after each compaction in compact mode.
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashEnvMode)
	if mode == "" {
		t.Skip("the crash tests' child process")
	}
	s := Store{Dir: os.Getenv(crashEnvDir)}
	first, _ := strconv.Atoi(os.Getenv(crashEnvFirst))
	out := os.Stdout // unbuffered: a line printed is a line the parent reads
	var b Batch
	for i := first; i < first+crashBatches; i++ {
		b.Reset()
		crashBan(i, &b)
		if err := s.Commit(&b); err != nil {
			fmt.Fprintf(out, "error %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(out, "ok %d\n", i)
		if mode == "compact" {
			if _, err := s.Compact(nil); err != nil {
				fmt.Fprintf(out, "error %v\n", err)
				os.Exit(1)
			}
			fmt.Fprintln(out, "compacted")
		}
	}
	os.Exit(0)
}

func crashRounds(t *testing.T, mode string) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	s := Store{Dir: dir}
	next := 0                  // the first batch of the next round
	reported := map[int]bool{} // batches a child reported committed
	inFlight := map[int]bool{} // batches being written when a child died
	compactions := 0           // reported, over all rounds
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnvMode+"="+mode, crashEnvDir+"="+dir, crashEnvFirst+"="+strconv.Itoa(next))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait for the first report (in compact mode, the first
		// compaction), so that every round writes, then kill at a random
		// moment of what follows.
		var early []string
		for {
			l, ok := <-lines
			if !ok {
				t.Fatalf("round %d: the child stopped after %q", round, early)
			}
			early = append(early, l)
			if mode != "compact" || l == "compacted" {
				break
			}
		}
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		for l := range lines {
			early = append(early, l)
		}
		last := -1
		for _, l := range early {
			switch {
			case strings.HasPrefix(l, "ok "):
				last, _ = strconv.Atoi(l[3:])
				reported[last] = true
			case l == "compacted":
				compactions++
			default:
				t.Fatalf("round %d: child said %q", round, l)
			}
		}
		if last < 0 {
			t.Fatalf("round %d: no batch reported", round)
		}
		if last == next+crashBatches-1 {
			t.Logf("round %d: the child finished before the kill", round)
		}
		inFlight[last+1] = true
		next = last + 2 // past the batch that may have been in flight

		st, err := s.Load()
		if err != nil && !errors.Is(err, ErrDropped) {
			t.Fatalf("round %d: the state does not load: %v", round, err)
		}
		if err != nil {
			t.Logf("round %d: %v", round, err)
		}
		checkCrashState(t, round, st, reported, inFlight)
	}
	t.Logf("%d compactions reported over the rounds", compactions)
}

// checkCrashState: every reported batch's bans are there, except those a
// later batch lifted; nothing of a batch never started.
func checkCrashState(t *testing.T, round int, st State, reported, inFlight map[int]bool) {
	t.Helper()
	have := make(map[netip.Prefix]bool, len(st.Bans))
	for _, b := range st.Bans {
		have[b.Prefix] = true
		a := b.Prefix.Addr().As4()
		if i := (int(a[1])<<16 | int(a[2])<<8 | int(a[3])) / crashBatch; !reported[i] && !inFlight[i] {
			t.Fatalf("round %d: ban %s of batch %d, which was never started", round, b.Prefix, i)
		}
	}
	missing, unlifted := 0, 0
	for i := range reported {
		for j := range crashBatch {
			p := crashPrefix(i, j)
			switch {
			case j < crashUnbans && reported[i+1]:
				if have[p] {
					unlifted++
				}
			case j < crashUnbans && inFlight[i+1]:
				// Either: the kill came before or after its commit.
			case !have[p]:
				missing++
			}
		}
	}
	if missing > 0 || unlifted > 0 {
		t.Fatalf("round %d: %d bans of reported batches lost, %d reported unbans lost", round, missing, unlifted)
	}
}

// kill -9 at random points of an import: no reported ban lost, the
// journal always loads.
func TestCrashDuringImport(t *testing.T) { crashRounds(t, "import") }

// kill -9 at random points of compactions interleaved with commits.
func TestCrashDuringCompaction(t *testing.T) { crashRounds(t, "compact") }
