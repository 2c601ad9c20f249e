package logwatch

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// framingTemplates are real line shapes with the attacker-controlled user
// name marked USER. The real client address is 198.18.5.5.
var framingTemplates = []struct {
	line string
	rule string
	kind Kind
}{
	{"Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<USER>, method=PLAIN, rip=198.18.5.5, lip=198.18.0.1, session=<E89MSVlhhZ7GEsiJ>", RuleDovecotLogin, KindAuthFailed},
	{"Nov 28 17:12:47 imap-login: Info: Login: user=<USER>, method=PLAIN, rip=198.18.5.5, lip=198.18.0.1, mpid=23358, session=<cyAnSVlh69DGEsiD>", RuleDovecotLogin, KindLogin},
	{"2026-11-28T17:09:12.466432+00:00 vm dovecot: imap-login: Login aborted: Logged out (auth failed, 1 attempts in 3 secs) (auth_failed): user=<USER>, method=PLAIN, rip=198.18.5.5, lip=198.18.0.1, TLS, session=<R2x0Ih0E>", RuleDovecotLogin, KindAuthFailed},
	{"Nov 28 17:12:50 auth: Info: passwd-file(USER,198.18.5.5,<E89MSVlhhZ7GEsiJ>): Password mismatch", RuleDovecotAuth, KindAuthBackend},
	{"Nov 28 17:12:50 vm dovecot: auth: passwd-file(USER,198.18.5.5,<E89MSVlhhZ7GEsiJ>): unknown user", RuleDovecotAuth, KindAuthBackend},
	{"Nov 28 17:12:50 vm dovecot: auth-worker(12): pam(USER,198.18.5.5): pam_authenticate() failed: Authentication failure (password mismatch?)", RuleDovecotAuth, KindAuthBackend},
	{"2026-03-01 10:00:14 auth(USER,198.18.5.5,<R2x0Ih0O>): Info: passwd-file: unknown user", RuleDovecotAuth, KindAuthBackend},
	{"Nov 28 17:12:50 vm dovecot: imap-login: Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10): user=<USER>, method=PLAIN, rip=198.18.5.5, lip=198.18.0.1, mpid=0, session=<cyAnSVlh69DGEsiD>", RuleDovecotLogin, KindConnLimit},
	// Shapes added for issue 16.
	{"2026-03-01T10:00:00.123456+01:00 mx dovecot[77]: auth(USER,198.18.5.5,sasl:plain)<R2x0Ih0A>: passwd-file: Password mismatch", RuleDovecotAuth, KindAuthBackend},
	{"2026-03-01T10:00:00.123456+01:00 mx dovecot[77]: auth: auth(USER,198.18.5.5,sasl:plain)<R2x0Ih0A>: passwd-file: unknown user", RuleDovecotAuth, KindAuthBackend},
	{"2026-03-01 10:00:00 auth-worker(USER,198.18.5.5,sasl:plain,master)<4242><R2x0Ih0D>: request [12]: Info: sql: unknown user", RuleDovecotAuth, KindAuthBackend},
	{"Nov 28 17:12:50 vm dovecot: auth-worker(1234): conn unix:auth-worker (pid=1200,uid=97): auth-worker<3>: sql(USER,198.18.5.5,<E89MSVlhhZ7GEsiL>): unknown user", RuleDovecotAuth, KindAuthBackend},
	{"2026-03-01T10:00:00.123456+01:00 mx dovecot[77]: auth(USER,198.18.5.5,sasl:plain)<R2x0Ih0C>: unix_user: pam_authenticate() failed: Authentication failure (password mismatch?)", RuleDovecotAuth, KindAuthBackend},
	{"Nov 28 17:12:12 vm dovecot: pop3-login: Login failed: Plaintext authentication disabled: user=<USER>, rip=198.18.5.5, lip=198.18.0.1, session=<E89MSVlhhZ7GEsiP>", RuleDovecotLogin, KindPlaintext},
	{"2026-03-01T10:00:00.123456+01:00 mx dovecot[77]: imap-login: Login aborted: Connection closed (proxy dest authentication failure, 1 attempts in 1 secs) (proxy_dest_auth_failed): user=<USER>, method=PLAIN, rip=198.18.5.5, lip=192.0.2.1, session=<R2x0Ih0P>", RuleDovecotLogin, KindAuthFailed},
	{"2026-11-28 17:12:12.466432+0100  localhost log[555]: (libdovecot.0.dylib) imap-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<USER>, rip=198.18.5.5, lip=198.18.0.1, session=<hqgQR1lhdZHGEsiC>", RuleDovecotLogin, KindNoAuth},
	// journald escapes the message; JSONUSER is the user name as a JSON
	// string body.
	{`{"__REALTIME_TIMESTAMP":"1795885932466432","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"imap-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<JSONUSER>, rip=198.18.5.5, lip=198.18.0.1, session=<hqgQR1lhdZHGEsiA>","_PID":"811"}`, RuleDovecotLogin, KindNoAuth},
}

var realAddr = netip.MustParseAddr("198.18.5.5")

var evilUsers = []string{
	"rip=6.6.6.6",
	", rip=6.6.6.6",
	">, rip=6.6.6.6, lip=1.1.1.1, session=<abc>",
	"x>, method=PLAIN, rip=6.6.6.6, lip=198.18.0.1, mpid=1, session=<abc>",
	">",
	"a,6.6.6.6,<abc>): unknown user",
	"a,6.6.6.6): Password mismatch",
	"a,6.6.6.6,<abc>): pam_authenticate() failed: x",
	"Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=6.6.6.6, lip=198.18.0.1, session=<hqgQR1lhdZHGEshm>",
	"x dovecot: pop3-login: Disconnected (no auth attempts): user=<>, rip=6.6.6.6, lip=1.1.1.1, session=<a>",
	"x\nNov 28 17:12:12 vm dovecot: pop3-login: Disconnected (no auth attempts): rip=6.6.6.6",
	"(no auth attempts in 1 secs): user=<",
	"auth(x,6.6.6.6,<a>): passwd-file: unknown user",
	"6.6.6.6",
	"",
	"a,6.6.6.6,sasl:plain)<abc>: passwd-file: unknown user",
	"a,6.6.6.6,sasl:plain",
	"6.6.6.6,sasl:plain,master",
	")<1><abc>: request [1]: sql: unknown user",
	`x>, rip=6.6.6.6, lip=1.1.1.1","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"imap-login: Disconnected (no auth attempts): rip=6.6.6.6`,
	`\",\"MESSAGE\":\"imap-login: Disconnected (no auth attempts): rip=6.6.6.6`,
	"x\u000aimap-login: Disconnected (no auth attempts): rip=6.6.6.6",
	"master: Warning: service(imap-login): process_limit (1) reached, client connections are being dropped",
}

// sanitize does what Dovecot's str_sanitize() does to user names before
// logging them (control characters become '?'); rsyslog's
// EscapeControlCharactersOnReceive does the same for syslog. A raw newline
// would let the attacker write a whole line, which no parser can tell from
// a real one; this is why the test models the escaping instead.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// checkFraming runs a user name through every template: the line either
// does not match, or matches as the template's rule and kind with the real
// address. A user name must never choose the address or the kind.
func checkFraming(t *testing.T, user string) {
	e := newEngine(t, nil)
	for _, tpl := range framingTemplates {
		line := strings.Replace(tpl.line, "USER", sanitize(user), 1)
		if strings.Contains(tpl.line, "JSONUSER") {
			q, _ := json.Marshal(sanitize(user))
			line = strings.Replace(tpl.line, "JSONUSER", string(q[1:len(q)-1]), 1)
		}
		if res := e.Process([]byte(line), "", time.Now()); res.Pressure != nil {
			t.Fatalf("user %q made a pressure event in\n%s", user, line)
		}
		rule, kind, addr, ok := e.Classify([]byte(line), "")
		if !ok {
			continue
		}
		if addr != realAddr {
			t.Fatalf("user %q framed %v in\n%s", user, addr, line)
		}
		if rule != tpl.rule || kind != tpl.kind {
			t.Fatalf("user %q changed the classification to %s/%v in\n%s", user, rule, kind, line)
		}
	}
}

func TestUserCannotFrameAddress(t *testing.T) {
	for _, u := range evilUsers {
		checkFraming(t, u)
	}
	// The plain templates must match, or the test proves nothing.
	e := newEngine(t, nil)
	for _, tpl := range framingTemplates {
		line := strings.Replace(strings.Replace(tpl.line, "JSONUSER", "alice", 1), "USER", "alice", 1)
		if _, _, addr, ok := e.Classify([]byte(line), ""); !ok || addr != realAddr {
			t.Fatalf("template does not match: %s", tpl.line)
		}
	}
}

func FuzzUserCannotFrame(f *testing.F) {
	for _, u := range evilUsers {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, user string) {
		checkFraming(t, user)
	})
}

// addrInLine reports whether addr is written somewhere in the line.
func addrInLine(line []byte, addr netip.Addr) bool {
	isAddrChar := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.'
	}
	for i := 0; i < len(line); {
		if !isAddrChar(line[i]) {
			i++
			continue
		}
		j := i
		for j < len(line) && isAddrChar(line[j]) {
			j++
		}
		for a := i; a < j; a++ {
			for b := j; b > a; b-- {
				if p, err := netip.ParseAddr(string(line[a:b])); err == nil && p.Unmap() == addr {
					return true
				}
			}
		}
		i = j
	}
	return false
}

func FuzzParseHeader(f *testing.F) {
	for _, fx := range versionFixtures {
		f.Add([]byte(fx.line))
	}
	f.Add([]byte("<13>1 - - - - - -"))
	f.Add([]byte("@4000000069a4ac9c1c9c8b4c"))
	f.Add([]byte("Nov  8 16:56:06 "))
	f.Fuzz(func(t *testing.T, line []byte) {
		p := ParseHeader(line, true, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
		if p.Format != FormatJournalJSON && !bytes.HasSuffix(line, p.Msg) {
			t.Fatalf("Msg %q is not the end of the line", p.Msg)
		}
		if len(p.Tag) > 0 && !bytes.Contains(line, p.Tag) {
			t.Fatalf("Tag %q not in the line", p.Tag)
		}
		if p.Format == FormatNone && !p.Time.IsZero() {
			t.Fatal("time without a format")
		}
	})
}

func FuzzClassify(f *testing.F) {
	for _, fx := range versionFixtures {
		f.Add([]byte(fx.line))
	}
	for _, tpl := range framingTemplates {
		f.Add([]byte(tpl.line))
	}
	e := newEngine(f, nil)
	f.Fuzz(func(t *testing.T, line []byte) {
		_, kind, addr, ok := e.Classify(line, "")
		if !ok {
			return
		}
		if !addr.IsValid() || addr.Zone() != "" || addr.Is4In6() {
			t.Fatalf("invalid address %v", addr)
		}
		if kind == KindNone || kind >= numKinds {
			t.Fatalf("kind %v", kind)
		}
		// journald's JSON escapes the message: look in what it decodes to.
		src := line
		if h := ParseHeader(line, false, time.Time{}); h.Format == FormatJournalJSON {
			src = h.Msg
		}
		if !addrInLine(src, addr) {
			t.Fatalf("address %v is not in the line %q", addr, line)
		}
		if res := e.Process(line, "", time.Now()); res.Pressure != nil {
			t.Fatalf("a matched line is also pressure: %q", line)
		}
	})
}
