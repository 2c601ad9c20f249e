package logwatch

import "time"

// The timestamp parsers of ParseHeader, and the digit helpers they share
// with the rules.

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parseBSDTime parses "Nov  8 16:56:06 " (and "Nov 08", and an optional
// fraction) and returns the length including the trailing space.
func parseBSDTime(b []byte, wantTime bool, ref time.Time) (int, time.Time, bool) {
	if b[3] != ' ' {
		return 0, time.Time{}, false
	}
	mon := 0
	for i, m := range months {
		if b[0] == m[0] && b[1] == m[1] && b[2] == m[2] {
			mon = i + 1
			break
		}
	}
	if mon == 0 {
		return 0, time.Time{}, false
	}
	var day int
	switch {
	case b[4] == ' ' && isDigit(b[5]):
		day = int(b[5] - '0')
	case isDigit(b[4]) && isDigit(b[5]):
		day = int(b[4]-'0')*10 + int(b[5]-'0')
	default:
		return 0, time.Time{}, false
	}
	if b[6] != ' ' {
		return 0, time.Time{}, false
	}
	hh, mm, ss, ok := parseClock(b[7:15])
	if !ok || day < 1 || day > 31 {
		return 0, time.Time{}, false
	}
	n := 15
	nsec := 0
	if n < len(b) && b[n] == '.' {
		var k int
		nsec, k = parseFraction(b[n+1:])
		n += 1 + k
	}
	if n >= len(b) || b[n] != ' ' {
		return 0, time.Time{}, false
	}
	if !wantTime {
		return n + 1, time.Time{}, true
	}
	if ref.IsZero() {
		ref = time.Now()
	}
	loc := ref.Location()
	t := time.Date(ref.Year(), time.Month(mon), day, hh, mm, ss, nsec, loc)
	// A syslog line has no year; one more than a day in the future of the
	// reference belongs to last year (December lines read in January).
	if t.Sub(ref) > 24*time.Hour {
		t = time.Date(ref.Year()-1, time.Month(mon), day, hh, mm, ss, nsec, loc)
	}
	return n + 1, t, true
}

// parseISOTime parses RFC 3339 ("2026-11-28T17:09:12.466432+00:00") and the
// space-separated, zone-less form Dovecot's log_timestamp can produce
// ("2026-11-28 17:09:12"). It returns the length consumed.
func parseISOTime(b []byte, wantTime bool) (int, time.Time, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != ' ') {
		return 0, time.Time{}, false
	}
	year, ok1 := atoiN(b[0:4])
	mon, ok2 := atoiN(b[5:7])
	day, ok3 := atoiN(b[8:10])
	hh, mm, ss, ok4 := parseClock(b[11:19])
	if !(ok1 && ok2 && ok3 && ok4) || mon < 1 || mon > 12 || day < 1 || day > 31 {
		return 0, time.Time{}, false
	}
	n := 19
	nsec := 0
	if n < len(b) && (b[n] == '.' || b[n] == ',') {
		var k int
		nsec, k = parseFraction(b[n+1:])
		if k == 0 {
			return 0, time.Time{}, false
		}
		n += 1 + k
	}
	loc := time.Local
	offset := 0
	zoned := false
	if n < len(b) {
		switch c := b[n]; {
		case c == 'Z' || c == 'z':
			zoned = true
			n++
		case (c == '+' || c == '-') && n+5 <= len(b):
			// "+01:00" (RFC 3339) or "+0100" (journalctl -o short-iso,
			// macOS).
			mm := n + 3
			if b[mm] == ':' {
				mm++
			}
			if mm+2 > len(b) {
				return 0, time.Time{}, false
			}
			oh, okh := atoiN(b[n+1 : n+3])
			om, okm := atoiN(b[mm : mm+2])
			if !okh || !okm || oh > 23 || om > 59 {
				return 0, time.Time{}, false
			}
			offset = oh*3600 + om*60
			if c == '-' {
				offset = -offset
			}
			zoned = true
			n = mm + 2
		}
	}
	if !wantTime {
		return n, time.Time{}, true
	}
	if zoned {
		loc = time.UTC
	}
	t := time.Date(year, time.Month(mon), day, hh, mm, ss, nsec, loc)
	if zoned && offset != 0 {
		t = t.Add(-time.Duration(offset) * time.Second)
	}
	return n, t, true
}

// parseTAI64N decodes the 24 hex digits of a TAI64N label. The 10 s TAI-UTC
// offset of 1970 is removed, as daemontools' tai64nlocal does; later leap
// seconds are ignored (at most 27 s off, irrelevant for 10-minute windows).
func parseTAI64N(h []byte) (time.Time, bool) {
	var secs, nano uint64
	for i := 0; i < 16; i++ {
		v, ok := hexVal(h[i])
		if !ok {
			return time.Time{}, false
		}
		secs = secs<<4 | uint64(v)
	}
	for i := 16; i < 24; i++ {
		v, ok := hexVal(h[i])
		if !ok {
			return time.Time{}, false
		}
		nano = nano<<4 | uint64(v)
	}
	const base = uint64(1)<<62 + 10
	if secs < base || secs-base > 1<<40 || nano >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(int64(secs-base), int64(nano)), true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func parseClock(b []byte) (hh, mm, ss int, ok bool) {
	if len(b) < 8 || b[2] != ':' || b[5] != ':' {
		return 0, 0, 0, false
	}
	h, ok1 := atoiN(b[0:2])
	m, ok2 := atoiN(b[3:5])
	s, ok3 := atoiN(b[6:8])
	if !(ok1 && ok2 && ok3) || h > 23 || m > 59 || s > 60 {
		return 0, 0, 0, false
	}
	return h, m, s, true
}

func parseFraction(b []byte) (nsec, n int) {
	scale := 100000000
	for n < len(b) && isDigit(b[n]) {
		if scale > 0 {
			nsec += int(b[n]-'0') * scale
			scale /= 10
		}
		n++
	}
	return nsec, n
}

func atoiN(b []byte) (int, bool) {
	v := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
