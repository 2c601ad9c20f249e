package logwatch

import (
	"bytes"
	"time"
)

// Format names the header form a line was written in.
type Format uint8

const (
	// FormatNone: no header this package knows. Replay counts these lines
	// as unparsed, so that a file in an unknown form is not silence.
	FormatNone    Format = iota
	FormatBSD            // "Nov  8 16:56:06 host tag[pid]: " (also journalctl -o short)
	FormatRFC3339        // "2026-11-28T17:09:12.466432+00:00 host tag: " (also "2026-11-28 17:09:12 ", journalctl -o short-iso "+0000")
	FormatRFC5424        // "<34>1 2026-11-28T17:09:12Z host app procid msgid sd msg"
	FormatTAI64N         // "@4000000068d9a7c31c9c8b4c msg" (daemontools, s6)
	// FormatBare: Dovecot's log_path without log_timestamp, the line
	// starts with the process: "imap-login: Info: ...", "auth(user,ip): ...".
	FormatBare
	// FormatJournalJSON: one journalctl -o json object.
	FormatJournalJSON
	numFormats
)

var formatNames = [numFormats]string{"none", "bsd", "rfc3339", "rfc5424", "tai64n", "dovecot-bare", "journal-json"}

func (f Format) String() string {
	if f < numFormats {
		return formatNames[f]
	}
	return "unknown"
}

// MarshalText makes formats appear by name in JSON.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Header is what precedes the message of a log line: its timestamp and
// syslog tag.
type Header struct {
	Format Format
	// Time is the line's own timestamp; zero when the line has none or it
	// was not asked for. BSD syslog has no year or zone: the local zone and
	// the year that puts the time closest before ref are assumed.
	Time time.Time
	// Tag is the program name without the pid ("dovecot", "postfix/smtpd").
	// It is empty for Dovecot's own log_path format, whose message starts
	// directly with the service ("pop3-login: Info: ...").
	Tag []byte
	// Msg is the message after "tag[pid]: ", or the whole rest of the line
	// when there is no tag. It is the end of the line, except for
	// journal JSON, whose MESSAGE may need unescaping.
	Msg []byte
}

// ParseHeader splits a log line into its header and message. It never
// fails: a line without a recognised header is returned whole as Msg, with
// FormatNone. When wantTime is false the timestamp is skipped but not
// converted, which is what a live follower wants (it uses arrival time) and
// is markedly cheaper.
func ParseHeader(line []byte, wantTime bool, ref time.Time) Header {
	var p Header
	rest := line
	// An optional syslog PRI, as some relays keep it: "<34>".
	if len(rest) > 2 && rest[0] == '<' {
		i := 1
		for i < len(rest) && i < 5 && isDigit(rest[i]) {
			i++
		}
		if i > 1 && i < len(rest) && rest[i] == '>' {
			rest = rest[i+1:]
		}
	}
	switch {
	case len(rest) > 2 && rest[0] == '1' && rest[1] == ' ' && len(rest) > 3 && (isDigit(rest[2]) || rest[2] == '-'):
		if ok := parse5424(rest, wantTime, &p); ok {
			return p
		}
	case len(rest) > 25 && rest[0] == '@':
		if t, ok := parseTAI64N(rest[1:25]); ok && rest[25] == ' ' {
			p.Format = FormatTAI64N
			if wantTime {
				p.Time = t
			}
			splitTag(rest[26:], &p)
			return p
		}
	case len(rest) >= 16 && isUpper(rest[0]):
		if n, t, ok := parseBSDTime(rest, wantTime, ref); ok {
			p.Format = FormatBSD
			p.Time = t
			splitTag(rest[n:], &p)
			return p
		}
	case len(rest) >= 20 && isDigit(rest[0]):
		if n, t, ok := parseISOTime(rest, wantTime); ok && n < len(rest) && rest[n] == ' ' {
			p.Format = FormatRFC3339
			p.Time = t
			// macOS's syslog style pads with a second space.
			n++
			if n < len(rest) && rest[n] == ' ' {
				n++
			}
			splitTag(rest[n:], &p)
			return p
		}
	case len(rest) > 2 && rest[0] == '{':
		if parseJournalJSON(rest, wantTime, &p) {
			return p
		}
	}
	p.Format = FormatNone
	splitTag(rest, &p)
	if p.Format == FormatNone && len(p.Tag) == 0 && isBareProcess(rest) {
		p.Format = FormatBare
	} else if len(p.Tag) > 0 {
		// "tag[pid]: msg" with no timestamp: a syslog line a relay
		// stripped, or logger's stderr.
		p.Format = FormatBare
	}
	return p
}

// isBareProcess reports whether a line starts the way Dovecot's log_path
// lines do without a timestamp: a process name ("imap-login", "auth",
// "master") followed by ": ", "(" or "<".
func isBareProcess(b []byte) bool {
	i := 0
	for i < len(b) && i < 40 && (b[i] >= 'a' && b[i] <= 'z' || b[i] == '-' || i > 0 && isDigit(b[i])) {
		i++
	}
	if i == 0 || i >= len(b) {
		return false
	}
	switch b[i] {
	case '(', '<':
		return true
	case ':':
		return i+1 < len(b) && b[i+1] == ' '
	}
	return false
}

// splitTag separates "host tag[pid]: msg", "tag[pid]: msg" and Dovecot's
// host-less "service: msg". Only the first two tokens are looked at, so a
// message can never move the split.
func splitTag(rest []byte, p *Header) {
	sp := bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		p.Msg = rest
		return
	}
	t1 := rest[:sp]
	if t1[len(t1)-1] != ':' && !isHostToken(t1) {
		// Not a host name: Dovecot's log_path format whose first token
		// carries a user name, e.g. 2.4's "auth(user,ip,<sid>): ". The
		// user name may contain spaces and must not be able to make the
		// next token look like a tag.
		p.Msg = rest
		return
	}
	if t1[len(t1)-1] == ':' {
		// No host. "dovecot: ..." / "postfix/smtpd[1]: ..." carry a tag;
		// anything else is Dovecot's log_path format, whose first token is
		// the service and belongs to the message.
		if tag := stripPID(t1[:len(t1)-1]); isKnownTag(tag) {
			p.Tag = tag
			p.Msg = rest[sp+1:]
			return
		}
		p.Msg = rest
		return
	}
	r2 := rest[sp+1:]
	sp2 := bytes.IndexByte(r2, ' ')
	if sp2 > 1 && r2[sp2-1] == ':' && isTagToken(r2[:sp2-1]) {
		p.Tag = stripPID(r2[:sp2-1])
		p.Msg = r2[sp2+1:]
		macOSLibrary(p)
		return
	}
	p.Msg = rest
}

// macOSLibrary handles macOS's unified log, which names the library that
// logged before the message: "log[555]: (libdovecot.0.dylib) imap-login:
// ...". The library is Dovecot's, so the line is Dovecot's whatever the
// process tag says.
func macOSLibrary(p *Header) {
	m := p.Msg
	if len(m) < 20 || m[0] != '(' || !bytes.HasPrefix(m, []byte("(libdovecot")) {
		return
	}
	i := bytes.Index(m, []byte(".dylib) "))
	if i < 0 || bytes.IndexByte(m[1:i], ' ') >= 0 {
		return
	}
	p.Tag = m[4:11] // "dovecot"
	p.Msg = m[i+8:]
}

func isHostToken(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == ':') {
			return false
		}
	}
	return true
}

// isTagToken accepts "name" and "name[pid]" with the characters syslog tags
// use ("postfix/submission/smtpd[123]").
func isTagToken(b []byte) bool {
	for i, c := range b {
		if c == '[' {
			return i > 0 && len(b) > i+2 && b[len(b)-1] == ']' && allDigits(b[i+1:len(b)-1])
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' || c == '/') {
			return false
		}
	}
	return true
}

func isKnownTag(tag []byte) bool {
	return isDovecotTag(tag) || bytes.HasPrefix(tag, []byte("postfix"))
}

func isDovecotTag(tag []byte) bool { return string(tag) == "dovecot" }

func stripPID(tag []byte) []byte {
	if n := len(tag); n > 2 && tag[n-1] == ']' {
		if i := bytes.LastIndexByte(tag, '['); i > 0 {
			return tag[:i]
		}
	}
	return tag
}

// parse5424 parses "1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]" (after the
// PRI). The structured data is skipped with its escapes, so a "]" inside a
// quoted value cannot end it early.
func parse5424(b []byte, wantTime bool, p *Header) bool {
	rest := b[2:]
	var t time.Time
	if rest[0] == '-' {
		rest = rest[1:]
	} else {
		n, tt, ok := parseISOTime(rest, wantTime)
		if !ok {
			return false
		}
		t = tt
		rest = rest[n:]
	}
	fields := [4][]byte{}
	for i := range fields {
		if len(rest) == 0 || rest[0] != ' ' {
			return false
		}
		rest = rest[1:]
		sp := bytes.IndexByte(rest, ' ')
		if sp <= 0 {
			return false
		}
		fields[i] = rest[:sp]
		rest = rest[sp:]
	}
	if len(rest) < 2 || rest[0] != ' ' {
		return false
	}
	rest = rest[1:]
	if rest[0] == '-' {
		rest = rest[1:]
	} else {
		for len(rest) > 0 && rest[0] == '[' {
			i, inQuote := 1, false
			for ; i < len(rest); i++ {
				c := rest[i]
				if c == '\\' && inQuote {
					i++
					continue
				}
				if c == '"' {
					inQuote = !inQuote
				}
				if c == ']' && !inQuote {
					break
				}
			}
			if i >= len(rest) {
				return false
			}
			rest = rest[i+1:]
		}
	}
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return false
		}
		rest = rest[1:]
	}
	rest = bytes.TrimPrefix(rest, []byte("\xEF\xBB\xBF"))
	p.Format = FormatRFC5424
	p.Time = t
	if app := fields[1]; !(len(app) == 1 && app[0] == '-') {
		p.Tag = app
	}
	p.Msg = rest
	return true
}
