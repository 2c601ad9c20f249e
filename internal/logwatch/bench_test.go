package logwatch

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/logwatch/internal/maillog"
)

type genFile struct {
	data  []byte
	lines [][]byte
	truth maillog.Truth
}

var (
	genOnce sync.Once
	gen     genFile
)

func generated(tb testing.TB) *genFile {
	genOnce.Do(func() {
		var buf bytes.Buffer
		t, err := maillog.Generate(&buf, maillog.DefaultSpec())
		if err != nil {
			tb.Fatal(err)
		}
		gen.data = buf.Bytes()
		gen.truth = t
		for rest := gen.data; len(rest) > 0; {
			i := bytes.IndexByte(rest, '\n')
			gen.lines = append(gen.lines, rest[:i])
			rest = rest[i+1:]
		}
	})
	return &gen
}

// crosses is the reference model of the documented policy, written
// independently of the engine: with default weights, does any window of
// 10 minutes hold a score of 10, counting no-auth events only since the
// source's last login?
func crosses(evs []maillog.Event) bool {
	type ev struct {
		at time.Time
		w  int
	}
	var win []ev
	for _, e := range evs {
		switch e.Kind {
		case maillog.Login:
			kept := win[:0]
			for _, x := range win {
				if x.w != 1 {
					kept = append(kept, x)
				}
			}
			win = kept
			continue
		case maillog.NoAuth:
			win = append(win, ev{e.At, 1})
		case maillog.NoAuthAtOnce:
			continue // weighs nothing (gaveup.go)
		default:
			win = append(win, ev{e.At, 2})
		}
		sum := 0
		for _, x := range win {
			if e.At.Sub(x.at) < DefaultWindow {
				sum += x.w
			}
		}
		if sum >= DefaultThreshold {
			return true
		}
	}
	return false
}

// TestGeneratedLog replays the benchmark file: every source whose events
// cross the threshold is banned, no other, and no legitimate user.
func TestGeneratedLog(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 130 MB")
	}
	g := generated(t)
	e := newEngine(t, nil)
	banned := map[netip.Addr]bool{}
	for _, l := range g.lines {
		if r := e.ProcessHistory(l, "maillog", time.Time{}); r.Decision != nil {
			banned[r.Decision.Prefix.Addr()] = true
		}
	}
	for a := range g.truth.Legit {
		if banned[a] {
			t.Errorf("legitimate user %v banned", a)
		}
	}
	below, over := 0, 0
	for a, evs := range g.truth.Attackers {
		key := a
		if a.Is6() {
			key = netip.PrefixFrom(a, 64).Masked().Addr()
		}
		want := crosses(evs)
		if want != banned[key] {
			t.Errorf("attacker %v: banned %v, crosses threshold %v (%d events)", a, banned[key], want, len(evs))
		}
		if want {
			over++
		} else {
			below++
		}
	}
	if over < 1000 || below < 1000 {
		t.Fatalf("file too easy: %d attackers over, %d below threshold", over, below)
	}
	t.Logf("%d attacking sources banned, %d stayed below the threshold, %d legitimate users not banned", over, below, len(g.truth.Legit))
}

func benchLines(b *testing.B, history bool) {
	g := generated(b)
	b.SetBytes(int64(len(g.data)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	now := time.Now()
	for i := 0; i < b.N; i++ {
		e := newEngine(b, nil)
		for _, l := range g.lines {
			if history {
				e.ProcessHistory(l, "maillog", now)
			} else {
				e.Process(l, "maillog", now)
			}
		}
	}
	b.ReportMetric(float64(len(g.lines)*b.N)/time.Since(start).Seconds(), "lines/s")
}

// BenchmarkReplay is logtest's path: parse, line timestamps, decide.
func BenchmarkReplay(b *testing.B) { benchLines(b, true) }

// BenchmarkLive is the daemon's path: arrival time, no timestamp parsing.
func BenchmarkLive(b *testing.B) { benchLines(b, false) }
