package logwatch

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestJournalJSON(t *testing.T) {
	line := []byte(`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1795885932466432","_HOSTNAME":"vm","SYSLOG_IDENTIFIER":"dovecot","_PID":"811","MESSAGE":"imap-login: x \"q\" \\ \u00e9 \ud83d\ude00 \n end","_TRANSPORT":["a",{"b":"}"}]}`)
	h := ParseHeader(line, true, time.Time{})
	if h.Format != FormatJournalJSON || string(h.Tag) != "dovecot" {
		t.Fatalf("%v %q", h.Format, h.Tag)
	}
	if want := "imap-login: x \"q\" \\ \u00e9 \U0001F600 ? end"; string(h.Msg) != want {
		t.Fatalf("message %q, want %q", h.Msg, want)
	}
	if want := time.UnixMicro(1795885932466432); !h.Time.Equal(want) {
		t.Fatalf("time %v, want %v", h.Time, want)
	}
	// A binary MESSAGE (journald writes invalid UTF-8 as an array) is empty.
	h = ParseHeader([]byte(`{"MESSAGE":[105,109,97],"SYSLOG_IDENTIFIER":"dovecot"}`), false, time.Time{})
	if h.Format != FormatJournalJSON || len(h.Msg) != 0 {
		t.Fatalf("binary message: %v %q", h.Format, h.Msg)
	}
	// No MESSAGE, or not an object: not journal JSON.
	for _, l := range []string{`{"SYSLOG_IDENTIFIER":"dovecot"}`, `{"MESSAGE":"x"`, `{"MESSAGE" "x"}`, `{MESSAGE:"x"}`} {
		if h := ParseHeader([]byte(l), false, time.Time{}); h.Format == FormatJournalJSON {
			t.Errorf("%s: read as journal JSON", l)
		}
	}
}

// FuzzJournalJSON compares the hand-written reader with encoding/json:
// for every valid object, MESSAGE and SYSLOG_IDENTIFIER are what
// encoding/json reads (with control characters as '?'), so nothing inside
// a value can forge a field.
func FuzzJournalJSON(f *testing.F) {
	f.Add([]byte(`{"MESSAGE":"imap-login: a","SYSLOG_IDENTIFIER":"dovecot"}`))
	f.Add([]byte(`{"MESSAGE":"a\",\"MESSAGE\":\"b","x":[1,{"MESSAGE":"c"}],"SYSLOG_IDENTIFIER":"dovecot"}`))
	f.Add([]byte(`{"MESSAGE":"\ud83d\ude00\ud800x\u0000","__REALTIME_TIMESTAMP":"1"}`))
	f.Add([]byte(`{ "MESSAGE" : "x" , "n" : -1.5e3 , "t" : true , "z" : null }`))
	f.Fuzz(func(t *testing.T, line []byte) {
		h := ParseHeader(line, true, time.Time{})
		if bytes.IndexByte(line, '\n') >= 0 || !utf8.Valid(line) || !json.Valid(line) {
			return
		}
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			return
		}
		msg, isStr := m["MESSAGE"].(string)
		if _, has := m["MESSAGE"]; !has || line[0] != '{' {
			return // the reader wants the object at the start of the line
		}
		if h.Format != FormatJournalJSON {
			t.Fatalf("valid object with MESSAGE not read: %s", line)
		}
		if !isStr {
			msg = ""
		}
		want := strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return '?'
			}
			return r
		}, msg)
		if string(h.Msg) != want {
			t.Fatalf("MESSAGE %q, encoding/json reads %q in %s", h.Msg, want, line)
		}
		if tag, ok := m["SYSLOG_IDENTIFIER"].(string); len(h.Tag) > 0 && (!ok || tag != string(h.Tag)) {
			t.Fatalf("tag %q, encoding/json reads %q", h.Tag, tag)
		}
	})
}

func TestPressure(t *testing.T) {
	cases := []struct {
		msg  string
		want Pressure
		ok   bool
	}{
		{"master: Warning: service(imap-login): process_limit (100) reached, client connections are being dropped", Pressure{"imap-login", "process_limit", 100}, true},
		{"master: service(pop3-login): client_limit (1000) reached, client connections are being dropped", Pressure{"pop3-login", "client_limit", 1000}, true},
		{"master: Warning: service(imap): process_limit (1024) reached, client connections are being dropped", Pressure{"imap", "process_limit", 1024}, true},
		{"master: Warning: service(imap-login): vsz_limit (100) reached, client connections are being dropped", Pressure{}, false},
		{"master: Warning: service(imap-login): process_limit () reached, client connections are being dropped", Pressure{}, false},
		{"imap-login: Warning: service(imap-login): process_limit (100) reached, client connections are being dropped", Pressure{}, false},
		{"master: Warning: Killed with signal 15 (by pid=22049 uid=0 code=kill)", Pressure{}, false},
	}
	for _, c := range cases {
		got, ok := masterPressure([]byte(c.msg))
		if ok != c.ok || got != c.want {
			t.Errorf("%s: got %+v %v, want %+v %v", c.msg, got, ok, c.want, c.ok)
		}
	}
	if !(Pressure{Service: "imap-login"}).Login() || (Pressure{Service: "imap"}).Login() {
		t.Error("Login() wrong")
	}
	// Through the engine: counted, not matched, not missed; off with the rule.
	e := newEngine(t, nil)
	line := []byte("2026-11-28T17:12:16.962017+00:00 vm dovecot: master: Warning: service(pop3-login): process_limit (5) reached, client connections are being dropped")
	r := e.Process(line, "", time.Now())
	c := e.Counters()
	if r.Matched || r.Pressure == nil || r.Pressure.Value != 5 || c.Pressure != 1 || c.Missed != 0 {
		t.Fatalf("result %+v counters %+v", r, c)
	}
	e = newEngine(t, func(cfg *Config) { cfg.Builtin = map[string]bool{RuleDovecotLogin: false} })
	if r := e.Process(line, "", time.Now()); r.Pressure != nil {
		t.Fatal("pressure with dovecot-login off")
	}
	// Another program's "master:" is not Dovecot's.
	e = newEngine(t, nil)
	if r := e.Process([]byte("Nov 28 17:12:16 vm postfix/master[1]: master: Warning: service(imap-login): process_limit (5) reached, client connections are being dropped"), "", time.Now()); r.Pressure != nil {
		t.Fatal("pressure from postfix's tag")
	}
}

func TestExplain(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Allowlist = nil
	cases := []struct {
		line    string
		counted bool
		kind    Kind
		why     string
	}{
		{"Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=198.18.200.1, lip=198.18.0.1", true, KindNoAuth, "adds 1 to the score of 198.18.200.1"},
		{"Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=127.0.0.1, lip=198.18.0.1", false, KindNoAuth, "not scored: allowlisted"},
		{"Nov 28 17:12:50 vm dovecot: auth: passwd-file(bob,203.0.113.9): unknown user", false, KindAuthBackend, "weight 0 for auth-backend"},
		{"Nov 28 17:12:12 vm dovecot: imap-login: Disconnected (user disabled): user=<bob>, rip=203.0.113.25, lip=192.0.2.1", false, KindNone, `reason "user disabled" is recognised and not scored`},
		{"Nov 28 17:12:12 vm kernel: imap-login: Disconnected (no auth attempts): rip=203.0.113.25", false, KindNone, `tag "kernel"`},
		{"[28/Nov/2026] imap-login: x", false, KindNone, "unparsed"},
		{"Nov 28 17:12:12 vm dovecot: master: Warning: service(imap-login): process_limit (100) reached, client connections are being dropped", false, KindNone, "slot pressure"},
	}
	for _, c := range cases {
		x, err := Explain(cfg, []byte(c.line))
		if err != nil {
			t.Fatal(err)
		}
		if x.Counted != c.counted || x.Kind != c.kind || !strings.Contains(x.Why, c.why) {
			t.Errorf("%s:\n got counted=%v kind=%v why=%q", c.line, x.Counted, x.Kind, x.Why)
		}
		var b bytes.Buffer
		if err := x.WriteText(&b); err != nil || !strings.Contains(b.String(), x.Why) {
			t.Errorf("text %q %v", b.String(), err)
		}
	}
}

func TestReplayUnparsed(t *testing.T) {
	dir := t.TempDir()
	known := dir + "/known.log"
	odd := dir + "/odd.log"
	writeFile(t, known, "Nov 28 17:12:12 vm dovecot: imap-login: Disconnected (no auth attempts): rip=203.0.113.1, lip=192.0.2.1\n"+
		"imap-login: Info: Disconnected (no auth attempts): rip=203.0.113.2, lip=192.0.2.1\n")
	writeFile(t, odd, "[28/Nov/2026:17:12:12] imap-login: Disconnected (no auth attempts): rip=203.0.113.3\n\n"+
		"Nov 28 17:12:12 vm dovecot: imap-login: Disconnected (no auth attempts): rip=203.0.113.4, lip=192.0.2.1\n"+
		"28.11.2026 17:12 something\n")
	var out bytes.Buffer
	sum, err := Replay(DefaultConfig(), []string{known, odd}, &out, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []FileCount{{known, 2, 0}, {odd, 4, 2}}
	if len(sum.PerFile) != 2 || sum.PerFile[0] != want[0] || sum.PerFile[1] != want[1] || sum.Unparsed != 2 {
		t.Fatalf("per file %+v, want %+v", sum.PerFile, want)
	}
	if !strings.Contains(out.String(), "warning: "+odd+": 2 of 4 lines are in no log format") || strings.Contains(out.String(), "warning: "+known) {
		t.Fatalf("report:\n%s", out.String())
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
