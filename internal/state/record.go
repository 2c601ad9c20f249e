package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"slices"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// The journal's binary format. A file starts with journalHeader; then
// records follow, each framed as
//
//	magic [4]byte | payload length uint32 LE | CRC-32C(payload) uint32 LE | payload
//
// and each payload is a record type byte and its body. Integers are
// varints, times are Unix nanoseconds (0 is the zero time), strings are a
// length and bytes, and a prefix is a tag byte (bits for IPv4, 64+bits for
// IPv6) and the address's 4 or 16 bytes.
//
// A record that a crash cut short fails its length or CRC check; the reader
// then looks for the next magic, so a torn record costs only itself, even
// when another writer appended after it.
const (
	journalVersion = 1
	journalHeader  = "xdpguard state journal 1\n"
	recordMagic    = "\xd7XGr"
	frameLen       = 12
	// maxPayload bounds one record: a batch of a million IPv6 bans is 17 MB.
	maxPayload = 1 << 28
)

// Record types. Numbers are on disk: never reuse one.
const (
	recBan          byte = 1 // bans sharing expiry, origin, reason and evidence
	recUnban        byte = 2
	recUnbanAll     byte = 3
	recAllow        byte = 4 // allow rules sharing an expiry
	recAllowRemove  byte = 5
	recOffender     byte = 6 // one offender's whole history, replacing the last
	recKnownGood    byte = 7
	recKnownGoodDel byte = 8
	recCursor       byte = 9
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// enc appends one record's body.
type enc struct{ b []byte }

func (e *enc) u(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) byte(v byte) { e.b = append(e.b, v) }
func (e *enc) str(s string) {
	e.u(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.b = binary.AppendVarint(e.b, 0)
		return
	}
	e.b = binary.AppendVarint(e.b, t.UnixNano())
}

func (e *enc) prefix(p netip.Prefix) {
	if p.Addr().Is4() {
		a := p.Addr().As4()
		e.b = append(append(e.b, byte(p.Bits())), a[:]...)
		return
	}
	a := p.Addr().As16()
	e.b = append(append(e.b, byte(64+p.Bits())), a[:]...)
}

// begin starts a framed record of type t; end fills in its frame.
func (e *enc) begin(t byte) int {
	at := len(e.b)
	e.b = append(e.b, recordMagic...)
	e.b = append(e.b, make([]byte, 8)...)
	e.b = append(e.b, t)
	return at
}

func (e *enc) end(at int) {
	payload := e.b[at+frameLen:]
	binary.LittleEndian.PutUint32(e.b[at+4:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(e.b[at+8:], crc32.Checksum(payload, crcTable))
}

// dec reads one record's body; the first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a list length, refusing one the rest of the record cannot
// hold at min bytes an item, so a corrupt length cannot allocate gigabytes.
func (d *dec) count(min int) int {
	n := d.u()
	if n > uint64(len(d.b)/min) {
		d.fail("list of %d does not fit the record", n)
		return 0
	}
	return int(n)
}

func (d *dec) int() int {
	v := d.u()
	if v > 1<<31 {
		d.fail("number %d out of range", v)
	}
	return int(v)
}

func (d *dec) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("record cut short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *dec) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad time")
		return time.Time{}
	}
	d.b = d.b[n:]
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func (d *dec) prefix() netip.Prefix {
	tag := d.byte()
	if d.err != nil {
		return netip.Prefix{}
	}
	var p netip.Prefix
	switch {
	case tag <= 32 && len(d.b) >= 4:
		p = netip.PrefixFrom(netip.AddrFrom4([4]byte(d.b[:4])), int(tag))
		d.b = d.b[4:]
	case tag >= 64 && tag <= 64+128 && len(d.b) >= 16:
		p = netip.PrefixFrom(netip.AddrFrom16([16]byte(d.b[:16])), int(tag)-64)
		d.b = d.b[16:]
	default:
		d.fail("bad prefix tag %d", tag)
		return netip.Prefix{}
	}
	if err := checkPrefix(p); err != nil {
		d.fail("%w", err)
	}
	return p
}

// rawPrefixes checks a list of prefixes and returns it as encoded, with
// whether it ascends (without building a key or a Prefix to keep).
func (d *dec) rawPrefixes() rawPrefixes {
	n := d.count(5)
	start := d.b
	raw := rawPrefixes{n: n, ascending: true}
	var prev pkey
	for i := range n {
		before := len(d.b)
		k := keyOf(d.prefix())
		if d.err != nil {
			return rawPrefixes{}
		}
		w := before - len(d.b)
		switch {
		case i == 0:
			raw.first, raw.width = k, w
		case !less(&prev, &k):
			raw.ascending = false
		}
		if raw.width != w {
			raw.width = 0
		}
		prev = k
	}
	raw.last = prev
	raw.data = start[:len(start)-len(d.b)]
	return raw
}

// keys reads a list of prefixes as map keys.
func (d *dec) keys() []pkey {
	ks := make([]pkey, d.count(5))
	for i := range ks {
		ks[i] = keyOf(d.prefix())
	}
	return ks
}

func (d *dec) prefixes() []netip.Prefix {
	ps := make([]netip.Prefix, d.count(5))
	for i := range ps {
		ps[i] = d.prefix()
	}
	return ps
}

// banHead is what a ban record's bans share.
type banHead struct {
	Expires  time.Time
	Origin   datapath.Origin
	Reason   datapath.Reason
	CIDR     bool
	Detector string
	Events   int
	First    time.Time
	Last     time.Time
	Offence  int
}

func headOf(b datapath.Ban) banHead {
	return banHead{b.Expires, b.Origin, b.Reason, b.CIDR, b.Detector, b.Events, b.First, b.Last, b.Offence}
}

func (h banHead) ban(p netip.Prefix) datapath.Ban {
	return datapath.Ban{Prefix: p, Expires: h.Expires, Origin: h.Origin, Reason: h.Reason, CIDR: h.CIDR,
		Detector: h.Detector, Events: h.Events, First: h.First, Last: h.Last, Offence: h.Offence}
}

func (e *enc) banRecord(h banHead, ps []netip.Prefix) {
	at := e.begin(recBan)
	e.time(h.Expires)
	e.byte(byte(h.Origin))
	e.byte(byte(h.Reason))
	flags := byte(0)
	if h.CIDR {
		flags = 1
	}
	e.byte(flags)
	e.str(h.Detector)
	e.u(uint64(h.Events))
	e.time(h.First)
	e.time(h.Last)
	e.u(uint64(h.Offence))
	e.prefixList(ps)
	e.end(at)
}

func (e *enc) prefixList(ps []netip.Prefix) {
	e.u(uint64(len(ps)))
	// Room for all at once: grown by append, a million prefixes' 5 MB
	// were copied over and over, each copy fresh memory.
	n := 5 * len(ps)
	for _, p := range ps {
		if !p.Addr().Is4() {
			n += 12
		}
	}
	e.b = slices.Grow(e.b, n)
	for _, p := range ps {
		e.prefix(p)
	}
}

func (d *dec) banHead() banHead {
	var h banHead
	h.Expires = d.time()
	h.Origin = datapath.Origin(d.byte())
	h.Reason = datapath.Reason(d.byte())
	flags := d.byte()
	h.CIDR = flags&1 != 0
	h.Detector = d.str()
	h.Events = d.int()
	h.First = d.time()
	h.Last = d.time()
	h.Offence = d.int()
	if d.err == nil && (!h.Origin.Known() || (h.Reason != 0 && !h.Reason.Known()) || flags > 1) {
		d.fail("unknown origin %d, reason %d or flags %d", h.Origin, h.Reason, flags)
	}
	return h
}

func (e *enc) offenderRecord(o offence.Offender) {
	at := e.begin(recOffender)
	e.prefix(o.Prefix)
	e.u(uint64(len(o.Bans)))
	for _, t := range o.Bans {
		e.time(t)
	}
	e.time(o.Until)
	e.byte(byte(o.Reason))
	e.str(o.Detector)
	e.end(at)
}

func (d *dec) offender() offence.Offender {
	o := offence.Offender{Prefix: d.prefix()}
	if n := d.count(1); n > 0 {
		o.Bans = make([]time.Time, n)
		for i := range o.Bans {
			o.Bans[i] = d.time()
		}
	}
	o.Until = d.time()
	o.Reason = datapath.Reason(d.byte())
	o.Detector = d.str()
	if d.err == nil && o.Reason != 0 && !o.Reason.Known() {
		d.fail("unknown reason %d", o.Reason)
	}
	return o
}

var errTorn = errors.New("torn or corrupt record")

// frame splits the record at the start of data: its payload and its whole
// length. errTorn: no valid record starts here.
func frame(data []byte) (payload []byte, n int, err error) {
	if len(data) < frameLen || string(data[:4]) != recordMagic {
		return nil, 0, errTorn
	}
	size := binary.LittleEndian.Uint32(data[4:])
	if size == 0 || size > maxPayload || uint64(size) > uint64(len(data)-frameLen) {
		return nil, 0, errTorn
	}
	payload = data[frameLen : frameLen+int(size)]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(data[8:]) {
		return nil, 0, errTorn
	}
	return payload, frameLen + int(size), nil
}
