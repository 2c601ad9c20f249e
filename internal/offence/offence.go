// Package offence is the repeat-offender history: every detector (the log
// rules, the slot-holder scan, the kernel's SYN-rate limiter) enters its
// bans here, and the ban duration escalates with a source's offences
// within the retention, whoever caught it before. The state file persists
// it (Snapshot, Restore) so escalation survives restarts.
//
// A History is used from one goroutine (the daemon's main loop); only Len
// and Evicted may be called from others (metrics).
package offence

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// maxBans bounds the ban times kept per source; escalation is capped long
// before 64 offences anyway.
const maxBans = 64

// Policy is how bans escalate and how much history is kept.
type Policy struct {
	// BanDuration is the first ban's length; each offence within
	// Retention multiplies it by Factor, up to MaxBanDuration.
	BanDuration    time.Duration
	Factor         float64
	MaxBanDuration time.Duration
	Retention      time.Duration
	// MaxOffenders caps the history; the least recently banned go first.
	MaxOffenders int
	// Granularity is what a source is known by: the kernel's.
	Granularity datapath.Granularity
}

// Validate names the first bad field.
func (p Policy) Validate() error {
	switch {
	case p.BanDuration <= 0:
		return errors.New("ban duration must be positive")
	case p.Factor < 1 || math.IsNaN(p.Factor) || math.IsInf(p.Factor, 0):
		return fmt.Errorf("escalation factor %v is below 1", p.Factor)
	case p.MaxBanDuration < p.BanDuration:
		return fmt.Errorf("max ban duration %v is shorter than the ban duration %v", p.MaxBanDuration, p.BanDuration)
	case p.Retention < 0:
		return fmt.Errorf("retention %v is negative", p.Retention)
	case p.MaxOffenders < 1:
		return fmt.Errorf("max offenders %d must be at least 1", p.MaxOffenders)
	case p.Granularity.V4 < 1 || p.Granularity.V4 > 32 || p.Granularity.V6 < 1 || p.Granularity.V6 > 128:
		return fmt.Errorf("masks /%d, /%d out of range", p.Granularity.V4, p.Granularity.V6)
	}
	return nil
}

// Offender is one source's history, as persisted.
type Offender struct {
	Prefix   netip.Prefix    `json:"prefix"`
	Bans     []time.Time     `json:"bans,omitempty"` // when each ban within the retention began
	Until    time.Time       `json:"until,omitzero"` // end of the latest ban
	Reason   datapath.Reason `json:"reason,omitempty"`
	Detector string          `json:"detector,omitempty"` // of the latest ban
}

type entry struct {
	prefix   netip.Prefix
	bans     []int64 // unix nanoseconds
	until    int64
	reason   datapath.Reason
	detector string
	elem     *list.Element
}

// History is the repeat-offender history.
type History struct {
	pol     Policy
	byKey   map[netip.Prefix]*entry
	order   *list.List // front: most recently banned
	size    atomic.Int64
	evicted atomic.Uint64
}

// New returns an empty history; pol must be valid.
func New(pol Policy) (*History, error) {
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	return &History{pol: pol, byKey: map[netip.Prefix]*entry{}, order: list.New()}, nil
}

// SetPolicy applies a new policy (a reload), keeping the history. Sources
// are still known by the mask they were first entered with.
func (h *History) SetPolicy(pol Policy) error {
	if err := pol.Validate(); err != nil {
		return err
	}
	h.pol = pol
	h.trim()
	return nil
}

// Key is the prefix a source is known by: p's first address masked to the
// policy's granularity.
func (h *History) Key(p netip.Prefix) netip.Prefix {
	return h.pol.Granularity.Mask(p.Masked().Addr())
}

// Record enters a ban of p beginning at at, and returns how long it should
// last and which offence it is (1 for the first within the retention).
func (h *History) Record(p netip.Prefix, at time.Time, reason datapath.Reason, detector string) (time.Duration, int) {
	e := h.touch(h.Key(p))
	now := at.UnixNano()
	cut := now - int64(h.pol.Retention)
	kept := e.bans[:0]
	for _, b := range e.bans {
		if b >= cut {
			kept = append(kept, b)
		}
	}
	e.bans = append(kept, now)
	if len(e.bans) > maxBans {
		e.bans = append(e.bans[:0], e.bans[len(e.bans)-maxBans:]...)
	}
	offence := len(e.bans)
	dur := h.Escalate(offence)
	if u := now + int64(dur); u > e.until {
		e.until = u
	}
	e.reason, e.detector = reason, detector
	h.trim()
	return dur, offence
}

// Forgive takes back the ban of p recorded at at, which its caller chose
// not to carry out: it leaves the history, and the source is no longer
// held banned, so its next events count again.
func (h *History) Forgive(p netip.Prefix, at time.Time) {
	k := h.Key(p)
	e := h.byKey[k]
	if e == nil {
		return
	}
	ns := at.UnixNano()
	for i := len(e.bans) - 1; i >= 0; i-- {
		if e.bans[i] == ns {
			e.bans = append(e.bans[:i], e.bans[i+1:]...)
			break
		}
	}
	// A ban is only recorded for a source not already held banned, so
	// nothing else holds it now.
	e.until = 0
	if len(e.bans) == 0 {
		h.order.Remove(e.elem)
		delete(h.byKey, k)
		h.size.Store(int64(len(h.byKey)))
	}
}

// touch returns k's entry, created if need be, as the most recently banned.
func (h *History) touch(k netip.Prefix) *entry {
	e := h.byKey[k]
	if e == nil {
		e = &entry{prefix: k}
		h.byKey[k] = e
		e.elem = h.order.PushFront(e)
	} else {
		h.order.MoveToFront(e.elem)
	}
	return e
}

// Escalate is the ban duration of the given offence.
func (h *History) Escalate(offence int) time.Duration {
	d := float64(h.pol.BanDuration) * math.Pow(h.pol.Factor, float64(offence-1))
	if d > float64(h.pol.MaxBanDuration) || math.IsInf(d, 0) || math.IsNaN(d) {
		return h.pol.MaxBanDuration
	}
	return time.Duration(d)
}

// BannedAt reports whether the source of key k (already masked, see Key)
// is under a ban the history knows of at now (unix nanoseconds).
func (h *History) BannedAt(k netip.Prefix, now int64) bool {
	e := h.byKey[k]
	return e != nil && e.until > now
}

// Get returns the history of the source p falls in.
func (h *History) Get(p netip.Prefix) (Offender, bool) {
	e := h.byKey[h.Key(p)]
	if e == nil {
		return Offender{}, false
	}
	return e.export(), true
}

func (e *entry) export() Offender {
	o := Offender{Prefix: e.prefix, Until: time.Unix(0, e.until).UTC(), Reason: e.reason, Detector: e.detector}
	for _, b := range e.bans {
		o.Bans = append(o.Bans, time.Unix(0, b).UTC())
	}
	return o
}

// Snapshot exports the history, least recently banned first.
func (h *History) Snapshot() []Offender {
	out := make([]Offender, 0, len(h.byKey))
	for el := h.order.Back(); el != nil; el = el.Prev() {
		out = append(out, el.Value.(*entry).export())
	}
	return out
}

// Restore merges a history exported by Snapshot (possibly by a process
// with other masks) into this one. Entries older than the retention are
// dropped.
func (h *History) Restore(list []Offender, now time.Time) error {
	for i, o := range list {
		if !o.Prefix.IsValid() {
			return fmt.Errorf("offender %d: invalid prefix", i)
		}
	}
	sorted := append([]Offender(nil), list...)
	sort.SliceStable(sorted, func(i, j int) bool { return lastBan(sorted[i]).Before(lastBan(sorted[j])) })
	for _, o := range sorted {
		e := h.touch(h.Key(o.Prefix))
		for _, b := range o.Bans {
			e.bans = append(e.bans, b.UnixNano())
		}
		sort.Slice(e.bans, func(i, j int) bool { return e.bans[i] < e.bans[j] })
		if len(e.bans) > maxBans {
			e.bans = e.bans[len(e.bans)-maxBans:]
		}
		if u := o.Until.UnixNano(); u > e.until {
			e.until = u
		}
		if o.Reason != 0 {
			e.reason, e.detector = o.Reason, o.Detector
		}
	}
	h.Expire(now)
	h.trim()
	return nil
}

func lastBan(o Offender) time.Time {
	if len(o.Bans) == 0 {
		return o.Until
	}
	return o.Bans[len(o.Bans)-1]
}

// Expire forgets sources whose last ban is older than the retention and
// has ended.
func (h *History) Expire(now time.Time) {
	cut := now.UnixNano() - int64(h.pol.Retention)
	for el := h.order.Back(); el != nil; {
		prev := el.Prev()
		e := el.Value.(*entry)
		if (len(e.bans) == 0 || e.bans[len(e.bans)-1] < cut) && e.until < now.UnixNano() {
			h.order.Remove(el)
			delete(h.byKey, e.prefix)
		}
		el = prev
	}
	h.size.Store(int64(len(h.byKey)))
}

func (h *History) trim() {
	for len(h.byKey) > h.pol.MaxOffenders {
		el := h.order.Back()
		h.order.Remove(el)
		delete(h.byKey, el.Value.(*entry).prefix)
		h.evicted.Add(1)
	}
	h.size.Store(int64(len(h.byKey)))
}

// Len is the number of sources in the history; safe from any goroutine.
func (h *History) Len() int { return int(h.size.Load()) }

// Evicted counts sources dropped because MaxOffenders was reached; safe
// from any goroutine.
func (h *History) Evicted() uint64 { return h.evicted.Load() }
