// Scoring: per-source scores in a bounded LRU, and the decisions they reach.

package logwatch

import (
	"math"
	"net/netip"
	"sort"
	"time"

	"github.com/xdpguard/xdpguard/internal/offence"
)

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
