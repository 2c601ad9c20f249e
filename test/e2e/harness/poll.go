package harness

import (
	"sync"
	"time"
)

// Poller calls a sampling function at once and then every period, on a
// goroutine of its own, until Stop: the watchers that record what the
// world looked like while a phase ran.
type Poller struct {
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// StartPoller starts calling sample every period.
func StartPoller(period time.Duration, sample func()) *Poller {
	p := &Poller{done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-p.done:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// Stop stops the polling and waits for a sample under way to finish; it
// may be called more than once.
func (p *Poller) Stop() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}
