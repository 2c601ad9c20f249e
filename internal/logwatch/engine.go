package logwatch

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/hostaddr"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// Result is what Process found in one line.
type Result struct {
	Matched bool
	Rule    string
	Kind    Kind
	Addr    netip.Addr
	// Time is the time the event was scored at: arrival time when
	// following live, the line's own timestamp when replaying history.
	Time time.Time
	// Decision is non-nil when this line pushed its source over the
	// threshold.
	Decision *Decision
	// Skipped is set when the line was not scored although it matched:
	// the source is allowlisted, loopback, one of ours, or already banned.
	Skipped string
	// Format is the header form the line was written in; FormatNone when
	// this package does not know it (the line is unparsed).
	Format Format
	// Pressure is set for Dovecot's "process_limit (N) reached" warning:
	// slot pressure with no source (pressure.go). Such a line is not
	// Matched and not missed.
	Pressure *Pressure
}

// Decision is a ban the engine asks for.
type Decision struct {
	Prefix   netip.Prefix  `json:"prefix"` // already masked
	Duration time.Duration `json:"duration"`
	// Reason is the reason of the kind that contributed most (reasonOf).
	Reason datapath.Reason `json:"reason"`
	Rule   string          `json:"rule"` // the rule of the line that crossed the threshold
	Events int             `json:"events"`
	// First is the time of the oldest event in the window; Time the newest.
	First time.Time `json:"first"`
	Score int       `json:"score"`
	// Offence counts this source's bans within the history retention,
	// this one included.
	Offence int          `json:"offence"`
	Kinds   map[Kind]int `json:"kinds"`
	Time    time.Time    `json:"time"`
}

// RuleCount is one counter of Counters.
type RuleCount struct {
	Rule  string `json:"rule"`
	Kind  Kind   `json:"kind"`
	Lines uint64 `json:"lines"`
}

// Counters is a snapshot of the engine's counters.
type Counters struct {
	Lines     uint64      `json:"lines"`
	Matched   []RuleCount `json:"matched"`
	Missed    uint64      `json:"missed"`
	Capped    uint64      `json:"capped"`
	Skipped   uint64      `json:"skipped"`
	Decisions uint64      `json:"decisions"`
	// Unparsed counts lines in no header form this package knows;
	// Pressure counts Dovecot's process_limit/client_limit warnings.
	Unparsed uint64 `json:"unparsed"`
	Pressure uint64 `json:"pressure"`
	// SourcesEvicted counts sources dropped because MaxSources was
	// reached; OffendersEvicted likewise for MaxOffenders.
	SourcesEvicted   uint64 `json:"sources_evicted"`
	OffendersEvicted uint64 `json:"offenders_evicted"`
	Sources          uint64 `json:"sources"`
	Offenders        uint64 `json:"offenders"`
}

type addrKey struct{ hi, lo uint64 }

type event struct {
	at   int64 // unix nanoseconds
	w    uint16
	kind Kind
}

type source struct {
	key        addrKey
	ev         []event
	score      int
	prev, next *source
}

type counterSet struct {
	rules   []string
	matched [][numKinds]atomic.Uint64
	lines, missed, capped, skipped, decisions, unparsed, pressure,
	srcEvicted, sources atomic.Uint64
}

// Engine classifies lines and decides bans.
//
// Process, ProcessHistory, Reload, Expire, Sources and the History must be
// used from one goroutine (the daemon's main loop); the engine does no
// locking on that path. Counters may be called from any goroutine.
type Engine struct {
	c       *compiled
	cnt     atomic.Pointer[counterSet]
	sources map[addrKey]*source
	lruHead *source // most recently scored
	lruTail *source
	hist    *offence.History
	own     map[netip.Addr]bool
}

// New builds an engine from a validated configuration.
func New(cfg Config) (*Engine, error) {
	c, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	hist, err := offence.New(cfg.Policy())
	if err != nil {
		return nil, err
	}
	e := &Engine{sources: make(map[addrKey]*source), hist: hist}
	e.apply(c)
	return e, nil
}

// Reload applies a new configuration, keeping scores and ban history.
// Nothing is changed when the configuration is invalid.
func (e *Engine) Reload(cfg Config) error {
	c, err := cfg.compile()
	if err != nil {
		return err
	}
	if err := e.hist.SetPolicy(cfg.Policy()); err != nil {
		return err
	}
	e.apply(c)
	return nil
}

func (e *Engine) apply(c *compiled) {
	old := e.cnt.Load()
	cs := &counterSet{rules: append([]string{}, builtinNames...)}
	for _, r := range c.custom {
		cs.rules = append(cs.rules, r.name)
	}
	cs.matched = make([][numKinds]atomic.Uint64, len(cs.rules))
	if old != nil {
		for i, name := range cs.rules {
			for j, oname := range old.rules {
				if oname == name {
					for k := range old.matched[j] {
						cs.matched[i][k].Store(old.matched[j][k].Load())
					}
				}
			}
		}
		for _, p := range []struct{ dst, src *atomic.Uint64 }{
			{&cs.lines, &old.lines}, {&cs.missed, &old.missed}, {&cs.capped, &old.capped},
			{&cs.skipped, &old.skipped}, {&cs.decisions, &old.decisions},
			{&cs.unparsed, &old.unparsed}, {&cs.pressure, &old.pressure},
			{&cs.srcEvicted, &old.srcEvicted},
		} {
			p.dst.Store(p.src.Load())
		}
	}
	e.c = c
	e.own = hostaddr.Set()
	e.cnt.Store(cs)
	e.trimSources()
	e.countSizes()
}

// DisabledRules names custom rules switched off by their Requires path,
// with the reason.
func (e *Engine) DisabledRules() map[string]string {
	out := map[string]string{}
	for _, r := range e.c.custom {
		if r.disabled != "" {
			out[r.name] = r.disabled
		}
	}
	return out
}

// Process classifies a line seen live and scores it at now (its arrival).
func (e *Engine) Process(line []byte, file string, now time.Time) Result {
	return e.process(line, file, now, false)
}

// ProcessHistory classifies a line read from history and scores it at the
// line's own timestamp, or at fallback when the line has none.
func (e *Engine) ProcessHistory(line []byte, file string, fallback time.Time) Result {
	return e.process(line, file, fallback, true)
}

func (e *Engine) process(line []byte, file string, now time.Time, lineTime bool) Result {
	cs := e.cnt.Load()
	cs.lines.Add(1)
	if len(line) > e.c.cfg.MaxLineBytes {
		cs.capped.Add(1)
		return Result{Skipped: "line too long"}
	}
	p := ParseHeader(line, lineTime, now)
	t := now
	if lineTime && !p.Time.IsZero() {
		t = p.Time
	}
	if p.Format == FormatNone {
		cs.unparsed.Add(1)
	}
	m, ok := e.classify(&p, line, file)
	if !ok {
		if pr, ok := e.pressure(&p); ok {
			cs.pressure.Add(1)
			// Copied so that pr stays on the stack for the lines
			// that are not pressure.
			pp := new(Pressure)
			*pp = pr
			return Result{Time: t, Format: p.Format, Pressure: pp}
		}
		cs.missed.Add(1)
		return Result{Time: t, Format: p.Format}
	}
	cs.matched[m.rule][m.kind].Add(1)
	r := Result{Matched: true, Rule: cs.rules[m.rule], Kind: m.kind, Addr: m.addr, Time: t, Format: p.Format}
	r.Decision, r.Skipped = e.observe(m, r.Rule, t)
	if r.Skipped != "" {
		cs.skipped.Add(1)
	}
	if r.Decision != nil {
		cs.decisions.Add(1)
	}
	return r
}

// Classify reports what a line is, without scoring it.
func (e *Engine) Classify(line []byte, file string) (rule string, kind Kind, addr netip.Addr, ok bool) {
	p := ParseHeader(line, false, time.Time{})
	m, ok := e.classify(&p, line, file)
	if !ok {
		return "", KindNone, netip.Addr{}, false
	}
	return e.cnt.Load().rules[m.rule], m.kind, m.addr, true
}

func (e *Engine) classify(p *Header, line []byte, file string) (match, bool) {
	c := e.c
	msg := p.Msg
	switch {
	case len(p.Tag) == 0 || isDovecotTag(p.Tag):
		if c.builtin[0] && bytes.IndexByte(msg, '-') > 0 {
			for _, svc := range loginServices {
				if len(msg) > len(svc)+2 && string(msg[:len(svc)]) == svc && msg[len(svc)] == ':' && msg[len(svc)+1] == ' ' {
					if kind, addr, n, ok := dovecotLogin(msg[len(svc)+2:]); ok {
						w := c.weights[kind]
						if kind == KindAuthFailed {
							w *= max(n, 1)
						}
						if (kind == KindNoAuth || kind == KindProbe) && clientLeftAtOnce(msg[len(svc)+2:]) {
							w = 0
						}
						return match{rule: 0, kind: kind, addr: addr, weight: w}, true
					}
					break
				}
			}
		}
		if c.builtin[1] && len(msg) > 4 && string(msg[:4]) == "auth" {
			if addr, ok := dovecotAuth(msg); ok {
				return match{rule: 1, kind: KindAuthBackend, addr: addr, weight: c.weights[KindAuthBackend]}, true
			}
		}
	case c.builtin[2] && bytes.HasPrefix(p.Tag, []byte("postfix")):
		if addr, ok := postfixSASL(msg); ok {
			return match{rule: 2, kind: KindAuthFailed, addr: addr, weight: c.weights[KindAuthFailed]}, true
		}
		if addr, ok := postfixSASLSuccess(msg); ok {
			return match{rule: 2, kind: KindLogin, addr: addr, weight: c.weights[KindLogin]}, true
		}
	}
	for i := range c.custom {
		r := &c.custom[i]
		if r.disabled != "" || (r.files != nil && !r.files[file]) {
			continue
		}
		sm := r.re.FindSubmatchIndex(line)
		if sm == nil || sm[2*r.ipIdx] < 0 {
			continue
		}
		addr, ok := parseAddr(line[sm[2*r.ipIdx]:sm[2*r.ipIdx+1]])
		if !ok {
			continue
		}
		return match{rule: len(builtinNames) + i, kind: r.kind, addr: addr, weight: r.weight}, true
	}
	return match{}, false
}
