package datapath

import (
	"errors"
	"fmt"
	"os"
	"runtime"
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
	keyFree      = uint32(bpf.XdpguardBanTableBAN_KEY_FREE)
	keyTomb      = uint32(bpf.XdpguardBanTableBAN_KEY_TOMB)
	expForever   = uint32(bpf.XdpguardBanTableBAN_EXP_FOREVER)
	lockFree     = uint32(bpf.XdpguardBanTableBAN_UNLOCKED)
	lockKernel   = uint32(bpf.XdpguardBanTableBAN_LOCK_KERNEL)
	lockUser     = uint32(bpf.XdpguardBanTableBAN_LOCK_USER)
	banTagShift  = uint(bpf.XdpguardBanTableBAN_TAG_SHIFT)

	bucketWords = banWays + 2 // a bucket's keys, then its tags and min_exp
	metaSize    = int(unsafe.Sizeof(bpf.XdpguardBanMeta{}))
)

// The kernel lays an array's values out 8 bytes apart (round_up(value_size,
// 8)); a struct ban_meta of any other size would put userspace's view of
// the mapping out of step with the program's. This fails to compile then.
var _ = [1]struct{}{}[metaSize%8]

// The load a side is sized and grown for: at most 3 keys in 5 slots.
// Half, as the bucket-array reference in bench/drop uses, would put a
// million bans in twice the buckets, since 14 slots a bucket fall short of
// a power of two's worth.
func fits(buckets uint32, bans uint64) bool { return 3*uint64(buckets)*uint64(banWays) >= 5*bans }

// ErrTableFull means every slot an IPv4 address may use holds a live ban.
var ErrTableFull = errors.New("IPv4 ban table full around this address (raise max_bans)")

// errUnbannable4 refuses the two keys that mark free slots.
var errUnbannable4 = errors.New("0.0.0.0 and 255.255.255.255 are never a TCP peer, and cannot be banned")

// table4 is userspace's view of the side of the IPv4 ban table in use: the
// very memory the XDP program reads, mapped shared, and written with the
// program's protocol (bpf/xdpguard.h): under the bucket's lock, a key
// published last. Userspace writers also hold Guard.lockWrites, which
// makes them one writer, and keeps the side in use from changing under
// them (see grow).
type table4 struct {
	hot  []uint32              // bucket b: hot[b*bucketWords:][:banWays] keys, then tags and min_exp
	meta []bpf.XdpguardBanMeta // bucket b's deadlines, lock, origins, reasons
	mask uint32
	seed uint32
	side int // buckets in the whole side, the most it can grow to
}

// banSide is one side of the table, mapped whole.
type banSide struct {
	hot     []uint32
	meta    []bpf.XdpguardBanMeta
	buckets uint32
	maps    [][]byte // the mappings of both sides, held by side 0
}

// initialBuckets is where a new table starts: 128 KiB, 17,000 bans, so
// that a host with few bans misses the cache less. It grows on demand up
// to a side's size; the kernel alone (no daemon) can fill it to about
// 30,000 before its auto-bans find no room.
const initialBuckets = 2048

// mapSides maps the table and its metadata, and splits both in halves.
func mapSides(bans, meta *ebpf.Map) ([2]*banSide, error) {
	n := bans.MaxEntries()
	if n < 2 || (n/2)&(n/2-1) != 0 || n%2 != 0 || meta.MaxEntries() != n ||
		bans.ValueSize() != uint32(4*bucketWords) || meta.ValueSize() != uint32(metaSize) {
		return [2]*banSide{}, fmt.Errorf("IPv4 ban table: %d buckets of %d bytes and %d metadata entries of %d: pinned by an incompatible version? (xdpguard detach, then start again)",
			n, bans.ValueSize(), meta.MaxEntries(), meta.ValueSize())
	}
	b, err := mmap(bans, int(n)*4*bucketWords)
	if err != nil {
		return [2]*banSide{}, err
	}
	m, err := mmap(meta, int(n)*metaSize)
	if err != nil {
		unix.Munmap(b)
		return [2]*banSide{}, err
	}
	hot := unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), int(n)*bucketWords)
	cold := unsafe.Slice((*bpf.XdpguardBanMeta)(unsafe.Pointer(&m[0])), int(n))
	half := int(n / 2)
	var sides [2]*banSide
	for i := range sides {
		sides[i] = &banSide{
			hot:     hot[i*half*bucketWords : (i+1)*half*bucketWords],
			meta:    cold[i*half : (i+1)*half],
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
	s.maps, s.hot, s.meta = nil, nil, nil
}

// view is the side's first mask+1 buckets, as the program sees them.
func (s *banSide) view(mask, seed uint32) (*table4, error) {
	if mask >= s.buckets || (mask+1)&mask != 0 {
		return nil, fmt.Errorf("IPv4 ban table: settings say %d buckets of %d: pinned by an incompatible version? (xdpguard detach, then start again)", uint64(mask)+1, s.buckets)
	}
	n := int(mask) + 1
	return &table4{hot: s.hot[:n*bucketWords], meta: s.meta[:n], mask: mask, seed: seed, side: int(s.buckets)}, nil
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

// A slot is numbered b*banWays + s: slot s of bucket b.

func (t *table4) buckets() int { return len(t.meta) }
func (t *table4) slots() int   { return len(t.meta) * banWays }

// probe returns the i-th slot of key's probe sequence.
func (t *table4) probe(key uint32, i int) int {
	b := (t.hash(key) + uint32(i/banWays)) & t.mask
	return int(b)*banWays + i%banWays
}

func (t *table4) keyp(i int) *uint32    { return &t.hot[i/banWays*bucketWords+i%banWays] }
func (t *table4) expp(i int) *uint32    { return &t.meta[i/banWays].Exp[i%banWays] }
func (t *table4) tagp(b int) *uint32    { return &t.hot[b*bucketWords+banWays] }
func (t *table4) minp(b int) *uint32    { return &t.hot[b*bucketWords+banWays+1] }
func (t *table4) tag(key uint32) uint32 { return 1 << (t.hash(key) >> banTagShift) }
func (t *table4) key(i int) uint32      { return atomic.LoadUint32(t.keyp(i)) }
func (t *table4) exp(i int) uint32      { return atomic.LoadUint32(t.expp(i)) }
func (t *table4) minExp(b int) uint32   { return atomic.LoadUint32(t.minp(b)) }
func used(k uint32) bool                { return k != keyFree && k != keyTomb }

func live(exp uint32, tick uint64) bool { return exp == expForever || uint64(exp) > tick }

// lock takes bucket b's lock from the program's writers. The program holds
// it for nanoseconds, so a writer spins. A lock that userspace holds here
// was left by a writer that died holding it (lockWrites lets one at a
// time in), in a state a reader already copes with: it is taken over.
func (t *table4) lock(b int) {
	l := &t.meta[b].Lock
	for spin := 0; ; spin++ {
		v := atomic.LoadUint32(l)
		if v == lockUser || v == lockFree && atomic.CompareAndSwapUint32(l, lockFree, lockUser) {
			return
		}
		if spin > 64 {
			runtime.Gosched()
		}
	}
}

func (t *table4) unlock(b int) { atomic.StoreUint32(&t.meta[b].Lock, lockFree) }

// init readies buckets nobody has written: no ban in them expires.
func (t *table4) init() {
	for b := range t.buckets() {
		atomic.StoreUint32(t.minp(b), expForever)
	}
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
	return uint32(min(max(t, 1), uint64(expForever)-1))
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

func (t *table4) entryAt(i int) entry {
	m := &t.meta[i/banWays]
	s := i % banWays
	return entry{key: t.key(i), exp: t.exp(i), origin: m.Origin[s], reason: m.Reason[s]}
}

// find returns the slot that decides key's ban, as the program's lookup_v4
// finds it: the first slot holding key before a never-used one.
func (t *table4) find(key uint32) (int, bool) {
	if !used(key) {
		return 0, false
	}
	for p := range banProbes * banWays {
		i := t.probe(key, p)
		switch t.key(i) {
		case keyFree:
			return 0, false
		case key:
			return i, true
		}
	}
	return 0, false
}

// get returns key's ban if it is live at tick.
func (t *table4) get(key uint32, tick uint64) (entry, bool) {
	i, ok := t.find(key)
	if !ok {
		return entry{}, false
	}
	e := t.entryAt(i)
	if e.key != key || !live(e.exp, tick) {
		return entry{}, false
	}
	return e, true
}

// put bans key until exp, in the first slot of its probe sequence that is
// free (never used, unbanned or expired) or already key's, as the program's
// ban_v4 does. Later slots still holding key are retired, so the slot
// written decides.
func (t *table4) put(e entry, tick uint64) error {
	if !used(e.key) {
		return errUnbannable4
	}
	for range 16 {
		at := -1
		for p := range banProbes * banWays {
			i := t.probe(e.key, p)
			if k := t.key(i); k == e.key || !used(k) || !live(t.exp(i), tick) {
				at = p
				break
			}
		}
		if at < 0 {
			return ErrTableFull
		}
		if t.claim(t.probe(e.key, at), e, tick) {
			t.retire(e.key, at+1)
			return nil
		}
	}
	return fmt.Errorf("IPv4 ban table: the slots around this address kept changing under 16 attempts")
}

// claim writes e into slot i if it is still free, expired or e.key's,
// in the order the program's lookups rely on: the deadline, then the key.
func (t *table4) claim(i int, e entry, tick uint64) bool {
	b, s := i/banWays, i%banWays
	t.lock(b)
	defer t.unlock(b)
	k := t.key(i)
	if k != e.key && used(k) && live(t.exp(i), tick) {
		return false // the program banned another source here meanwhile
	}
	if k != e.key && k != keyFree {
		atomic.StoreUint32(t.keyp(i), keyTomb) // not seen with e's deadline
	}
	if e.exp < t.minExp(b) {
		atomic.StoreUint32(t.minp(b), e.exp)
	}
	atomic.StoreUint32(t.tagp(b), atomic.LoadUint32(t.tagp(b))|t.tag(e.key))
	atomic.StoreUint32(t.expp(i), e.exp)
	t.meta[b].Origin[s], t.meta[b].Reason[s] = e.origin, e.reason
	atomic.StoreUint32(t.keyp(i), e.key)
	return true
}

// retire marks key's slots from probe position `from` on as unbanned.
func (t *table4) retire(key uint32, from int) {
	for p := from; p < banProbes*banWays; p++ {
		i := t.probe(key, p)
		switch t.key(i) {
		case keyFree:
			return
		case key:
			t.lock(i / banWays)
			atomic.CompareAndSwapUint32(t.keyp(i), key, keyTomb)
			t.unlock(i / banWays)
		}
	}
}

// remove unbans key and reports whether its ban was live at tick.
func (t *table4) remove(key uint32, tick uint64) bool {
	_, was := t.get(key, tick)
	t.retire(key, 0)
	return was
}

// each calls fn for every slot holding a ban, live or expired. A key the
// program and userspace raced on may come twice; the caller keeps what
// find returns.
func (t *table4) each(fn func(int, entry)) {
	for i := range t.slots() {
		if used(t.key(i)) {
			fn(i, t.entryAt(i))
		}
	}
}

// sweep retires expired bans, sets each bucket's earliest deadline and
// tags to its live bans' own again, and returns slots to never-used where no key can lie
// beyond them, so that lookups of absent keys keep stopping at the first
// slot. It returns how many expired bans it retired.
func (t *table4) sweep(tick uint64) int {
	n := 0
	for b := range t.buckets() {
		if m, tags, dirty := t.earliest(b, tick); !dirty && m == t.minExp(b) &&
			tags == atomic.LoadUint32(t.tagp(b)) {
			continue
		}
		t.lock(b)
		for s := range banWays {
			i := b*banWays + s
			if k := t.key(i); used(k) && !live(t.exp(i), tick) {
				atomic.StoreUint32(t.keyp(i), keyTomb)
				n++
			}
		}
		m, tags, _ := t.earliest(b, tick)
		atomic.StoreUint32(t.minp(b), m)
		atomic.StoreUint32(t.tagp(b), tags)
		t.unlock(b)
	}
	// Backwards from a never-used slot, around the ring, so that every run
	// of retired slots ending at a never-used one clears in one pass (the
	// last bucket's successor is the first). Under both buckets' locks:
	// the program claims a never-used slot only under its bucket's.
	size := t.slots()
	start := -1
	for i := range size {
		if t.key(i) == keyFree {
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
		if t.key(i) != keyTomb || t.key(next) != keyFree {
			continue
		}
		b, nb := i/banWays, next/banWays
		t.lock(b)
		if nb != b {
			t.lock(nb)
		}
		if t.key(i) == keyTomb && t.key(next) == keyFree {
			atomic.StoreUint32(t.keyp(i), keyFree)
		}
		if nb != b {
			t.unlock(nb)
		}
		t.unlock(b)
	}
	return n
}

// earliest returns bucket b's earliest live deadline, the tags of its live
// bans, and whether it holds an expired ban.
func (t *table4) earliest(b int, tick uint64) (uint32, uint32, bool) {
	m, tags, dirty := expForever, uint32(0), false
	for s := range banWays {
		i := b*banWays + s
		k := t.key(i)
		if !used(k) {
			continue
		}
		if x := t.exp(i); live(x, tick) {
			m = min(m, x)
			tags |= t.tag(k)
		} else {
			dirty = true
		}
	}
	return m, tags, dirty
}

// count returns the number of live bans at tick.
func (t *table4) count(tick uint64) int {
	n := 0
	for i := range t.slots() {
		if used(t.key(i)) && live(t.exp(i), tick) {
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
	have := uint32(cur.buckets())
	n := have
	for !fits(n, uint64(bans)) && n < sides[next].buckets {
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
	clear(nv.hot)
	clear(nv.meta)
	nv.init()
	carry := func() error {
		var err error
		cur.each(func(i int, e entry) {
			if at, _ := cur.find(e.key); err != nil || at != i || !live(e.exp, tick) {
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
