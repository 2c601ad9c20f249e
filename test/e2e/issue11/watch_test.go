//go:build e2e

package issue11

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
)

// connWatch samples the server's established connections to the mail ports
// every second, and remembers when each watched source last held one:
// what "starved" is measured from. Connections still in an accept queue
// count as held (they are established, and wait for a slot).
type connWatch struct {
	w     *harness.World
	watch map[netip.Addr]bool
	mu    sync.Mutex
	last  map[netip.Addr]time.Time
	// queued is the accept queues' total length in each sample.
	queued []int
	errs   int
	done   chan struct{}
	wg     sync.WaitGroup
}

const connSampleEvery = time.Second

func newConnWatch(w *harness.World, addrs []netip.Addr) *connWatch {
	cw := &connWatch{w: w, watch: map[netip.Addr]bool{}, last: map[netip.Addr]time.Time{}, done: make(chan struct{})}
	for _, a := range addrs {
		cw.watch[a] = true
	}
	cw.wg.Add(1)
	go cw.loop()
	return cw
}

func (cw *connWatch) loop() {
	defer cw.wg.Done()
	tick := time.NewTicker(connSampleEvery)
	defer tick.Stop()
	for {
		now := time.Now()
		est, err := cw.w.Established()
		q, qerr := cw.w.Waiting()
		cw.mu.Lock()
		if err != nil || qerr != nil {
			cw.errs++
		}
		if qerr == nil {
			cw.queued = append(cw.queued, q)
		}
		for a, n := range est {
			if n > 0 && cw.watch[a] {
				cw.last[a] = now
			}
		}
		cw.mu.Unlock()
		select {
		case <-cw.done:
			return
		case <-tick.C:
		}
	}
}

func (cw *connWatch) stop() {
	select {
	case <-cw.done:
	default:
		close(cw.done)
	}
	cw.wg.Wait()
}

// lastHeld is the last sample in which a held a connection.
func (cw *connWatch) lastHeld(a netip.Addr) (time.Time, bool) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	t, ok := cw.last[a]
	return t, ok
}

// queues summarises the accept queues' samples: the median and the
// largest total length.
func (cw *connWatch) queues() (median, largest int) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if len(cw.queued) == 0 {
		return 0, 0
	}
	q := slices.Clone(cw.queued)
	slices.Sort(q)
	return q[len(q)/2], q[len(q)-1]
}
