// Package knowngood remembers which sources have logged in successfully
// (Dovecot's "Login:"/"Logged in:", Postfix SASL successes), so that the
// daemon can spare them: the slot-holder detector and eviction never touch
// them, the kernel lets them past its admission limit, and they get a
// login slot first when the slots run out.
//
// A source is masked like a ban (IPv4 /32, IPv6 /64 by default): an
// attacker cannot rotate into a user's /64 without also being in the
// user's ban, and a user whose privacy address changes stays known.
//
// Entries last Retention after the last login (30 days by default) and the
// store holds at most Max of them, evicting the least recently seen: an
// attacker who somehow logs in from many sources (stolen passwords) can
// push out old entries, never grow memory. The store is not safe for
// concurrent use; the daemon's main loop owns it.
package knowngood

import (
	"container/list"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// Entry is one known-good source and when it last logged in.
type Entry struct {
	Prefix   netip.Prefix `json:"prefix"`
	LastSeen time.Time    `json:"last_seen"`
}

// Store is the set of known-good sources.
type Store struct {
	retention time.Duration
	max       int
	gran      datapath.Granularity
	m         map[netip.Prefix]*list.Element // of Entry
	lru       *list.List                     // front: most recently seen
}

// New returns an empty store keeping entries for retention after their
// last login, at most max of them, masking sources to the ban granularity.
func New(retention time.Duration, max int, gran datapath.Granularity) *Store {
	return &Store{retention: retention, max: max, gran: gran,
		m: map[netip.Prefix]*list.Element{}, lru: list.New()}
}

// Mask returns the prefix a source is known by.
func (s *Store) Mask(a netip.Addr) netip.Prefix {
	return s.gran.Mask(a)
}

// Learn records a successful login from a at t. It returns the source's
// prefix when the source was not known before (the kernel must be told),
// and the entries the bound pushed out to make room (the kernel must
// forget them). A login older than the entry's last one changes nothing
// but is not an error: replayed history arrives out of order.
func (s *Store) Learn(a netip.Addr, t time.Time) (added netip.Prefix, isNew bool, evicted []netip.Prefix) {
	p := s.Mask(a)
	if el, ok := s.m[p]; ok {
		e := el.Value.(*Entry)
		if t.After(e.LastSeen) {
			e.LastSeen = t
			s.lru.MoveToFront(el)
		}
		return p, false, nil
	}
	if s.max <= 0 {
		return p, false, nil
	}
	for len(s.m) >= s.max {
		old := s.lru.Back()
		op := old.Value.(*Entry).Prefix
		s.lru.Remove(old)
		delete(s.m, op)
		evicted = append(evicted, op)
	}
	s.insert(Entry{Prefix: p, LastSeen: t})
	return p, true, evicted
}

// insert places e in recency order: usually at the front, but a restored
// or replayed entry older than the front goes where its time says.
func (s *Store) insert(e Entry) {
	el := s.lru.Front()
	for el != nil && el.Value.(*Entry).LastSeen.After(e.LastSeen) {
		el = el.Next()
	}
	if el == nil {
		s.m[e.Prefix] = s.lru.PushBack(&e)
	} else {
		s.m[e.Prefix] = s.lru.InsertBefore(&e, el)
	}
}

// Contains reports whether a is a known-good source.
func (s *Store) Contains(a netip.Addr) bool {
	_, ok := s.m[s.Mask(a)]
	return ok
}

// Overlaps reports whether any known-good source lies inside p: a ban of
// p (an escalation to an IPv6 /48, say) would cover a real user.
func (s *Store) Overlaps(p netip.Prefix) bool {
	if p.Bits() < s.bits(p.Addr()) {
		// Linear, but only asked for wide prefixes, rarely.
		for q := range s.m {
			if p.Overlaps(q) {
				return true
			}
		}
		return false
	}
	return s.Contains(p.Addr())
}

func (s *Store) bits(a netip.Addr) int { return s.gran.Bits(a) }

// Expire removes the entries whose last login is Retention or more before
// now, and returns their prefixes (the kernel must forget them).
func (s *Store) Expire(now time.Time) []netip.Prefix {
	var out []netip.Prefix
	cut := now.Add(-s.retention)
	for el := s.lru.Back(); el != nil; el = s.lru.Back() {
		e := el.Value.(*Entry)
		if e.LastSeen.After(cut) {
			break
		}
		s.lru.Remove(el)
		delete(s.m, e.Prefix)
		out = append(out, e.Prefix)
	}
	return out
}

// Len is the number of known-good sources.
func (s *Store) Len() int { return len(s.m) }

// Prefixes lists the known-good sources, most recently seen first.
func (s *Store) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.m))
	for el := s.lru.Front(); el != nil; el = el.Next() {
		out = append(out, el.Value.(*Entry).Prefix)
	}
	return out
}

// Snapshot lists the entries for persistence, most recently seen first.
func (s *Store) Snapshot() []Entry {
	out := make([]Entry, 0, len(s.m))
	for el := s.lru.Front(); el != nil; el = el.Next() {
		out = append(out, *el.Value.(*Entry))
	}
	return out
}

// Restore replaces the store's entries with saved ones: each is
// re-masked with the current granularity (the setting may have changed
// since the save), entries already expired at now are dropped, and the
// bound keeps the most recent. Restoring reports no evictions: the caller
// pushes Prefixes to the kernel afterwards.
func (s *Store) Restore(es []Entry, now time.Time) {
	s.m, s.lru = map[netip.Prefix]*list.Element{}, list.New()
	sorted := slices.Clone(es)
	slices.SortStableFunc(sorted, func(a, b Entry) int { return b.LastSeen.Compare(a.LastSeen) })
	cut := now.Add(-s.retention)
	for _, e := range sorted {
		if len(s.m) >= s.max || !e.LastSeen.After(cut) {
			break
		}
		if !e.Prefix.IsValid() {
			continue
		}
		p := s.Mask(e.Prefix.Addr())
		if _, ok := s.m[p]; ok {
			continue // newest first: the one kept is the latest
		}
		s.m[p] = s.lru.PushBack(&Entry{Prefix: p, LastSeen: e.LastSeen})
	}
}

// SetLimits applies a new retention and bound (a reload), and returns the
// entries the smaller bound pushed out.
func (s *Store) SetLimits(retention time.Duration, max int) []netip.Prefix {
	s.retention, s.max = retention, max
	var out []netip.Prefix
	for len(s.m) > s.max {
		old := s.lru.Back()
		p := old.Value.(*Entry).Prefix
		s.lru.Remove(old)
		delete(s.m, p)
		out = append(out, p)
	}
	return out
}
