//go:build e2e

package issue11

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
)

// banWatch polls `xdpguard status --json` every 500 ms and remembers every
// ban it saw, so a ban that expired or was lifted still counts.
type banWatch struct {
	t     *testing.T
	x     *harness.Xdpguard
	legit map[netip.Addr]bool
	mu    sync.Mutex
	seen  map[netip.Addr]harness.StatusBan
	first map[netip.Addr]time.Time
	wrong map[netip.Addr]harness.StatusBan
	all   map[netip.Prefix]seenBan // every ban status ever showed
	errs  int                      // failed status calls
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	addrs []netip.Addr
}

func newBanWatch(t *testing.T, x *harness.Xdpguard, w *harness.World) *banWatch {
	bw := &banWatch{t: t, x: x, legit: map[netip.Addr]bool{}, seen: map[netip.Addr]harness.StatusBan{},
		first: map[netip.Addr]time.Time{}, wrong: map[netip.Addr]harness.StatusBan{}, done: make(chan struct{}),
		all: map[netip.Prefix]seenBan{}}
	for _, a := range w.Legitimate() {
		bw.legit[a] = true
	}
	bw.addrs = append(append(append(append(bw.addrs, w.Attackers...), w.Trawlers...), harness.Slow), w.Legitimate()...)
	bw.wg.Add(1)
	go bw.loop()
	return bw
}

func (bw *banWatch) loop() {
	defer bw.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := bw.x.Status()
		if err != nil {
			bw.mu.Lock()
			bw.errs++
			if bw.errs == 1 {
				bw.t.Logf("xdpguard status failed (further failures are only counted): %v", err)
			}
			bw.mu.Unlock()
		} else {
			now := time.Now()
			bw.mu.Lock()
			for _, b := range st.Bans {
				if _, ok := bw.all[b.Prefix]; !ok {
					bw.all[b.Prefix] = seenBan{StatusBan: b, First: now}
				}
			}
			for _, a := range bw.addrs {
				b, ok := st.Banned(a)
				if !ok {
					continue
				}
				if _, had := bw.seen[a]; !had {
					bw.first[a] = now
				}
				bw.seen[a] = b
				if bw.legit[a] {
					bw.wrong[a] = b
				}
			}
			bw.mu.Unlock()
		}
		select {
		case <-bw.done:
			return
		case <-tick.C:
		}
	}
}

// seenBan is a ban as status first showed it.
type seenBan struct {
	harness.StatusBan
	First time.Time `json:"first_seen"`
}

func (bw *banWatch) stop() {
	bw.once.Do(func() { close(bw.done) })
	bw.wg.Wait()
}

func (bw *banWatch) get(a netip.Addr) (harness.StatusBan, bool) {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	b, ok := bw.seen[a]
	return b, ok
}

func (bw *banWatch) firstBan(a netip.Addr) time.Time {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return bw.first[a]
}

func (bw *banWatch) snapshot() map[netip.Addr]harness.StatusBan {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	out := map[netip.Addr]harness.StatusBan{}
	for k, v := range bw.seen {
		out[k] = v
	}
	return out
}

// legitBannedBy lists the legitimate sources banned, first seen by until.
func (bw *banWatch) legitBannedBy(until time.Time) []string {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	var out []string
	for a, b := range bw.wrong {
		if !bw.first[a].After(until) {
			out = append(out, fmt.Sprintf("%s (%s by %s: %s)", a, b.Prefix, b.Origin, b.Reason))
		}
	}
	slices.Sort(out)
	return out
}

func (bw *banWatch) falseBans() map[netip.Addr]harness.StatusBan {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return bw.wrong
}

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
