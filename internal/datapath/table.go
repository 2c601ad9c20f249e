package datapath

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// The IPv4 ban table's geometry and encoding, from bpf/xdpguard.h.
const (
	banWays      = int(bpf.XdpguardBanTableBAN_WAYS)
	banProbes    = int(bpf.XdpguardBanTableBAN_PROBES)
	banTickShift = uint(bpf.XdpguardBanTableBAN_TICK_SHIFT)
	expRemoved   = uint32(bpf.XdpguardBanTableBAN_EXP_REMOVED)
	expForever   = uint32(bpf.XdpguardBanTableBAN_EXP_FOREVER)
)

// ErrTableFull means every slot an IPv4 address may use holds a live ban.
var ErrTableFull = errors.New("IPv4 ban table full around this address (raise max_bans)")

// table4 is userspace's view of the side of the IPv4 ban table in use: the
// very memory the XDP program reads, mapped shared, and written with the
// program's protocol. A slot changes only by compare-and-swap from the
// value last read, so the kernel's auto-bans and userspace's bans never
// overwrite each other, and no lock is shared with the packet path.
// Userspace writers also hold Guard.lockWrites, which is what keeps the
// side in use from changing under them (see grow).
type table4 struct {
	slots []uint64 // bucket b's slots are slots[b*banWays:][:banWays]
	meta  []byte   // per bucket: origin[banWays] then reason[banWays]
	mask  uint32
	seed  uint32
	side  int // slots in the whole side, the most it can grow to
}

// banSide is one side of the table, mapped whole.
type banSide struct {
	slots   []uint64
	meta    []byte
	buckets uint32
	maps    [][]byte // the mappings of both sides, held by side 0
}

// initialBuckets is where a new table starts: 256 KiB, 16,384 bans at half
// load, so that a host with few bans misses the cache less. It grows on
// demand up to a side's size; the kernel alone (no daemon) can fill it to
// about twice that before its auto-bans find no room.
const initialBuckets = 4096

// mapSides maps the table and its metadata, and splits both in halves.
func mapSides(bans, meta *ebpf.Map) ([2]*banSide, error) {
	n := bans.MaxEntries()
	if n < 2 || (n/2)&(n/2-1) != 0 || n%2 != 0 || meta.MaxEntries() != n {
		return [2]*banSide{}, fmt.Errorf("IPv4 ban table: %d buckets and %d metadata entries: pinned by an incompatible version? (xdpguard detach, then start again)", n, meta.MaxEntries())
	}
	b, err := mmap(bans, int(n)*banWays*8)
	if err != nil {
		return [2]*banSide{}, err
	}
	m, err := mmap(meta, int(n)*2*banWays)
	if err != nil {
		unix.Munmap(b)
		return [2]*banSide{}, err
	}
	slots := unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), int(n)*banWays)
	half := int(n / 2)
	var sides [2]*banSide
	for i := range sides {
		sides[i] = &banSide{
			slots:   slots[i*half*banWays : (i+1)*half*banWays],
			meta:    m[i*half*2*banWays : (i+1)*half*2*banWays],
			buckets: n / 2,
		}
	}
	sides[0].maps = [][]byte{b, m}
	return sides, nil
}

func (s *banSide) close() {
	for _, b := range s.maps {
		unix.Munmap(b)
	}
	s.maps, s.slots, s.meta = nil, nil, nil
}

// view is the side's first mask+1 buckets, as the program sees them.
func (s *banSide) view(mask, seed uint32) (*table4, error) {
	if mask >= s.buckets || (mask+1)&mask != 0 {
		return nil, fmt.Errorf("IPv4 ban table: settings say %d buckets of %d: pinned by an incompatible version? (xdpguard detach, then start again)", uint64(mask)+1, s.buckets)
	}
	n := int(mask) + 1
	return &table4{slots: s.slots[:n*banWays], meta: s.meta[:n*2*banWays], mask: mask, seed: seed, side: len(s.slots)}, nil
}

func mmap(m *ebpf.Map, size int) ([]byte, error) {
	page := os.Getpagesize()
	b, err := unix.Mmap(m.FD(), 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map the IPv4 ban table into memory: %w", privilegeHint(err))
	}
	return b, nil
}

// hash is ban_hash in bpf/bantable.h.
func (t *table4) hash(key uint32) uint32 { return Fmix32(key ^ t.seed) }

// Fmix32 is the murmur3 finalizer, fmix32 in bpf/hash.h: the hash of the
// IPv4 ban table, over the seeded key, and of bench/drop's reference table.
func Fmix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// probe returns the index of the i-th slot of key's probe sequence.
func (t *table4) probe(key uint32, i int) int {
	b := (t.hash(key) + uint32(i/banWays)) & t.mask
	return int(b)*banWays + i%banWays
}

func (t *table4) load(i int) uint64 { return atomic.LoadUint64(&t.slots[i]) }

func (t *table4) cas(i int, old, new uint64) bool {
	return atomic.CompareAndSwapUint64(&t.slots[i], old, new)
}

func word(key, exp uint32) uint64 { return uint64(exp)<<32 | uint64(key) }

func live(w uint64, tick uint64) bool {
	exp := uint32(w >> 32)
	return exp == expForever || uint64(exp) > tick
}

// tickOf is the program's clock in table ticks.
func tickOf(monoNs uint64) uint64 { return monoNs >> banTickShift }

// expOf encodes a CLOCK_MONOTONIC deadline (0: never), rounded up to a tick
// so that no ban ends early.
func expOf(deadline uint64) uint32 {
	if deadline == 0 {
		return expForever
	}
	t := (deadline + 1<<banTickShift - 1) >> banTickShift
	return uint32(min(max(t, uint64(expRemoved)+1), uint64(expForever)-1))
}

// deadlineOf decodes exp back to CLOCK_MONOTONIC nanoseconds (0: never).
func deadlineOf(exp uint32) uint64 {
	if exp == expForever {
		return 0
	}
	return uint64(exp) << banTickShift
}

// entry is one slot's ban.
type entry struct {
	key            uint32 // network order, as the program reads it
	exp            uint32
	origin, reason uint8
}

func (t *table4) metaOf(i int) (origin, reason uint8) {
	b, s := i/banWays, i%banWays
	return t.meta[b*2*banWays+s], t.meta[b*2*banWays+banWays+s]
}

func (t *table4) setMeta(i int, origin, reason uint8) {
	b, s := i/banWays, i%banWays
	t.meta[b*2*banWays+s], t.meta[b*2*banWays+banWays+s] = origin, reason
}

// find returns the slot that decides key's ban, as the program's lookup_v4
// finds it: the first slot holding key before a never-used one.
func (t *table4) find(key uint32) (int, uint64, bool) {
	for p := range banProbes * banWays {
		i := t.probe(key, p)
		w := t.load(i)
		if w == 0 {
			return 0, 0, false
		}
		if uint32(w) == key {
			return i, w, true
		}
	}
	return 0, 0, false
}

// get returns key's ban if it is live at tick.
func (t *table4) get(key uint32, tick uint64) (entry, bool) {
	i, w, ok := t.find(key)
	if !ok || !live(w, tick) {
		return entry{}, false
	}
	o, r := t.metaOf(i)
	return entry{key: key, exp: uint32(w >> 32), origin: o, reason: r}, true
}

// put bans key until exp, in the first slot of its probe sequence that is
// free (never used, unbanned or expired) or already key's, as the program's
// ban_v4 does. Later slots still holding key, left by a race with the
// program, are retired, so the slot written decides.
func (t *table4) put(e entry, tick uint64) error {
	nw := word(e.key, e.exp)
	for attempt := 0; attempt < 16; attempt++ {
		at := -1
		for p := range banProbes * banWays {
			i := t.probe(e.key, p)
			w := t.load(i)
			if w != 0 && uint32(w) != e.key && live(w, tick) {
				continue
			}
			if !t.cas(i, w, nw) {
				break // raced; read the sequence again
			}
			t.setMeta(i, e.origin, e.reason)
			at = p
			break
		}
		if at < 0 {
			if t.full(e.key, tick) {
				return ErrTableFull
			}
			continue
		}
		t.retire(e.key, at+1)
		return nil
	}
	return fmt.Errorf("IPv4 ban table: the slots around this address kept changing under 16 attempts")
}

func (t *table4) full(key uint32, tick uint64) bool {
	for p := range banProbes * banWays {
		w := t.load(t.probe(key, p))
		if w == 0 || uint32(w) == key || !live(w, tick) {
			return false
		}
	}
	return true
}

// retire marks key's slots from probe position `from` on as unbanned.
func (t *table4) retire(key uint32, from int) {
	for p := from; p < banProbes*banWays; p++ {
		i := t.probe(key, p)
		for {
			w := t.load(i)
			if w == 0 {
				return
			}
			if uint32(w) != key || uint32(w>>32) == expRemoved || t.cas(i, w, word(key, expRemoved)) {
				break
			}
		}
	}
}

// remove unbans key and reports whether its ban was live at tick.
func (t *table4) remove(key uint32, tick uint64) bool {
	_, w, ok := t.find(key)
	was := ok && live(w, tick)
	t.retire(key, 0)
	return was
}

// each calls fn for every slot holding a ban, live or expired, unless
// unbanned. A key the program and userspace raced on may come twice; the
// caller keeps what get returns.
func (t *table4) each(fn func(int, entry)) {
	for i := range t.slots {
		w := t.load(i)
		if w == 0 || uint32(w>>32) == expRemoved {
			continue
		}
		o, r := t.metaOf(i)
		fn(i, entry{key: uint32(w), exp: uint32(w >> 32), origin: o, reason: r})
	}
}

// sweep retires expired bans, and returns slots to never-used where no key
// can lie beyond them, so that lookups of absent keys keep stopping at the
// first slot. It returns how many expired bans it retired.
func (t *table4) sweep(tick uint64) int {
	n := 0
	for i := range t.slots {
		w := t.load(i)
		if w != 0 && uint32(w>>32) != expRemoved && !live(w, tick) && t.cas(i, w, word(uint32(w), expRemoved)) {
			n++
		}
	}
	// Backwards from a never-used slot, around the ring, so that every run
	// of retired slots ending at a never-used one clears in one pass (the
	// last bucket's successor is the first). Slot i may become never-used
	// only while slot i+1 is; if i+1 is claimed meanwhile, i is retired
	// again at once. Until then a lookup of the key claimed at i+1 may stop
	// short: a ban made that same microsecond can miss a packet or two,
	// never the reverse.
	size := len(t.slots)
	start := -1
	for i := range t.slots {
		if t.load(i) == 0 {
			start = i
			break
		}
	}
	if start < 0 {
		return n // every slot used: nothing to anchor on until one frees
	}
	for k := 1; k < size; k++ {
		i := (start - k + size) % size
		next := (i + 1) % size
		w := t.load(i)
		if w == 0 || uint32(w>>32) != expRemoved || t.load(next) != 0 {
			continue
		}
		if t.cas(i, w, 0) && t.load(next) != 0 {
			t.cas(i, 0, w)
		}
	}
	return n
}

// count returns the number of live bans at tick.
func (t *table4) count(tick uint64) int {
	n := 0
	for i := range t.slots {
		if w := t.load(i); w != 0 && live(w, tick) {
			n++
		}
	}
	return n
}

// grow moves the table to its other side, with enough buckets in use to
// keep bans at most half full (up to the maps' size), and switches the
// program to it. The caller holds lockWrites, so no userspace writer uses
// the old side meanwhile; the program may, until it sees the switch, and
// what it banned there is carried over after.
func (g *Guard) grow(cur *table4, bans int, tick uint64) (*table4, error) {
	c, sides, err := g.tableState()
	if err != nil {
		return nil, err
	}
	next := 1 - c.V4Active&1
	have := uint32(len(cur.slots) / banWays)
	n := have
	for uint64(n)*uint64(banWays) < 2*uint64(bans) && n < sides[next].buckets {
		n <<= 1
	}
	if n <= have {
		return cur, nil // at the maps' size: ErrTableFull will say so
	}
	nv, err := sides[next].view(n-1, c.V4Seed)
	if err != nil {
		return nil, err
	}
	// Nothing reads the side not in use: the last program that did
	// finished long before the last switch.
	clear(nv.slots)
	clear(nv.meta)
	carry := func() error {
		var err error
		cur.each(func(i int, e entry) {
			if at, w, _ := cur.find(e.key); err != nil || at != i || !live(w, tick) {
				return
			}
			if have, ok := nv.get(e.key, tick); ok && (have.exp == expForever || e.exp != expForever && have.exp >= e.exp) {
				return
			}
			err = nv.put(e, tick)
		})
		return err
	}
	if err := carry(); err != nil {
		return nil, fmt.Errorf("grow the IPv4 ban table to %d buckets: %w", n, err)
	}
	// Two writes, so that no packet can see the new side with its old size.
	c.V4Mask[next] = n - 1
	if err := g.writeConfig(&c); err != nil {
		return nil, fmt.Errorf("grow the IPv4 ban table: %w", err)
	}
	c.V4Active = next
	if err := g.writeConfig(&c); err != nil {
		return nil, fmt.Errorf("grow the IPv4 ban table: %w", err)
	}
	// A program that read the old side finishes within microseconds;
	// whatever it banned there moves over now.
	time.Sleep(10 * time.Millisecond)
	if err := carry(); err != nil {
		return nil, fmt.Errorf("grow the IPv4 ban table to %d buckets: %w", n, err)
	}
	return nv, nil
}
