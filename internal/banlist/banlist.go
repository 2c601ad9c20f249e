// Package banlist parses address lists for `xdpguard ban --from FILE` and
// `unban --from FILE`: one address or CIDR per line, with comments.
//
// Accepted per line, after surrounding whitespace is trimmed:
//
//	192.0.2.7               a bare address: /32 (IPv4) or /128 (IPv6)
//	198.51.100.0/24         a prefix
//	2001:db8::/32 # note    '#' starts a comment, whole-line or trailing
//	203.0.113.0/24 ; SBL123 Spamhaus DROP format: ';' starts a comment too
//
// Blank lines are skipped. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are
// stored as IPv4, because that is how the kernel and the log layer see such
// sources.
//
// A prefix with host bits set (192.0.2.7/24) is refused rather than masked:
// published blocklists never contain one, so it signals a typo or a wrong
// length, and silently widening "192.0.2.7/24" to the whole /24 could ban
// far more than the operator meant.
//
// The list is all or nothing: any bad line refuses the whole input, so a ban
// import is never half-applied.
package banlist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// MaxLineLen bounds one line. Real list lines are under 100 bytes; the cap
// keeps a binary or runaway file from being buffered whole.
const MaxLineLen = 4096

// maxReported is how many line errors an *Error spells out; the rest are
// counted, so a wrong file (a binary, a CSV) gives a readable message.
const maxReported = 10

// prefixKey is a pointer-free dedup key: netip.Prefix holds a zone
// pointer, which makes a map of them twice as slow to fill and to scan.
type prefixKey struct {
	addr [16]byte
	bits uint8
	is4  bool
}

// dedup finds repeated prefixes. IPv4 ones, nearly all of a big list, are
// collected as sortable keys and their repeats found by one sort at the
// end: a map of a million costs a cache miss an insert, several times the
// sort. The rest go through a map at once.
type dedup struct {
	v4 []uint64 // prefix<<24 | its index in the output
	v6 map[prefixKey]struct{}
}

// maxSorted is how many prefixes the index bits of a v4 key can number.
const maxSorted = 1 << 24

// add reports whether p (to be the output's i-th) is known to repeat one
// before it. IPv4 repeats are only found by dropRepeats.
func (d *dedup) add(p netip.Prefix, i int) bool {
	if p.Addr().Is4() && i < maxSorted {
		a := p.Addr().As4()
		k := uint64(a[0])<<32 | uint64(a[1])<<24 | uint64(a[2])<<16 | uint64(a[3])<<8 | uint64(p.Bits())
		d.v4 = append(d.v4, k<<24|uint64(i))
		return false
	}
	k := prefixKey{p.Addr().As16(), uint8(p.Bits()), p.Addr().Is4()}
	if d.v6 == nil {
		d.v6 = map[prefixKey]struct{}{}
	}
	_, dup := d.v6[k]
	d.v6[k] = struct{}{}
	return dup
}

// dropRepeats removes the IPv4 prefixes that repeat an earlier one,
// keeping the order of first appearance.
func (d *dedup) dropRepeats(out []netip.Prefix) []netip.Prefix {
	slices.Sort(d.v4) // equal prefixes together, the first appearance first
	var drop []int
	for i := 1; i < len(d.v4); i++ {
		if d.v4[i]>>24 == d.v4[i-1]>>24 {
			drop = append(drop, int(d.v4[i]&(maxSorted-1)))
		}
	}
	if len(drop) == 0 {
		return out
	}
	slices.Sort(drop)
	kept := out[:0]
	for i, p := range out {
		if len(drop) > 0 && drop[0] == i {
			drop = drop[1:]
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

// LineError is one bad line.
type LineError struct {
	Line int    // 1-based
	Text string // the offending token (or a prefix of an over-long line)
	Msg  string // what is wrong with it
}

// Error is returned when any line is bad. It lists the first errors and the
// total count.
type Error struct {
	Name  string      // the input's name, as given to Parse
	Lines []LineError // at most 10, in line order
	Total int         // number of bad lines, including those not listed
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, le := range e.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s:%d: %q: %s", e.Name, le.Line, le.Text, le.Msg)
	}
	if rest := e.Total - len(e.Lines); rest > 0 {
		fmt.Fprintf(&b, "\n%s: and %d more bad line", e.Name, rest)
		if rest > 1 {
			b.WriteByte('s')
		}
	}
	return b.String()
}

func (e *Error) add(line int, text, msg string) {
	e.Total++
	if len(e.Lines) < maxReported {
		e.Lines = append(e.Lines, LineError{Line: line, Text: text, Msg: msg})
	}
}

// Parse reads a list from r. name is used in error messages only (a file
// name, or "-"/"stdin"). It returns the distinct prefixes in the order they
// first appear. An input with no entries returns an empty slice and no
// error; whether that is acceptable is the caller's decision.
//
// A bad line yields an *Error (use errors.As) and no prefixes; a read
// failure yields a wrapped I/O error naming the input.
func Parse(r io.Reader, name string) ([]netip.Prefix, error) {
	return parse(r, name, 0)
}

// parse is Parse with room for about hint prefixes made at once: growing a
// slice and a map of a million step by step copied them over and over.
func parse(r io.Reader, name string, hint int) ([]netip.Prefix, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	var (
		out  = make([]netip.Prefix, 0, hint)
		seen dedup
		bad  = &Error{Name: name}
	)
	seen.v4 = make([]uint64, 0, hint)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(line) > MaxLineLen {
			bad.add(lineNo, truncate(line), fmt.Sprintf("line longer than %d bytes", MaxLineLen))
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: read: %w", name, err)
			}
			continue
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s: read: %w", name, err)
		}
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 BOM
		}
		if p, ok := parse4(bareLine(line)); ok && bad.Total == 0 {
			// The common line, a bare IPv4 address or prefix: no comment,
			// no space to look for.
			if !seen.add(p, len(out)) {
				out = append(out, p)
			}
		} else if p, text, msg, ok := parseLine(line); msg != "" {
			bad.add(lineNo, text, msg)
		} else if ok && bad.Total == 0 && !seen.add(p, len(out)) {
			out = append(out, p)
		}
		if err == io.EOF {
			break
		}
	}
	if bad.Total > 0 {
		return nil, bad
	}
	return seen.dropRepeats(out), nil
}

// ReadFile parses the file at path, or stdin when path is "-".
func ReadFile(path string, stdin io.Reader) ([]netip.Prefix, error) {
	if path == "-" {
		return Parse(stdin, "stdin")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *PathError already names the file
	}
	defer f.Close()
	hint := 0
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		// A line is at least 8 bytes ("1.2.3.4\n"), usually 12 to 16.
		hint = int(min(fi.Size()/12, 1<<24))
	}
	return parse(f, path, hint)
}

// parseLine returns ok=false for a line with no entry, or a non-empty msg
// (with the offending text) for a bad one.
func parseLine(line []byte) (p netip.Prefix, text, msg string, ok bool) {
	if i := bytes.IndexAny(line, "#;"); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return netip.Prefix{}, "", "", false
	}
	if i := bytes.IndexAny(line, " \t\v\f\r"); i >= 0 {
		return netip.Prefix{}, string(line), "more than one field (expected one address or CIDR per line)", false
	}
	if p, ok := parse4(line); ok {
		return p, "", "", true
	}
	s := string(line)
	p, err := ParsePrefix(s)
	if err != nil {
		return p, s, err.Error(), false
	}
	return p, s, "", true
}

// ParsePrefix parses one address or CIDR with the rules of this package
// (bare address = single host, IPv4-mapped stored as IPv4, host bits
// refused). The error describes the problem without repeating s, so callers
// can prefix it with their own context: fmt.Errorf("%q: %w", s, err).
func ParsePrefix(s string) (netip.Prefix, error) {
	addrPart, bitsPart, hasLen := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(addrPart)
	if err != nil {
		return netip.Prefix{}, errors.New("invalid address")
	}
	if addr.Zone() != "" {
		return netip.Prefix{}, errors.New("address has a zone (" + addr.Zone() + "); zones cannot be banned")
	}
	bits := addr.BitLen()
	if hasLen {
		n, err := strconv.Atoi(bitsPart)
		// Atoi takes "+8" and "-0"; a length is plain digits.
		if err != nil || bitsPart == "" || bitsPart[0] < '0' || bitsPart[0] > '9' ||
			(len(bitsPart) > 1 && bitsPart[0] == '0') {
			return netip.Prefix{}, errors.New("invalid prefix length")
		}
		if n > addr.BitLen() {
			return netip.Prefix{}, errors.New("invalid prefix length")
		}
		bits = n
	}
	if addr.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, errors.New("IPv4-mapped prefix shorter than /96")
		}
		addr = addr.Unmap()
		bits -= 96
	}
	p := netip.PrefixFrom(addr, bits)
	if m := p.Masked(); m != p {
		return netip.Prefix{}, errors.New("host bits set (the network is " + m.String() + ")")
	}
	return p, nil
}

func truncate(b []byte) string {
	const n = 40
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
