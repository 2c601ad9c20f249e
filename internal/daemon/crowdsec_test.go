package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/crowdsec"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// csDaemon is a daemon with a real guard (no interface attached) and a
// crowdsec link, for driving onCrowdsec directly.
func csDaemon(tb testing.TB, maxBans int) *Daemon {
	pins := testutil.PinRoot(tb, "crowdsec")
	c := config.Default()
	c.Allow = []netip.Prefix{netip.MustParsePrefix("198.18.9.9/32"), netip.MustParsePrefix("198.18.200.0/22")}
	g, err := datapath.New(datapath.Options{PinRoot: filepath.Join(pins, "pins"), MaxBans: uint32(maxBans), MaxCIDR: 1024})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Close() })
	if err := g.SetSettings(c.Kernel.Settings()); err != nil {
		tb.Fatal(err)
	}
	return &Daemon{cfg: Config{Config: c}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), guard: g,
		records: map[netip.Prefix]datapath.Ban{}, own: map[netip.Addr]bool{netip.MustParseAddr("198.18.1.1"): true},
		cs: &crowdsecLink{ids: map[int64]netip.Prefix{}, refs: map[netip.Prefix]int{}}}
}

func ban(id int64, p string, ttl time.Duration) crowdsec.Remediation {
	return crowdsec.Remediation{ID: id, Prefix: netip.MustParsePrefix(p), TTL: ttl, Scenario: "crowdsecurity/test", Origin: "cscli"}
}

func banned(t *testing.T, d *Daemon, a string) (datapath.Ban, bool) {
	t.Helper()
	b, ok, err := d.guard.BanOf(netip.MustParseAddr(a))
	if err != nil {
		t.Fatal(err)
	}
	return b, ok
}

func TestCrowdsecApply(t *testing.T) {
	d := csDaemon(t, 4096)
	h := time.Hour
	d.onCrowdsec(crowdsec.Delta{Startup: true, New: []crowdsec.Remediation{
		ban(1, "198.18.5.1/32", h), ban(2, "198.18.5.1/32", 2*h), // two decisions, one address
		ban(3, "2001:db8:5::1/128", h), ban(4, "2001:db8:5::2/128", h), // one /64
		ban(5, "198.18.6.0/24", h),
		ban(6, "198.18.9.9/32", h),   // allowlisted
		ban(7, "198.18.1.1/32", h),   // the host itself
		ban(8, "198.18.0.0/16", h),   // covers the host
		ban(9, "198.18.201.0/24", h), // inside an allowed /22: nothing to ban
		ban(10, "198.18.7.7/32", 90*time.Second),
	}})
	if b, ok := banned(t, d, "198.18.5.1"); !ok || b.Origin != datapath.OriginCrowdsec {
		t.Fatalf("198.18.5.1: %+v %v", b, ok)
	}
	if b, _ := banned(t, d, "198.18.7.7"); time.Until(b.Expires) < 89*time.Second || time.Until(b.Expires) > 91*time.Second {
		t.Errorf("a 90 s decision expires in %s", time.Until(b.Expires))
	}
	for _, a := range []string{"198.18.9.9", "198.18.1.1"} {
		if _, ok := banned(t, d, a); ok {
			t.Errorf("%s banned despite allowlist or own address", a)
		}
	}
	if got := len(d.cs.ids); got != 6 {
		t.Fatalf("%d decisions applied, want 6", got)
	}
	if r := d.records[netip.MustParsePrefix("198.18.5.1/32")]; r.Origin != datapath.OriginCrowdsec || r.Detector != "crowdsecurity/test" {
		t.Errorf("record %+v, want origin crowdsec and the scenario as detector", r)
	}

	// Deleting one of two decisions keeps the ban; deleting both lifts it.
	// Deleted is applied before new: a decision replaced in one pull stays.
	d.onCrowdsec(crowdsec.Delta{Deleted: []crowdsec.Remediation{ban(1, "198.18.5.1/32", 0), ban(3, "2001:db8:5::1/128", 0), ban(5, "198.18.6.0/24", 0)},
		New: []crowdsec.Remediation{ban(11, "198.18.6.0/24", h)}})
	if _, ok := banned(t, d, "198.18.5.1"); !ok {
		t.Error("198.18.5.1 unbanned while a decision remains")
	}
	if _, ok := banned(t, d, "2001:db8:5::2"); !ok {
		t.Error("the /64 unbanned while a decision remains")
	}
	d.onCrowdsec(crowdsec.Delta{Deleted: []crowdsec.Remediation{ban(2, "198.18.5.1/32", 0), ban(4, "2001:db8:5::2/128", 0)}})
	if _, ok := banned(t, d, "198.18.5.1"); ok {
		t.Error("198.18.5.1 still banned with no decision")
	}
	if _, ok := banned(t, d, "2001:db8:5::2"); ok {
		t.Error("the /64 still banned with no decision")
	}
	if !d.cidrDenied(t, "198.18.6.0/24") {
		t.Error("a range deleted and re-added in one pull is not banned")
	}

	// A ban of another origin is left alone: neither replaced by a
	// decision for the same address (this host's own alert coming back),
	// nor lifted when that decision goes.
	if err := d.guard.Ban(netip.MustParsePrefix("198.18.8.8/32"), 2*h, datapath.OriginLog, datapath.ReasonNoAuth); err != nil {
		t.Fatal(err)
	}
	d.records[netip.MustParsePrefix("198.18.8.8/32")] = datapath.Ban{Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth, Detector: "x"}
	d.onCrowdsec(crowdsec.Delta{Deleted: []crowdsec.Remediation{ban(12, "198.18.8.8/32", 0)}})
	if _, ok := banned(t, d, "198.18.8.8"); !ok {
		t.Error("a log ban lifted by a CrowdSec deletion")
	}
	d.onCrowdsec(crowdsec.Delta{New: []crowdsec.Remediation{ban(12, "198.18.8.8/32", h)}})
	if b, _ := banned(t, d, "198.18.8.8"); b.Origin != datapath.OriginLog {
		t.Errorf("own ban replaced: %+v", b)
	}

	// A startup pull is the whole set: what it lacks goes, even bans the
	// kernel kept from before this daemon started.
	d.cs = &crowdsecLink{ids: map[int64]netip.Prefix{}, refs: map[netip.Prefix]int{}}
	d.onCrowdsec(crowdsec.Delta{Startup: true, New: []crowdsec.Remediation{ban(11, "198.18.6.0/24", h)}})
	if _, ok := banned(t, d, "198.18.7.7"); ok {
		t.Error("a stale crowdsec ban survived a startup pull")
	}
	if _, ok := banned(t, d, "198.18.8.8"); !ok {
		t.Error("a startup pull removed a log ban")
	}
	if !d.cidrDenied(t, "198.18.6.0/24") {
		t.Error("the range of the startup set is gone")
	}
}

func (d *Daemon) cidrDenied(t *testing.T, p string) bool {
	rules, err := d.guard.Rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Prefix.String() == p && r.Action == datapath.ActionDeny {
			return true
		}
	}
	return false
}

func TestKernelTTL(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{1500 * time.Millisecond, 2 * time.Second},
		{59*time.Minute + 58759005961, time.Hour},
		{3599 * time.Second, time.Hour},
		{9*time.Minute + 100, 9*time.Minute + time.Second},
		{time.Nanosecond, time.Second},
	} {
		if got := kernelTTL(c.in); got != c.want {
			t.Errorf("kernelTTL(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// BenchmarkCrowdsecApply measures applying a 100,000-decision first pull
// and then 1,000-decision deltas in the kernel (the LAPI's own time is
// measured by test/crowdsec against the real one). Durations spread over
// a minute, as an import of that size spreads them.
func BenchmarkCrowdsecApply(b *testing.B) {
	const n, delta = 100000, 1000
	mk := func(from, count int) []crowdsec.Remediation {
		out := make([]crowdsec.Remediation, count)
		for i := range out {
			j := from + i
			a := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
			out[i] = crowdsec.Remediation{ID: int64(j + 1), Prefix: netip.PrefixFrom(a, 32),
				TTL: 4*time.Hour - time.Duration(j%60000)*time.Millisecond, Scenario: "bulk", Origin: "cscli"}
		}
		return out
	}
	var startup, deltas, startupCPU, deltasCPU time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		d := csDaemon(b, 1<<18)
		first := crowdsec.Delta{Startup: true, New: mk(0, n)}
		b.StartTimer()
		t0, c0 := time.Now(), cpuTime()
		d.onCrowdsec(first)
		startup += time.Since(t0)
		startupCPU += cpuTime() - c0
		for k := 0; k < 5; k++ {
			next := crowdsec.Delta{New: mk(n+k*delta, delta), Deleted: mk(k*delta, delta)}
			t0, c0 = time.Now(), cpuTime()
			d.onCrowdsec(next)
			deltas += time.Since(t0)
			deltasCPU += cpuTime() - c0
		}
		b.StopTimer()
		if len(d.cs.ids) != n {
			b.Fatalf("%d decisions held, want %d", len(d.cs.ids), n)
		}
	}
	// CPU time beside wall time: on a shared machine the wall time
	// measures the neighbours too.
	b.ReportMetric(float64(startup.Milliseconds())/float64(b.N), "ms/100k-startup")
	b.ReportMetric(float64(startupCPU.Milliseconds())/float64(b.N), "cpu-ms/100k-startup")
	b.ReportMetric(float64(deltas.Microseconds())/1000/float64(5*b.N), "ms/1k-delta")
	b.ReportMetric(float64(deltasCPU.Microseconds())/1000/float64(5*b.N), "cpu-ms/1k-delta")
}

// cpuTime is the process's user and system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
