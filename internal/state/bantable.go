package state

import (
	"bytes"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// pkey is a prefix as a map key without pointers (netip.Prefix holds
// one), which makes replaying a million bans several times faster: the
// tag byte as on disk, then the address.
type pkey [17]byte

func keyOf(p netip.Prefix) pkey {
	var k pkey
	if p.Addr().Is4() {
		k[0] = byte(p.Bits())
		a := p.Addr().As4()
		copy(k[1:], a[:])
		return k
	}
	k[0] = byte(64 + p.Bits())
	a := p.Addr().As16()
	copy(k[1:], a[:])
	return k
}

func (k pkey) prefix() netip.Prefix {
	if k[0] <= 32 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(k[1:5])), int(k[0]))
	}
	return netip.PrefixFrom(netip.AddrFrom16([16]byte(k[1:])), int(k[0])-64)
}

// banTable is the replay's bans. A ban record whose prefixes ascend, all
// after the last one so far, while nothing else has changed a ban, is kept
// as a run of its bytes as on disk, checked and not copied: what compaction
// writes (sorted) and a sorted ban list cost no memory a ban until the
// State or the lists are built. Every other record goes to over, a map
// from prefix to its latest record (-1: lifted), which each consults.
// Prefixes index heads, the records' shared fields.
type banTable struct {
	heads []banHead
	runs  []baseRun
	over  map[pkey]int32
	order []pkey // over's keys, first insertion first
}

// baseRun is n prefixes encoded as on disk, ascending; width is each
// one's size when they are all of one family (0: mixed).
type baseRun struct {
	head  int32
	n     int
	width int
	data  []byte
	first pkey
	last  pkey
}

// rawPrefixes is a ban record's checked prefix list.
type rawPrefixes struct {
	data        []byte
	n, width    int
	ascending   bool
	first, last pkey
}

// nextKey reads a checked prefix from the front of b.
func nextKey(b []byte) (pkey, int) {
	var k pkey
	k[0] = b[0]
	if b[0] <= 32 {
		copy(k[1:], b[1:5])
		return k, 5
	}
	copy(k[1:], b[1:17])
	return k, 17
}

func less(a, b *pkey) bool { return bytes.Compare(a[:], b[:]) < 0 }

func (t *banTable) put(raw rawPrefixes, h banHead) {
	hi := int32(len(t.heads))
	t.heads = append(t.heads, h)
	if raw.n == 0 {
		return
	}
	if len(t.over) == 0 && raw.ascending && (len(t.runs) == 0 || less(&t.runs[len(t.runs)-1].last, &raw.first)) {
		t.runs = append(t.runs, baseRun{head: hi, n: raw.n, width: raw.width, data: raw.data, first: raw.first, last: raw.last})
		return
	}
	for b := raw.data; len(b) > 0; {
		k, n := nextKey(b)
		t.set(k, hi)
		b = b[n:]
	}
}

func (t *banTable) set(k pkey, hi int32) {
	if t.over == nil {
		t.over = map[pkey]int32{}
	}
	if _, ok := t.over[k]; !ok {
		t.order = append(t.order, k)
	}
	t.over[k] = hi
}

func (t *banTable) del(k pkey) { t.set(k, -1) }

// inBase finds k in the base: the run by its bounds, then a binary search
// when the run's prefixes are of one width.
func (t *banTable) inBase(k pkey) bool {
	i, _ := slices.BinarySearchFunc(t.runs, k, func(r baseRun, k pkey) int { return bytes.Compare(r.last[:], k[:]) })
	if i == len(t.runs) || less(&k, &t.runs[i].first) {
		return false
	}
	r := &t.runs[i]
	if r.width == 0 {
		for b := r.data; len(b) > 0; {
			x, n := nextKey(b)
			if x == k {
				return true
			}
			b = b[n:]
		}
		return false
	}
	_, found := sort.Find(r.n, func(j int) int {
		x, _ := nextKey(r.data[j*r.width:])
		return bytes.Compare(k[:], x[:])
	})
	return found
}

// lists is the bans as lists sharing a record's fields, leaving out those
// expired at now: what a restart hands to the kernel's batch writes,
// without building a Ban per prefix.
func (t *banTable) lists(now time.Time) []BanList {
	n := make([]int, len(t.heads))
	t.each(func(_ pkey, hi int32) { n[hi]++ })
	ps := make([][]netip.Prefix, len(t.heads))
	for hi, c := range n {
		if c > 0 && !t.heads[hi].ban(netip.Prefix{}).Expired(now) {
			ps[hi] = make([]netip.Prefix, 0, c)
		}
	}
	t.each(func(k pkey, hi int32) {
		if ps[hi] != nil {
			ps[hi] = append(ps[hi], k.prefix())
		}
	})
	var out []BanList
	for hi, l := range ps {
		if len(l) > 0 {
			out = append(out, BanList{Like: t.heads[hi].ban(netip.Prefix{}), Prefixes: l})
		}
	}
	return out
}

// each calls fn with every ban in force and its head.
func (t *banTable) each(fn func(k pkey, hi int32)) {
	for _, r := range t.runs {
		for b := r.data; len(b) > 0; {
			k, n := nextKey(b)
			b = b[n:]
			hi := r.head
			if len(t.over) > 0 {
				if o, ok := t.over[k]; ok {
					hi = o
				}
			}
			if hi >= 0 {
				fn(k, hi)
			}
		}
	}
	for _, k := range t.order {
		if hi := t.over[k]; hi >= 0 && !t.inBase(k) {
			fn(k, hi)
		}
	}
}

func (t *banTable) list() []datapath.Ban {
	n := 0
	t.each(func(pkey, int32) { n++ })
	out := make([]datapath.Ban, n)
	n = 0
	t.each(func(k pkey, hi int32) {
		// Field by field: copying whole Bans into a slice this size costs
		// a bulk write barrier each while the GC runs.
		h, b := &t.heads[hi], &out[n]
		b.Prefix, b.Expires, b.Origin, b.Reason, b.CIDR = k.prefix(), h.Expires, h.Origin, h.Reason, h.CIDR
		b.Detector, b.Events, b.First, b.Last, b.Offence = h.Detector, h.Events, h.First, h.Last, h.Offence
		n++
	})
	return out
}

// BanList is bans that share all but their prefix, as the journal records
// them.
type BanList struct {
	Like     datapath.Ban // its Prefix is not set
	Prefixes []netip.Prefix
}
