package crowdsec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// The scenarios xdpguard posts: what it saw, named as CrowdSec names its
// own (author/name).
const (
	ScenarioNoAuth     = "xdpguard/dovecot-no-auth" // log rule: logins aborted without authentication, probes
	ScenarioSlotHolder = "xdpguard/slot-holder"     // silent connections holding login slots
	ScenarioSYNRate    = "xdpguard/syn-rate"        // the kernel's SYN-rate limit
)

// Scenarios lists them for the watcher login.
var Scenarios = []string{ScenarioNoAuth, ScenarioSlotHolder, ScenarioSYNRate}

// Signal is one ban xdpguard decided itself, to post as an alert.
type Signal struct {
	Prefix   netip.Prefix
	Scenario string
	Events   int       // what the detector counted
	Start    time.Time // first event
	Stop     time.Time // the ban
	Duration time.Duration
	Message  string
}

// Alert is the LAPI's alert model, with the fields 1.4 requires.
type Alert struct {
	Capacity        int32      `json:"capacity"`
	Decisions       []Decision `json:"decisions"`
	Events          []Event    `json:"events"`
	EventsCount     int32      `json:"events_count"`
	Leakspeed       string     `json:"leakspeed"`
	Message         string     `json:"message"`
	Scenario        string     `json:"scenario"`
	ScenarioHash    string     `json:"scenario_hash"`
	ScenarioVersion string     `json:"scenario_version"`
	Simulated       bool       `json:"simulated"`
	Source          Source     `json:"source"`
	StartAt         string     `json:"start_at"`
	StopAt          string     `json:"stop_at"`
}

// Decision is a decision inside a posted alert.
type Decision struct {
	Duration string `json:"duration"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
}

// Event is one event of an alert.
type Event struct {
	Timestamp string `json:"timestamp"`
	Meta      []Meta `json:"meta"`
}

// Meta is a key and value.
type Meta struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Source is whom an alert is about.
type Source struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
	IP    string `json:"ip,omitempty"`
	Range string `json:"range,omitempty"`
}

// ToAlert makes the alert, with its ban decision, for a signal. A single
// address is an Ip decision, an IPv6 /64 (the ban granularity) a Range.
func ToAlert(s Signal) Alert {
	scope, value, src := "Ip", s.Prefix.Addr().String(), Source{}
	if s.Prefix.Bits() < s.Prefix.Addr().BitLen() {
		scope, value = "Range", s.Prefix.Masked().String()
		src = Source{Scope: scope, Value: value, Range: value}
	} else {
		src = Source{Scope: scope, Value: value, IP: value}
	}
	start, stop := s.Start, s.Stop
	if stop.IsZero() {
		stop = time.Now()
	}
	if start.IsZero() || start.After(stop) {
		start = stop
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	n := max(s.Events, 1)
	return Alert{
		Capacity: 0, EventsCount: int32(n), Leakspeed: "0s",
		Message:  fmt.Sprintf("%s %s performed '%s' (%d events over %s)", scope, value, s.Scenario, n, stop.Sub(start).Round(time.Millisecond)),
		Scenario: s.Scenario, ScenarioHash: "", ScenarioVersion: "1",
		Source:  src,
		StartAt: ts(start), StopAt: ts(stop),
		Events: []Event{{Timestamp: ts(stop), Meta: []Meta{{Key: "source_ip", Value: value}, {Key: "service", Value: "dovecot"},
			{Key: "detail", Value: s.Message}}}},
		Decisions: []Decision{{Duration: s.Duration.Round(time.Second).String(), Origin: "crowdsec", Scenario: s.Scenario,
			Scope: scope, Type: "ban", Value: value}},
	}
}

// Pusher posts signals as alerts, in batches, from its own goroutine.
type Pusher struct {
	Client    *Client
	MachineID string
	Password  string
	Log       *slog.Logger
	// Batch bounds one POST; Linger is how long a first signal waits for
	// company.
	Batch  int
	Linger time.Duration

	once    sync.Once
	queue   chan Signal
	dropped uint64
	posted  uint64
	health  healthBox
	token   string
	expires time.Time
}

// queueLen bounds the signals waiting while the LAPI is down: a flood
// of bans must not grow memory without end.
const queueLen = 10000

func (p *Pusher) init() { p.once.Do(func() { p.queue = make(chan Signal, queueLen) }) }

// Push queues a signal; it never blocks. It returns false when the queue
// is full and the signal was dropped.
func (p *Pusher) Push(s Signal) bool {
	p.init()
	select {
	case p.queue <- s:
		return true
	default:
		p.health.mu.Lock()
		p.dropped++
		p.health.mu.Unlock()
		return false
	}
}

// PushStats are the pusher's counters.
type PushStats struct {
	Health
	Posted, Dropped uint64
}

// Stats returns the pusher's health and counters.
func (p *Pusher) Stats() PushStats {
	h := p.health.get()
	p.health.mu.Lock()
	defer p.health.mu.Unlock()
	return PushStats{Health: h, Posted: p.posted, Dropped: p.dropped}
}

// Run posts queued signals until ctx is done.
func (p *Pusher) Run(ctx context.Context) {
	p.init()
	batch, linger := p.Batch, p.Linger
	if batch <= 0 {
		batch = 100
	}
	if linger <= 0 {
		linger = 500 * time.Millisecond
	}
	var pending []Alert
	wait := time.Duration(0)
	for {
		if len(pending) == 0 {
			select {
			case <-ctx.Done():
				return
			case s := <-p.queue:
				pending = append(pending, ToAlert(s))
			}
		}
		// Gather what arrives within the linger, up to a batch.
		deadline := time.NewTimer(linger)
	gather:
		for len(pending) < batch {
			select {
			case s := <-p.queue:
				pending = append(pending, ToAlert(s))
			case <-deadline.C:
				break gather
			case <-ctx.Done():
				deadline.Stop()
				return
			}
		}
		deadline.Stop()
		n := min(len(pending), batch)
		err := p.post(ctx, pending[:n])
		if ctx.Err() != nil {
			return
		}
		p.health.record(p.Log, err,
			"crowdsec: cannot post alerts; holding them and retrying with backoff",
			"crowdsec: posting alerts again")
		if err != nil {
			wait = min(max(2*wait, time.Second), time.Minute)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
			continue
		}
		wait = 0
		p.health.mu.Lock()
		p.posted += uint64(n)
		p.health.mu.Unlock()
		pending = pending[n:]
	}
}

// post sends one batch, logging in first when the token is missing or
// about to expire, and once more when the LAPI refuses the token.
func (p *Pusher) post(ctx context.Context, alerts []Alert) error {
	for try := 0; ; try++ {
		if p.token == "" || time.Until(p.expires) < time.Minute {
			tok, exp, err := p.Client.Login(ctx, p.MachineID, p.Password, Scenarios)
			if err != nil {
				return err
			}
			p.token, p.expires = tok, exp
		}
		err := p.Client.PostAlerts(ctx, p.token, alerts)
		if errors.Is(err, ErrUnauthorized) && try == 0 {
			p.token = ""
			continue
		}
		return err
	}
}
