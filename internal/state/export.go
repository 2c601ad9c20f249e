package state

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// Export is st as the JSON of format version 2, which `xdpguard state
// export` prints and older xdpguard versions read as their state file.
func Export(st State) []byte {
	st.Version = Version
	st.fill()
	b, _ := encode(st) // cannot fail
	return b
}

// encode writes one record per line, which keeps the file greppable and
// diffable; it is still plain JSON, in the same shape encoding/json gives
// these types. It is written by hand because reflection-based encoding
// took 4 µs a record, and the daemon saves after every batch of bans.
func encode(st State) ([]byte, error) {
	b := make([]byte, 0, 64+len(st.Bans)*200+len(st.Allow)*80+len(st.Offenders)*120+len(st.KnownGood)*80)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(st.Version), 10)
	b = appendRecords(b, "bans", st.Bans, func(b []byte, x datapath.Ban) []byte {
		b = appendPrefixField(b, x.Prefix)
		b = appendOptTime(b, "expires", x.Expires)
		b = append(b, `,"origin":`...)
		b = appendString(b, x.Origin.String())
		b = append(b, `,"reason":`...)
		b = appendString(b, x.Reason.String())
		if x.CIDR {
			b = append(b, `,"cidr":true`...)
		}
		b = appendOptString(b, "detector", x.Detector)
		b = appendOptInt(b, "events", x.Events)
		b = appendOptTime(b, "first", x.First)
		b = appendOptTime(b, "last", x.Last)
		return appendOptInt(b, "offence", x.Offence)
	})
	b = appendRecords(b, "allow", st.Allow, func(b []byte, x Allow) []byte {
		b = appendPrefixField(b, x.Prefix)
		return appendOptTime(b, "expires", x.Expires)
	})
	b = appendRecords(b, "offenders", st.Offenders, func(b []byte, x offence.Offender) []byte {
		b = appendPrefixField(b, x.Prefix)
		if len(x.Bans) > 0 {
			b = append(b, `,"bans":[`...)
			for j, t := range x.Bans {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendTime(b, t)
			}
			b = append(b, ']')
		}
		b = appendOptTime(b, "until", x.Until)
		if x.Reason != 0 {
			b = append(b, `,"reason":`...)
			b = appendString(b, x.Reason.String())
		}
		return appendOptString(b, "detector", x.Detector)
	})
	if st.JournalCursor != "" {
		b = append(b, ",\n\"journal_cursor\":"...)
		b = appendString(b, st.JournalCursor)
	}
	// Left out when empty (omitempty): an older xdpguard ignores the key.
	if len(st.KnownGood) > 0 {
		b = appendRecords(b, "known_good", st.KnownGood, func(b []byte, x KnownGood) []byte {
			b = appendPrefixField(b, x.Prefix)
			b = append(b, `,"last_seen":`...)
			return appendTime(b, x.LastSeen)
		})
	}
	b = append(b, "}\n"...)
	return b, nil
}

// appendRecords writes `,"name":[`, then one object a line, whose fields
// record writes (each record type here starts with "prefix"), then `]`.
func appendRecords[T any](b []byte, name string, xs []T, record func([]byte, T) []byte) []byte {
	b = append(b, ",\n\""...)
	b = append(b, name...)
	b = append(b, "\":["...)
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n{"...)
		b = record(b, x)
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendOptTime(b []byte, key string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendTime(b, t)
}

func appendOptString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendString(b, v)
}

func appendOptInt(b []byte, key string, v int) []byte {
	if v == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, int64(v), 10)
}

// appendPrefixField starts a record: `"prefix":"…"`.
func appendPrefixField(b []byte, p netip.Prefix) []byte {
	b = append(b, `"prefix":`...)
	return appendPrefix(b, p)
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	b = append(b, '"')
	b = p.AppendTo(b)
	return append(b, '"')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString quotes s as JSON. Names are short ASCII in practice; the
// rest (quotes, control bytes, non-ASCII, invalid UTF-8) goes through
// encoding/json so escaping matches it exactly.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // cannot fail for a string
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
