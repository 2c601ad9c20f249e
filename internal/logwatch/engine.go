package logwatch

import (
	"bytes"
	"math"
	"net"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
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
	e.own = ownAddrs()
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

// ownAddrs collects the host's addresses; they are never banned.
func ownAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out[ip.Unmap()] = true
			}
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
						if kind == KindNoAuth && clientLeftAtOnce(msg[len(svc)+2:]) {
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

// key masks an address to the configured granularity. IPv4 is kept in its
// IPv4-mapped IPv6 form so both families share one key type.
func (e *Engine) key(a netip.Addr) addrKey {
	b := a.As16()
	bits := e.c.cfg.IPv6Mask
	if a.Is4() {
		bits = 96 + e.c.cfg.IPv4Mask
	}
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 | uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	switch {
	case bits <= 64:
		hi &= ^uint64(0) << (64 - bits)
		lo = 0
	case bits < 128:
		lo &= ^uint64(0) << (128 - bits)
	}
	return addrKey{hi, lo}
}

func (e *Engine) prefixOf(k addrKey, is4 bool) netip.Prefix {
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(k.hi >> (56 - 8*i))
		b[8+i] = byte(k.lo >> (56 - 8*i))
	}
	a := netip.AddrFrom16(b)
	if is4 {
		return netip.PrefixFrom(a.Unmap(), e.c.cfg.IPv4Mask)
	}
	return netip.PrefixFrom(a, e.c.cfg.IPv6Mask)
}

func (e *Engine) allowed(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() || e.own[a] {
		return true
	}
	for _, p := range e.c.cfg.Allowlist {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// prefixAllowed refuses a ban whose prefix would cover an allowed address.
func (e *Engine) prefixAllowed(p netip.Prefix) bool {
	for _, a := range e.c.cfg.Allowlist {
		if p.Overlaps(a) {
			return true
		}
	}
	for a := range e.own {
		if p.Contains(a) {
			return true
		}
	}
	return p.Contains(netip.IPv6Loopback()) || p.Overlaps(netip.MustParsePrefix("127.0.0.0/8"))
}

func (e *Engine) observe(m match, rule string, t time.Time) (*Decision, string) {
	w := m.weight
	if m.kind != KindLogin && w == 0 {
		return nil, ""
	}
	k := e.key(m.addr)
	now := t.UnixNano()
	if m.kind == KindLogin {
		// A login withdraws the source's cancellable events; failed
		// passwords stay (doc.go).
		if s := e.sources[k]; s != nil {
			kept := s.ev[:0]
			score := 0
			for _, ev := range s.ev {
				if !ev.kind.cancellable() {
					kept = append(kept, ev)
					score += int(ev.w)
				}
			}
			s.ev, s.score = kept, score
			if len(kept) == 0 {
				e.drop(s)
			}
		}
		return nil, ""
	}
	if e.allowed(m.addr) {
		return nil, "allowlisted"
	}
	if e.hist.BannedAt(e.prefixOf(k, m.addr.Is4()), now) {
		return nil, "banned"
	}
	s := e.sources[k]
	if s == nil {
		s = &source{key: k}
		e.sources[k] = s
		e.pushFront(s)
		e.trimSources()
		e.cnt.Load().sources.Store(uint64(len(e.sources)))
	} else if e.lruHead != s {
		e.unlink(s)
		e.pushFront(s)
	}
	// Slide the window: drop events older than it.
	cut := now - int64(e.c.cfg.Window)
	if len(s.ev) > 0 && s.ev[0].at < cut {
		kept := s.ev[:0]
		score := 0
		for _, ev := range s.ev {
			if ev.at >= cut {
				kept = append(kept, ev)
				score += int(ev.w)
			}
		}
		s.ev, s.score = kept, score
	}
	if w > math.MaxUint16 {
		w = math.MaxUint16
	}
	s.ev = append(s.ev, event{at: now, w: uint16(w), kind: m.kind})
	s.score += w
	if s.score < e.c.cfg.Threshold {
		return nil, ""
	}
	p := e.prefixOf(k, m.addr.Is4())
	if e.prefixAllowed(p) {
		e.drop(s)
		return nil, "allowlisted"
	}
	d := &Decision{Prefix: p, Rule: rule, Events: len(s.ev), Score: s.score, Kinds: map[Kind]int{}, Time: t,
		First: time.Unix(0, s.ev[0].at).UTC()}
	weightBy := map[Kind]int{}
	for _, ev := range s.ev {
		d.Kinds[ev.kind]++
		weightBy[ev.kind] += int(ev.w)
	}
	best := KindNone
	for kind, sw := range weightBy {
		if best == KindNone || sw > weightBy[best] || sw == weightBy[best] && kind < best {
			best = kind
		}
	}
	d.Reason = reasonOf[best]
	e.drop(s)
	d.Duration, d.Offence = e.hist.Record(p, t, d.Reason, rule)
	return d, ""
}

// History is the repeat-offender history the engine's decisions enter, and
// the other detectors feed.
func (e *Engine) History() *offence.History { return e.hist }

// Expire forgets scores older than the window and ban history older than
// the retention. The daemon calls it now and then; memory is bounded by
// MaxSources and MaxOffenders regardless.
func (e *Engine) Expire(now time.Time) {
	e.hist.Expire(now)
	cut := now.UnixNano() - int64(e.c.cfg.Window)
	for s := e.lruTail; s != nil; {
		prev := s.prev
		if len(s.ev) == 0 || s.ev[len(s.ev)-1].at < cut {
			e.drop(s)
		}
		s = prev
	}
	e.countSizes()
}

// Source is a source currently being scored.
type Source struct {
	Prefix netip.Prefix `json:"prefix"`
	Score  int          `json:"score"`
	Events int          `json:"events"`
}

// Sources lists the sources with a score, highest first.
func (e *Engine) Sources() []Source {
	var out []Source
	for s := e.lruHead; s != nil; s = s.next {
		is4 := s.key.hi == 0 && s.key.lo>>32 == 0xffff
		out = append(out, Source{Prefix: e.prefixOf(s.key, is4), Score: s.score, Events: len(s.ev)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Score > out[j].Score })
	return out
}

// Counters returns a snapshot of the counters; safe from any goroutine.
func (e *Engine) Counters() Counters {
	cs := e.cnt.Load()
	c := Counters{
		Lines: cs.lines.Load(), Missed: cs.missed.Load(), Capped: cs.capped.Load(),
		Skipped: cs.skipped.Load(), Decisions: cs.decisions.Load(),
		Unparsed: cs.unparsed.Load(), Pressure: cs.pressure.Load(),
		SourcesEvicted: cs.srcEvicted.Load(), OffendersEvicted: e.hist.Evicted(),
		Sources: cs.sources.Load(), Offenders: uint64(e.hist.Len()),
	}
	for i, name := range cs.rules {
		for k := Kind(1); k < numKinds; k++ {
			if n := cs.matched[i][k].Load(); n > 0 {
				c.Matched = append(c.Matched, RuleCount{Rule: name, Kind: k, Lines: n})
			}
		}
	}
	return c
}

func (e *Engine) countSizes() {
	cs := e.cnt.Load()
	cs.sources.Store(uint64(len(e.sources)))
}

func (e *Engine) trimSources() {
	for len(e.sources) > e.c.cfg.MaxSources && e.lruTail != nil {
		e.drop(e.lruTail)
		e.cnt.Load().srcEvicted.Add(1)
	}
}

func (e *Engine) drop(s *source) {
	e.unlink(s)
	delete(e.sources, s.key)
}

func (e *Engine) pushFront(s *source) {
	s.prev, s.next = nil, e.lruHead
	if e.lruHead != nil {
		e.lruHead.prev = s
	}
	e.lruHead = s
	if e.lruTail == nil {
		e.lruTail = s
	}
}

func (e *Engine) unlink(s *source) {
	if s.prev != nil {
		s.prev.next = s.next
	} else if e.lruHead == s {
		e.lruHead = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else if e.lruTail == s {
		e.lruTail = s.prev
	}
	s.prev, s.next = nil, nil
}
