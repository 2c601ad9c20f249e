package logwatch

import (
	"bytes"
	"fmt"
	"net/netip"
)

// Kind is the kind of event a matched line reports.
type Kind uint8

const (
	KindNone Kind = iota
	// KindNoAuth: a login-process connection closed without any
	// authentication attempt (the slot-holding attack).
	KindNoAuth
	// KindAuthFailed: failed authentication attempts (Dovecot login
	// summary, Postfix SASL).
	KindAuthFailed
	// KindAuthBackend: a passdb's per-attempt verdict (passwd-file, pam,
	// sql, ldap ...). The same attempts are also reported by the login
	// summary line, so by default it weighs nothing.
	KindAuthBackend
	// KindPlaintext: a client tried cleartext auth where it is disallowed.
	KindPlaintext
	// KindTLSFailed: the TLS handshake failed.
	KindTLSFailed
	// KindProbe: protocol probing (unfinished SASL, gone before auth was
	// ready, too many bad commands).
	KindProbe
	// KindConnLimit: mail_max_userip_connections exceeded (an
	// authenticated user; not an attack by itself).
	KindConnLimit
	// KindLogin: a successful login, positive evidence.
	KindLogin
	// KindProcessFull: Dovecot closed this unauthenticated connection to
	// make room because its login processes were full ("Connection queue
	// full", 2.4's process_full). The oldest idle connection is chosen,
	// which under the slot-holding attack is usually a bot's.
	KindProcessFull
	numKinds
)

var kindNames = [numKinds]string{"", "no-auth", "auth-failed", "auth-backend", "plaintext", "tls-failed", "probe", "conn-limit", "login", "process-full"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// MarshalText makes kinds appear by name in JSON and YAML.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText accepts a kind name.
func (k *Kind) UnmarshalText(b []byte) error {
	kk, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = kk
	return nil
}

// ParseKind returns the kind with the given name.
func ParseKind(s string) (Kind, error) {
	for i := Kind(1); i < numKinds; i++ {
		if kindNames[i] == s {
			return i, nil
		}
	}
	return KindNone, fmt.Errorf("unknown event kind %q (known: %v)", s, kindNames[1:])
}

// cancellable reports whether a successful login from the same source
// withdraws events of this kind: clients that probe, time out or trip a
// limit and then log in are legitimate. Failed passwords stay.
func (k Kind) cancellable() bool {
	switch k {
	case KindNoAuth, KindTLSFailed, KindProbe, KindConnLimit, KindProcessFull:
		return true
	}
	return false
}

// Names of the built-in rules.
const (
	RuleDovecotLogin = "dovecot-login"
	RuleDovecotAuth  = "dovecot-auth"
	RulePostfixSASL  = "postfix-sasl"
)

// match is what a rule found in a line.
type match struct {
	rule   int // index into the engine's rule table
	kind   Kind
	addr   netip.Addr
	weight int // score the line adds (kind weight, times attempts for summaries)
}

// loginHead returns the text Dovecot writes at the start of a
// login-process message: what comes before the first ": user=<", or before
// ": rip=" when the line has no user name. Nothing the client sends comes
// before that separator, so what reads only the head cannot be steered by
// a user name.
func loginHead(msg []byte) ([]byte, bool) {
	end := bytes.Index(msg, []byte(": user=<"))
	if end < 0 {
		end = bytes.Index(msg, []byte(": rip="))
	}
	if end < 0 {
		return nil, false
	}
	return msg[:end], true
}

var loginServices = [...]string{"pop3-login", "imap-login", "submission-login", "managesieve-login"}

// dovecotLogin classifies a login-process message ("Disconnected: ...:
// user=<...>, method=..., rip=..., lip=..., session=<...>").
//
// Only the text before the first ": user=<" (or ": rip=") is used to
// classify: Dovecot writes it, and the first such separator is Dovecot's
// because nothing the client sends comes before it. The address is the LAST
// " rip=" of the line: the user name is the only attacker-controlled field
// and Dovecot always writes it before rip, so anything it forges ends up
// before the real field.
func dovecotLogin(msg []byte) (Kind, netip.Addr, int, bool) {
	// Optional log level (Dovecot's log_path format): "Info: ".
	if bytes.HasPrefix(msg, []byte("Info: ")) {
		msg = msg[6:]
	} else if bytes.HasPrefix(msg, []byte("Warning: ")) {
		msg = msg[9:]
	}
	head, ok := loginHead(msg)
	if !ok {
		return KindNone, netip.Addr{}, 0, false
	}
	kind, attempts := classifyLoginHead(head)
	if kind == KindNone {
		return KindNone, netip.Addr{}, 0, false
	}
	tail := msg[len(head)+1:]
	i := bytes.LastIndex(tail, []byte(" rip="))
	if i < 0 {
		return KindNone, netip.Addr{}, 0, false
	}
	v := tail[i+5:]
	if j := bytes.IndexByte(v, ','); j >= 0 {
		v = v[:j]
	}
	addr, ok := parseAddr(v)
	if !ok {
		return KindNone, netip.Addr{}, 0, false
	}
	if kind == KindNoAuth {
		// The "secured" element after rip reports the TLS state; it is
		// written by Dovecot after the user name, so it is trusted.
		if bytes.Contains(tail[i:], []byte(", TLS handshaking: SSL_")) || bytes.Contains(tail[i:], []byte(", TLS: SSL_")) {
			kind = KindTLSFailed
		}
	}
	return kind, addr, attempts, true
}

// Messages a passdb writes after "backend(user,ip[,<session>]): ". The line
// must END with one of these exactly (pam: start with), so that a user name
// cannot smuggle a second "(user,ip): message" group past the parser.
var backendMessages = [...]string{
	"Password mismatch",
	"unknown user",
	"invalid credentials",
	"User not found",
	"Login attempt with empty password", // passdb-ldap.c
}

var pamPrefix = []byte("pam_authenticate() failed: ")

// dovecotAuth parses passdb failures, reading from the right end of the
// line, where nothing is attacker-controlled:
//
//	auth: passwd-file(alice,198.18.200.137,<E89MSVlhhZ7GEsiJ>): Password mismatch   (2.2/2.3)
//	auth-worker(1234): pam(alice,1.2.3.4): pam_authenticate() failed: ...           (2.0-2.3)
//	auth(alice,1.2.3.4,<sid>): passwd-file: Password mismatch                      (2.4)
//
// The user name sits left of the address and may contain anything,
// including commas, parentheses and "): ", so the address is taken by
// position from the right: "...,IP[,<SID>])".
func dovecotAuth(msg []byte) (netip.Addr, bool) {
	if !bytes.HasPrefix(msg, []byte("auth")) {
		return netip.Addr{}, false
	}
	rest, ok := cutBackendMessage(msg)
	if !ok {
		return netip.Addr{}, false
	}
	// rest ends just before ": <message>". Two shapes:
	//   "...backend(user,ip[,<sid>])"                                  (2.0-2.3)
	//   "auth[-worker](user,ip[,sasl:mech][,master])[<pid>][<sid>][: request [N]][: Level]: backend"  (2.4)
	// The 2.4 group may follow the process's own "auth: " prefix: the
	// request's prefix is appended to it (event_set_log_prefix_callback
	// with replace=FALSE), whatever the log target keeps of it.
	opened := false // rest had its closing ')' removed already
	if n := len(rest); n > 0 && rest[n-1] != ')' {
		i := bytes.LastIndex(rest, []byte(": "))
		if i < 0 || !isBackendName(rest[i+2:]) {
			return netip.Addr{}, false
		}
		rest = trimLevel(rest[:i])
		if j := bytes.LastIndex(rest, []byte(": request [")); j >= 0 && rest[len(rest)-1] == ']' && allDigits(rest[j+11:len(rest)-1]) {
			rest = trimLevel(rest[:j])
		}
		// "<pid>" (workers) and "<session>", in that order, each optional.
		for k := 0; k < 2; k++ {
			n := len(rest)
			if n < 3 || rest[n-1] != '>' {
				break
			}
			j := bytes.LastIndexByte(rest, '<')
			if j < 0 || !isSessionID(rest[j+1:n-1]) {
				return netip.Addr{}, false
			}
			rest = rest[:j]
		}
		if n := len(rest); n == 0 || rest[n-1] != ')' {
			return netip.Addr{}, false
		}
		// 2.4 ends the group with the mechanism and a master flag.
		rest = bytes.TrimSuffix(rest[:len(rest)-1], []byte(",master"))
		if j := bytes.LastIndex(rest, []byte(",sasl:")); j >= 0 && isBackendName(rest[j+6:]) {
			rest = rest[:j]
		}
		opened = true
	}
	if !opened {
		if n := len(rest); n == 0 || rest[n-1] != ')' {
			return netip.Addr{}, false
		}
		rest = rest[:len(rest)-1]
	}
	// Optional ",<session>" (base64).
	if n := len(rest); n > 0 && rest[n-1] == '>' {
		j := bytes.LastIndexByte(rest, '<')
		if j < 1 || rest[j-1] != ',' || !isSessionID(rest[j+1:n-1]) {
			return netip.Addr{}, false
		}
		rest = rest[:j-1]
	}
	j := bytes.LastIndexByte(rest, ',')
	if j < 0 {
		return netip.Addr{}, false
	}
	addr, ok := parseAddr(rest[j+1:])
	if !ok {
		return netip.Addr{}, false
	}
	// Something must open the group: "backend(" or "auth(".
	if bytes.IndexByte(rest[:j], '(') < 0 {
		return netip.Addr{}, false
	}
	return addr, true
}

// cutBackendMessage removes the known trailing message and the ": " before
// it, returning what precedes.
func cutBackendMessage(msg []byte) ([]byte, bool) {
	for _, m := range backendMessages {
		if bytes.HasSuffix(msg, []byte(m)) {
			rest := msg[:len(msg)-len(m)]
			if bytes.HasSuffix(rest, []byte(": ")) {
				return rest[:len(rest)-2], true
			}
		}
	}
	// pam's message is free text from PAM (not from the client): find the
	// last "): pam_authenticate() failed: ". A user name containing that
	// string lies to the left of the real one, so the last one is real.
	if i := bytes.LastIndex(msg, pamPrefix); i > 2 {
		rest := msg[:i]
		if bytes.HasSuffix(rest, []byte(": ")) {
			return rest[:len(rest)-2], true
		}
	}
	return nil, false
}

// trimLevel removes the level Dovecot's log_path format writes after the
// prefix.
func trimLevel(b []byte) []byte {
	for _, lvl := range [...]string{": Info", ": Warning", ": Error"} {
		if bytes.HasSuffix(b, []byte(lvl)) {
			return b[:len(b)-len(lvl)]
		}
	}
	return b
}

// isBackendName accepts a passdb driver or the name an administrator gave
// it ("passwd-file", "unix_user", "LDAP.main").
func isBackendName(b []byte) bool {
	if len(b) == 0 || len(b) > 32 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isSessionID(b []byte) bool {
	if len(b) == 0 || len(b) > 64 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// postfixSASL parses "warning: host[1.2.3.4]: SASL LOGIN authentication
// failed: ..." strictly from the left. Postfix replaces a reverse name that
// is not a valid hostname with "unknown", so the name cannot contain '['.
func postfixSASL(msg []byte) (netip.Addr, bool) {
	if !bytes.HasPrefix(msg, []byte("warning: ")) {
		return netip.Addr{}, false
	}
	addr, rest, ok := postfixClient(msg[9:])
	if !ok || !bytes.HasPrefix(rest, []byte(": SASL ")) {
		return netip.Addr{}, false
	}
	rest = rest[7:]
	k := bytes.IndexByte(rest, ' ')
	if k <= 0 || !bytes.HasPrefix(rest[k:], []byte(" authentication failed")) {
		return netip.Addr{}, false
	}
	return addr, true
}

// postfixClient parses the client as Postfix writes it, "name[address]",
// from the start of b, and returns the address and what follows the ']'.
// Postfix writes "unknown" for a reverse name that is not a valid
// hostname, so the name cannot contain '[' and the first '[' opens the
// address.
func postfixClient(b []byte) (addr netip.Addr, rest []byte, ok bool) {
	i := 0
	for i < len(b) && isHostChar(b[i]) {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != '[' {
		return netip.Addr{}, nil, false
	}
	b = b[i+1:]
	j := bytes.IndexByte(b, ']')
	if j < 0 {
		return netip.Addr{}, nil, false
	}
	if addr, ok = parseAddr(b[:j]); !ok {
		return netip.Addr{}, nil, false
	}
	return addr, b[j+1:], true
}

func isHostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

// parseAddr validates an address with netip. IPv4 is parsed by hand (the
// common case, without allocating) and must be canonical dotted quad; IPv6
// goes through netip.ParseAddr. Zones and IPv4-mapped IPv6 forms are
// refused or unmapped, so that one host has one key.
func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 {
		return netip.Addr{}, false
	}
	if bytes.IndexByte(b, ':') < 0 {
		var a [4]byte
		part, n, digits := 0, 0, 0
		for _, c := range b {
			switch {
			case isDigit(c):
				if digits > 0 && n == 0 {
					return netip.Addr{}, false // leading zero
				}
				n = n*10 + int(c-'0')
				digits++
				if n > 255 {
					return netip.Addr{}, false
				}
			case c == '.':
				if digits == 0 || part == 3 {
					return netip.Addr{}, false
				}
				a[part] = byte(n)
				part, n, digits = part+1, 0, 0
			default:
				return netip.Addr{}, false
			}
		}
		if part != 3 || digits == 0 {
			return netip.Addr{}, false
		}
		a[3] = byte(n)
		return netip.AddrFrom4(a), true
	}
	addr, err := netip.ParseAddr(string(b))
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}
