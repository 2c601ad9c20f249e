package logwatch

import (
	"bytes"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJournalJSON reads one `journalctl -o json` object:
//
//	{"__REALTIME_TIMESTAMP":"1764349752466432","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"imap-login: ...",...}
//
// Only three fields are used: MESSAGE, SYSLOG_IDENTIFIER (the tag) and
// __REALTIME_TIMESTAMP (microseconds since the epoch). Every value is
// skipped with its escapes, so a user name inside MESSAGE cannot end the
// string early and forge a field: the keys that count are the object's own.
// A MESSAGE journald stored as bytes (an array, for invalid UTF-8) is left
// empty. The message is unescaped into a new slice only when it has an
// escape.
func parseJournalJSON(b []byte, wantTime bool, p *Header) bool {
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	i := skipSpace(b, 1)
	var msg, tag, ts []byte
	haveMsg := false
	for {
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != '"' {
			return false
		}
		kEnd, ok := skipString(b, i)
		if !ok {
			return false
		}
		key := b[i+1 : kEnd-1]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		vStart := i
		vEnd, ok := skipValue(b, i)
		if !ok {
			return false
		}
		isStr := b[vStart] == '"'
		switch string(key) {
		case "MESSAGE":
			haveMsg = true
			if isStr {
				msg = b[vStart+1 : vEnd-1]
			}
		case "SYSLOG_IDENTIFIER":
			if isStr {
				tag = b[vStart+1 : vEnd-1]
			}
		case "__REALTIME_TIMESTAMP":
			if isStr {
				ts = b[vStart+1 : vEnd-1]
			}
		}
		i = skipSpace(b, vEnd)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
			continue
		}
		if i >= len(b) || b[i] != '}' {
			return false
		}
		break
	}
	if !haveMsg {
		return false
	}
	p.Format = FormatJournalJSON
	if bytes.IndexByte(msg, '\\') >= 0 {
		u, ok := unescapeJSON(msg)
		if !ok {
			return false
		}
		msg = u
	}
	if bytes.IndexByte(tag, '\\') < 0 && isTagToken(tag) {
		p.Tag = tag
	}
	p.Msg = msg
	if wantTime && len(ts) > 0 && len(ts) <= 18 {
		if us, ok := atoiN(ts); ok {
			p.Time = time.UnixMicro(int64(us))
		}
	}
	return true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index after the closing quote of the string
// starting at b[i] == '"'.
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '[', '{':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = e - 1
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ' ' {
		j++
	}
	return j, j > i
}

// unescapeJSON decodes a JSON string body. A \u0000-\u001f control
// character becomes '?', as Dovecot's own sanitising does, so that an
// escaped newline cannot put a second line into the message.
func unescapeJSON(s []byte) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return nil, false
		}
		switch s[i] {
		case '"', '\\', '/':
			out = append(out, s[i])
		case 'b', 'f', 'n', 'r', 't':
			out = append(out, '?')
		case 'u':
			r, ok := hex4(s[i+1:])
			if !ok {
				return nil, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				// A pair is one character; a lone half is U+FFFD, as
				// encoding/json decodes it.
				r2 := rune(-1)
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2, _ = hex4(s[i+3:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			if r < 0x20 || r == 0x7f {
				r = '?'
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, false
		}
	}
	return out, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, h := range b[:4] {
		v, ok := hexVal(h)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}
