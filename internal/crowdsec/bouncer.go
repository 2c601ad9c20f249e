package crowdsec

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Health is what status and the metrics show of the link to the LAPI.
type Health struct {
	Up          bool      `json:"up"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Failures counts failed calls since the last success.
	Failures int `json:"failures"`
}

type healthBox struct {
	mu sync.Mutex
	h  Health
}

func (b *healthBox) get() Health {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.h
}

// record notes the outcome of a call and logs when it changed the link's
// state: an outage is logged once when it starts (down, with the error) and
// once when it ends (up), not once per retry.
func (b *healthBox) record(log *slog.Logger, err error, down, up string) {
	if b.changed(err) {
		if err != nil {
			log.Warn(down, "error", err)
		} else {
			log.Info(up)
		}
	}
}

func (b *healthBox) changed(err error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasUp := b.h.Up || b.h.LastSuccess.IsZero() && b.h.Failures == 0
	if err != nil {
		b.h.Up = false
		b.h.Failures++
		b.h.LastError = err.Error()
		return wasUp
	}
	changed := !b.h.Up && b.h.Failures > 0
	b.h = Health{Up: true, LastSuccess: time.Now()}
	return changed
}

// Bouncer pulls decisions every Period and hands each pull to the daemon.
type Bouncer struct {
	Client *Client
	Filter Filter
	Period time.Duration
	// MaxBackoff caps the wait between failed pulls.
	MaxBackoff time.Duration
	// Resync makes a pull a startup pull (the whole set) this long after
	// the last one; 0 never. A delta can miss a decision: LAPI 1.4 on
	// SQLite dropped 50 of 1,000 imported decisions from the deltas of a
	// busy 100,000-decision run (test/crowdsec, TestBulk).
	Resync time.Duration
	Log    *slog.Logger
	health healthBox
}

// Health returns the link's current state.
func (b *Bouncer) Health() Health { return b.health.get() }

// Run pulls until ctx is done, sending every successful pull to out. The
// first pull is a startup pull (the whole set); the rest are deltas. A failed pull is retried with
// doubling waits up to MaxBackoff; the bans already in the kernel stay
// and expire on their own deadlines meanwhile.
func (b *Bouncer) Run(ctx context.Context, out chan<- Delta) {
	period, maxBackoff := b.Period, b.MaxBackoff
	if period <= 0 {
		period = 10 * time.Second
	}
	if maxBackoff < period {
		maxBackoff = max(period, time.Minute)
	}
	startup := true
	var lastStartup time.Time
	wait := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if b.Resync > 0 && time.Since(lastStartup) >= b.Resync {
			startup = true
		}
		d, err := b.Client.Stream(ctx, startup, b.Filter)
		if ctx.Err() != nil {
			return
		}
		b.health.record(b.Log, err,
			"crowdsec LAPI unreachable; keeping the decisions already applied, retrying with backoff",
			"crowdsec LAPI reachable again; catching up")
		if err != nil {
			wait = min(max(2*wait, period), maxBackoff)
			timer.Reset(wait)
			continue
		}
		wait = 0
		if startup {
			lastStartup = time.Now()
		}
		startup = false
		select {
		case out <- d:
		case <-ctx.Done():
			return
		}
		timer.Reset(period)
	}
}
