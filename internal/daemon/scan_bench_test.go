package daemon

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// BenchmarkSlotCheck is the daemon's slot check under pressure on a large
// IMAP host (make bench-scan; BENCHMARKS.md): 100,000 established
// connections, half of them to the protected ports, and a POP3 service
// whose slots are all taken, with connections waiting in its accept
// queue, which keeps the pressure on. The check then runs at the pressure
// interval: the accept queues, the connection scan, the slot holders and
// the eviction with its search for the login processes' sockets (there
// are none to find).
// The crowd's users are known-good, so nobody is banned and the crowd
// stays whole. Each iteration is one check; the CPU the process used over
// the whole run (getrusage: user and system, the kernel's dump included)
// is reported as a share of one core.
func BenchmarkSlotCheck(b *testing.B) {
	crowd := testutil.NewCrowd(b, testutil.MailHost("slotb", testutil.CrowdConns()))
	full := netip.AddrPortFrom(crowd.Server4, 110)
	var ln int
	if err := crowd.Server.Do(func() (err error) { ln, err = testutil.ListenOn(full); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(ln) })
	const queued = 30
	for i := range queued {
		if err := crowd.Dial(crowd.Sources[2*(i%8)], full); err != nil {
			b.Fatal(err)
		}
	}

	d := evictDaemon(b)
	d.cfg.Kernel.Ports = []uint16{110, 143, 993}
	d.cfg.KillConnections = true
	for _, a := range crowd.Sources {
		d.kg.store.Learn(a, time.Now())
	}
	// A sub-benchmark, so that the crowd is built once, not once per
	// round of b.N.
	b.Run("pressure", func(b *testing.B) { slotChecks(b, crowd, d, queued) })
}

func slotChecks(b *testing.B, crowd *testutil.Crowd, d *Daemon, queued int) {
	period := slotPeriod(d.cfg.SlotHolders)
	var ru0, ru1 unix.Rusage
	var wall, busy time.Duration
	err := crowd.Server.Do(func() error {
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		start := time.Now()
		next := start
		b.ResetTimer()
		for range b.N {
			t := time.Now()
			d.watchSlots(t)
			busy += time.Since(t)
			next = next.Add(period)
			time.Sleep(time.Until(next))
		}
		b.StopTimer()
		wall = time.Since(start)
		unix.Getrusage(unix.RUSAGE_SELF, &ru1)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if !d.slots.on || d.slots.waiting < queued {
		b.Fatalf("no pressure: on %v, %d waiting", d.slots.on, d.slots.waiting)
	}
	// The crowd's silent slot holders: 2 in 100 of its connections (to
	// 143 and 993; MailHost).
	silent := 0
	for _, c := range d.slots.conns {
		if (c.Port == 143 || c.Port == 993) && c.Received == 0 {
			silent++
		}
	}
	if want := testutil.CrowdConns() / 50; silent < want {
		b.Fatalf("the scans saw %d silent connections, want %d", silent, want)
	}
	cpu := time.Duration(ru1.Utime.Nano()-ru0.Utime.Nano()) + time.Duration(ru1.Stime.Nano()-ru0.Stime.Nano())
	b.ReportMetric(float64(busy.Microseconds())/1000/float64(b.N), "ms/check")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%core")
	b.ReportMetric(float64(period.Milliseconds()), "ms-interval")
}
