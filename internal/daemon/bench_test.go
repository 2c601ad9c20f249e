package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// benchDaemon runs the daemon in this process with no interface attached:
// what is measured is log line -> decision -> kernel map.
func benchDaemon(b *testing.B, threshold int) (*datapath.Guard, *os.File, func()) {
	c := baseConfig(b, "bench")
	det := logwatch.DefaultConfig()
	det.Threshold = threshold
	det.Files = c.Logs.Files
	g, cancel, done := runDaemon(b, c, det, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	time.Sleep(200 * time.Millisecond) // the follower is up
	f, err := os.OpenFile(c.Logs.Files[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	return g, f, func() {
		f.Close()
		cancel()
		<-done
		g.Close()
	}
}

func noAuthLine(a netip.Addr, i int) string {
	return fmt.Sprintf("%s mx dovecot: imap-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=%s, lip=198.18.0.1, session=<b%d>\n",
		time.Now().Format(time.Stamp), a, i)
}

// BenchmarkReaction measures the time from appending the line that crosses
// the threshold to the ban being in the kernel map, over at least 200
// sources, and reports p50 and p99.
func BenchmarkReaction(b *testing.B) {
	const threshold = 3
	g, f, stop := benchDaemon(b, threshold)
	defer stop()
	var lat []time.Duration
	n := 0
	for b.Loop() {
		for range 200 {
			n++
			src := netip.AddrFrom4([4]byte{198, 18, byte(100 + n>>8), byte(n)})
			for i := range threshold - 1 {
				io.WriteString(f, noAuthLine(src, i))
			}
			start := time.Now()
			io.WriteString(f, noAuthLine(src, threshold))
			// 10 µs between looks is below what is measured.
			waitBanned(b, g, src, start, 5*time.Second, 10*time.Microsecond)
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(len(lat)), "events")
}

// BenchmarkBanRate writes the lines of 10,000 distinct attackers at once and
// measures until every one of them is banned in the kernel.
func BenchmarkBanRate(b *testing.B) {
	const threshold, sources = 3, 10000
	g, f, stop := benchDaemon(b, threshold)
	defer stop()
	round := 0
	var total time.Duration
	for b.Loop() {
		round++
		var buf []byte
		var last []netip.Addr
		for i := range sources {
			src := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
			if round > 1 { // fresh sources each round
				src = netip.AddrFrom4([4]byte{198, 18, byte(round*40 + i>>8), byte(i)})
			}
			last = append(last, src)
			for j := range threshold {
				buf = append(buf, noAuthLine(src, j)...)
			}
		}
		start := time.Now()
		f.Write(buf)
		for _, src := range last {
			waitBanned(b, g, src, start, 60*time.Second, 100*time.Microsecond)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(round), "ms/10k-sources")
}

// waitBanned looks in the kernel map until src is banned, sleeping poll
// between looks to leave the CPU to the daemon, and fails the benchmark
// if that takes longer than limit after start.
func waitBanned(b *testing.B, g *datapath.Guard, src netip.Addr, start time.Time, limit, poll time.Duration) {
	b.Helper()
	for {
		if _, ok, _ := g.BanOf(src); ok {
			return
		}
		if time.Since(start) > limit {
			b.Fatalf("%s never banned", src)
		}
		time.Sleep(poll)
	}
}
