package state

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// Batch collects changes for one Commit: they reach the disk together,
// with one write and one fsync.
type Batch struct {
	e enc
	n int
}

// Len is how many records the batch holds.
func (b *Batch) Len() int { return b.n }

// Reset empties the batch, keeping its buffer.
func (b *Batch) Reset() { b.e.b, b.n = b.e.b[:0], 0 }

// Ban records bans. Consecutive bans that differ only in their prefix
// share one record, so a list banned with one command costs five bytes an
// IPv4 address.
func (b *Batch) Ban(bans ...datapath.Ban) {
	for i := 0; i < len(bans); {
		h := headOf(bans[i])
		j := i + 1
		for j < len(bans) && headOf(bans[j]) == h {
			j++
		}
		ps := make([]netip.Prefix, 0, j-i)
		for _, x := range bans[i:j] {
			ps = append(ps, x.Prefix)
		}
		b.BanAll(bans[i], ps)
		i = j
	}
}

// BanAll records a ban on each of ps with like's expiry, origin, reason and
// evidence (like's own prefix is ignored).
func (b *Batch) BanAll(like datapath.Ban, ps []netip.Prefix) {
	if len(ps) == 0 {
		return
	}
	b.e.banRecord(headOf(like), ps)
	b.n++
}

// Unban records lifted bans.
func (b *Batch) Unban(ps ...netip.Prefix) { b.prefixes(recUnban, ps) }

// UnbanAll records that every ban was lifted.
func (b *Batch) UnbanAll() {
	b.e.end(b.e.begin(recUnbanAll))
	b.n++
}

// Allow records allow rules sharing an expiry (zero: permanent).
func (b *Batch) Allow(expires time.Time, ps ...netip.Prefix) {
	if len(ps) == 0 {
		return
	}
	at := b.e.begin(recAllow)
	b.e.time(expires)
	b.e.prefixList(ps)
	b.e.end(at)
	b.n++
}

// RemoveAllow records removed allow rules.
func (b *Batch) RemoveAllow(ps ...netip.Prefix) { b.prefixes(recAllowRemove, ps) }

// Offender records one offender's history as it is now.
func (b *Batch) Offender(o offence.Offender) {
	b.e.offenderRecord(o)
	b.n++
}

// KnownGood records sources that logged in, with when they last did.
func (b *Batch) KnownGood(ks ...KnownGood) {
	if len(ks) == 0 {
		return
	}
	at := b.e.begin(recKnownGood)
	b.e.u(uint64(len(ks)))
	for _, k := range ks {
		b.e.prefix(k.Prefix)
		b.e.time(k.LastSeen)
	}
	b.e.end(at)
	b.n++
}

// ForgetKnownGood records known-good sources dropped (expired or evicted).
func (b *Batch) ForgetKnownGood(ps ...netip.Prefix) { b.prefixes(recKnownGoodDel, ps) }

// Cursor records the journal cursor of the last log line read.
func (b *Batch) Cursor(c string) {
	at := b.e.begin(recCursor)
	b.e.str(c)
	b.e.end(at)
	b.n++
}

func (b *Batch) prefixes(t byte, ps []netip.Prefix) {
	if len(ps) == 0 {
		return
	}
	at := b.e.begin(t)
	b.e.prefixList(ps)
	b.e.end(at)
	b.n++
}

// snapshot encodes st as a fresh journal: what compaction writes.
func snapshot(st State) []byte {
	var b Batch
	b.e.b = make([]byte, 0, len(journalHeader)+64+len(st.Bans)*6+len(st.Allow)*40+len(st.Offenders)*60+len(st.KnownGood)*30)
	b.e.b = append(b.e.b, journalHeader...)
	// Sorted, so that replay appends them without a map (banTable).
	bans := slices.Clone(st.Bans)
	slices.SortStableFunc(bans, func(a, b datapath.Ban) int {
		ka, kb := keyOf(a.Prefix), keyOf(b.Prefix)
		return bytes.Compare(ka[:], kb[:])
	})
	b.Ban(bans...)
	for _, a := range st.Allow {
		b.Allow(a.Expires, a.Prefix)
	}
	for _, o := range st.Offenders {
		b.Offender(o)
	}
	b.KnownGood(st.KnownGood...)
	if st.JournalCursor != "" {
		b.Cursor(st.JournalCursor)
	}
	return b.e.b
}

// table is a list keyed by prefix in first-insertion order, with
// replacement and deletion, for the journal's replay.
type table[T any] struct {
	items []T
	alive []bool
	idx   map[netip.Prefix]int
}

func (t *table[T]) put(p netip.Prefix, v T) {
	if t.idx == nil {
		t.idx = map[netip.Prefix]int{}
	}
	if i, ok := t.idx[p]; ok {
		t.items[i] = v
		return
	}
	t.idx[p] = len(t.items)
	t.items = append(t.items, v)
	t.alive = append(t.alive, true)
}

func (t *table[T]) del(ps ...netip.Prefix) {
	for _, p := range ps {
		if i, ok := t.idx[p]; ok {
			delete(t.idx, p)
			t.alive[i] = false
			var zero T
			t.items[i] = zero
		}
	}
}

func (t *table[T]) list() []T {
	out := make([]T, 0, len(t.idx))
	for i, x := range t.items {
		if t.alive[i] {
			out = append(out, x)
		}
	}
	return out
}

// replay is the state a journal's records build.
type replay struct {
	bans      banTable
	allow     table[Allow]
	offenders table[offence.Offender]
	known     table[KnownGood]
	cursor    string
}

// ErrDropped marks a journal from which torn or corrupt records were
// dropped; the State returned with it holds every intact record.
var ErrDropped = errors.New("state journal: records dropped")

// readJournal replays a journal. A bad header is an error; a bad record is
// skipped up to the next record that checks, and reported in an error that
// matches ErrDropped, returned with the state.
func readJournal(data []byte) (State, error) {
	r, err := replayJournal(data)
	if r == nil {
		return State{}, err
	}
	return r.state(), err
}

// replayJournal is readJournal before the State is built: nil for a bad
// header.
func replayJournal(data []byte) (*replay, error) {
	if len(data) < len(journalHeader) && bytes.HasPrefix([]byte(journalHeader), data) {
		// Created, and a crash came before its first records were synced:
		// nothing in it was ever reported as applied.
		if len(data) > 0 {
			return &replay{}, fmt.Errorf("%w: a header cut short", ErrDropped)
		}
		return &replay{}, nil
	}
	if !bytes.HasPrefix(data, []byte(journalHeader)) {
		return nil, headerErr(data)
	}
	r := &replay{}
	var drops []string
	off := len(journalHeader)
	for off < len(data) {
		payload, n, err := frame(data[off:])
		if err == nil {
			if err = r.apply(payload); err == nil {
				off += n
				continue
			}
			// Framed and checked, yet not a record this version writes.
			drops = append(drops, fmt.Sprintf("record at byte %d: %v", off, err))
			off += n
			continue
		}
		next := bytes.Index(data[off+1:], []byte(recordMagic))
		skip := len(data) - off
		if next >= 0 {
			skip = next + 1
		}
		drops = append(drops, fmt.Sprintf("%d bytes at byte %d", skip, off))
		off += skip
	}
	if len(drops) > 0 {
		return r, fmt.Errorf("%w: %s", ErrDropped, joinMax(drops, 5))
	}
	return r, nil
}

func joinMax(xs []string, n int) string {
	s := ""
	for i, x := range xs {
		if i == n {
			return s + " and " + strconv.Itoa(len(xs)-n) + " more"
		}
		if i > 0 {
			s += "; "
		}
		s += x
	}
	return s
}

func headerErr(data []byte) error {
	const stem = "xdpguard state journal "
	if bytes.HasPrefix(data, []byte(stem)) {
		line, _, _ := bytes.Cut(data[len(stem):], []byte("\n"))
		if v, err := strconv.Atoi(string(line)); err == nil && v > journalVersion {
			return fmt.Errorf("%w: journal version %d, this xdpguard reads up to %d", ErrFutureVersion, v, journalVersion)
		}
	}
	return errors.New("not an xdpguard state journal (bad header)")
}

// apply decodes a record whole and only then changes the state: a record
// that fails to decode changes nothing.
func (r *replay) apply(payload []byte) error {
	d := dec{b: payload[1:]}
	var do func()
	switch payload[0] {
	case recBan:
		h := d.banHead()
		raw := d.rawPrefixes()
		do = func() { r.bans.put(raw, h) }
	case recUnban:
		ks := d.keys()
		do = func() {
			for _, k := range ks {
				r.bans.del(k)
			}
		}
	case recUnbanAll:
		do = func() { r.bans = banTable{} }
	case recAllow:
		exp := d.time()
		ps := d.prefixes()
		do = func() {
			for _, p := range ps {
				r.allow.put(p, Allow{Prefix: p, Expires: exp})
			}
		}
	case recAllowRemove:
		ps := d.prefixes()
		do = func() { r.allow.del(ps...) }
	case recOffender:
		o := d.offender()
		do = func() { r.offenders.put(o.Prefix, o) }
	case recKnownGood:
		ks := make([]KnownGood, d.count(6))
		for i := range ks {
			ks[i] = KnownGood{Prefix: d.prefix(), LastSeen: d.time()}
		}
		do = func() {
			for _, k := range ks {
				r.known.put(k.Prefix, k)
			}
		}
	case recKnownGoodDel:
		ps := d.prefixes()
		do = func() { r.known.del(ps...) }
	case recCursor:
		c := d.str()
		do = func() { r.cursor = c }
	default:
		return fmt.Errorf("unknown record type %d", payload[0])
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes left over", len(d.b))
	}
	if d.err != nil {
		return d.err
	}
	do()
	return nil
}

func (r *replay) state() State {
	st := State{Version: Version, Bans: r.bans.list(), Allow: r.allow.list(), Offenders: r.offenders.list(),
		JournalCursor: r.cursor}
	if ks := r.known.list(); len(ks) > 0 {
		st.KnownGood = ks
	}
	return st
}
