package logwatch

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// Successful logins, from every server and version the daemon learns
// known-good sources from, and lines that look alike but are not logins.
var successFixtures = []struct {
	name, line string
	login      bool
	addr       string
}{
	{"2.3 pop3", "2026-11-28T17:09:12.466432+00:00 vm dovecot: pop3-login: Login: user=<alice>, method=PLAIN, rip=198.18.200.1, lip=198.18.0.1, mpid=19237, session=<DPhUPFlhoczGEsgB>", true, "198.18.200.1"},
	{"2.3 log_path", "Nov 28 17:12:47 imap-login: Info: Login: user=<alice>, method=PLAIN, rip=198.18.200.2, lip=198.18.0.1, mpid=23358, session=<cyAnSVlh69DGEsiD>", true, "198.18.200.2"},
	// Dovecot 2.4.0 and later write "Logged in" (dovecot/core cfaca55d93,
	// "login-common: Change "Login" log lines to "Logged in"").
	{"2.4 logged in", "2026-03-01T10:00:11.000001+01:00 mx dovecot[77]: imap-login: Logged in: user=<bob>, method=PLAIN, rip=203.0.113.51, lip=192.0.2.1, mpid=5150, TLS, session=<R2x0Ih0L>", true, "203.0.113.51"},
	{"2.4 logged in v6", "2026-03-01T10:00:11.000001+01:00 mx dovecot[77]: pop3-login: Logged in: user=<bob>, method=PLAIN, rip=2001:db8:5::7, lip=2001:db8::1, mpid=5151, session=<R2x0Ih0M>", true, "2001:db8:5::7"},
	{"postfix sasl", "Jan 12 09:41:00 mx postfix/submission/smtpd[1234]: 4F2Y3k1x2Cz9sW: client=mail.example.com[203.0.113.80], sasl_method=PLAIN, sasl_username=alice@example.org", true, "203.0.113.80"},
	{"postfix sasl unknown v6", "Jan 12 09:41:01 mx postfix/smtpd[1235]: 4F2Y3k1x2Cz9sX: client=unknown[2001:db8::81], sasl_method=LOGIN, sasl_username=bob", true, "2001:db8::81"},
	{"postfix sasl with port", "2026-03-01T10:00:20.000001+01:00 mx postfix/smtps/smtpd[99]: 8A1B2C3D4E: client=unknown[203.0.113.82]:41234, sasl_method=PLAIN, sasl_username=carol", true, "203.0.113.82"},
	// Not logins.
	{"postfix client without sasl", "Jan 12 09:41:02 mx postfix/smtpd[1236]: 4F2Y3k1x2Cz9sY: client=unknown[203.0.113.83]", false, ""},
	{"postfix sasl username forges the fields", "Jan 12 09:41:03 mx postfix/smtpd[1237]: 4F2Y3k1x2Cz9sZ: client=unknown[203.0.113.84], orig_client=x, sasl_username=, sasl_method=PLAIN", false, ""},
	{"dovecot login-ish head", "2026-03-01T10:00:11.000001+01:00 mx dovecot[77]: imap-login: Login aborted: Logged in (no auth attempts in 0 secs) (no_auth_attempts): user=<>, rip=203.0.113.85, lip=192.0.2.1", false, ""},
}

func TestSuccessfulLogins(t *testing.T) {
	e := newEngine(t, nil)
	for _, f := range successFixtures {
		_, kind, addr, ok := e.Classify([]byte(f.line), "")
		if got := ok && kind == KindLogin; got != f.login {
			t.Errorf("%s: login %v (kind %v), want %v", f.name, got, kind, f.login)
			continue
		}
		if f.login && addr != netip.MustParseAddr(f.addr) {
			t.Errorf("%s: address %v, want %s", f.name, addr, f.addr)
		}
	}
}

// A SASL user name is chosen by the client; whatever it holds, the address
// of a Postfix success line stays the real one, or the line does not match.
func TestSASLUserCannotFrameSuccess(t *testing.T) {
	e := newEngine(t, nil)
	tpl := "Jan 12 09:41:00 mx postfix/smtpd[1234]: 4F2Y3k1x2Cz9sW: client=unknown[198.18.5.5], sasl_method=PLAIN, sasl_username=USER"
	for _, u := range append(evilUsers, "x, client=unknown[6.6.6.6], sasl_method=PLAIN, sasl_username=y", "]6.6.6.6[") {
		line := strings.Replace(tpl, "USER", sanitize(u), 1)
		if _, kind, addr, ok := e.Classify([]byte(line), ""); ok && (addr != realAddr || kind != KindLogin) {
			t.Fatalf("user %q: %v %v in\n%s", u, kind, addr, line)
		}
	}
}

// Every "Login:" line of the real Dovecot 2.3 corpus is a login, with the
// address its rip= names.
func TestCorpusLogins(t *testing.T) {
	e := newEngine(t, nil)
	f, err := os.Open("testdata/dovecot-2.3.19-real.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte("-login: Login: ")) {
			continue
		}
		n++
		_, kind, addr, ok := e.Classify(line, "")
		rip := line[bytes.LastIndex(line, []byte("rip="))+4:]
		rip = rip[:bytes.IndexByte(rip, ',')]
		if !ok || kind != KindLogin || addr != netip.MustParseAddr(string(rip)) {
			t.Errorf("%s: %v %v %v", line, ok, kind, addr)
		}
	}
	if n == 0 {
		t.Fatal("no Login: lines in the corpus")
	}
}

func FuzzSASLSuccess(f *testing.F) {
	for _, fx := range successFixtures {
		f.Add([]byte(fx.line))
	}
	e := newEngine(f, nil)
	f.Fuzz(func(t *testing.T, line []byte) {
		_, kind, addr, ok := e.Classify(line, "")
		if ok && kind == KindLogin && !addrInLine(line, addr) {
			t.Fatalf("login from %v, which is not in %q", addr, line)
		}
	})
}
