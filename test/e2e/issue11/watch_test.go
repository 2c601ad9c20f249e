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
// every second, and remembers when each watched source last held one that
// Dovecot had accepted (a login slot, or a session): what "starved" is
// measured from. It also remembers when each last had one at all, waiting
// in an accept queue included, which the report gives beside it.
type connWatch struct {
	w     *harness.World
	watch map[netip.Addr]bool
	mu    sync.Mutex
	last  map[netip.Addr]time.Time // accepted
	lastQ map[netip.Addr]time.Time // accepted or queued
	// queued is the accept queues' total length in each sample.
	queued []int
	errs   int
	poll   *harness.Poller
}

const connSampleEvery = time.Second

func newConnWatch(w *harness.World, addrs []netip.Addr) *connWatch {
	cw := &connWatch{w: w, watch: map[netip.Addr]bool{}, last: map[netip.Addr]time.Time{}, lastQ: map[netip.Addr]time.Time{}}
	for _, a := range addrs {
		cw.watch[a] = true
	}
	cw.poll = harness.StartPoller(connSampleEvery, cw.sample)
	return cw
}

func (cw *connWatch) sample() {
	now := time.Now()
	est, accepted, err := cw.w.Connections()
	q, qerr := cw.w.Waiting()
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if err != nil || qerr != nil {
		cw.errs++
	}
	if qerr == nil {
		cw.queued = append(cw.queued, q)
	}
	for a, n := range est {
		if n > 0 && cw.watch[a] {
			cw.lastQ[a] = now
		}
	}
	for a, n := range accepted {
		if n > 0 && cw.watch[a] {
			cw.last[a] = now
		}
	}
}

func (cw *connWatch) stop() { cw.poll.Stop() }

// lastHeld is the last sample in which a held a connection that Dovecot
// had accepted.
func (cw *connWatch) lastHeld(a netip.Addr) (time.Time, bool) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	t, ok := cw.last[a]
	return t, ok
}

// lastConnected is the last sample in which a had a connection, accepted
// or waiting in an accept queue.
func (cw *connWatch) lastConnected(a netip.Addr) (time.Time, bool) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	t, ok := cw.lastQ[a]
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
