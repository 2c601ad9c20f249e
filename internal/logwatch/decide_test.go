package logwatch

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func noAuthLine(ip string) []byte {
	return fmt.Appendf(nil, "Nov 28 12:00:00 mx dovecot: pop3-login: Disconnected: Connection closed (no auth attempts in 2 secs): user=<>, rip=%s, lip=198.18.0.1, session=<abcd>", ip)
}

func loginLine(ip string) []byte {
	return fmt.Appendf(nil, "Nov 28 12:00:00 mx dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=%s, lip=198.18.0.1, mpid=1, TLS, session=<abcd>", ip)
}

func authFailedLine(ip string, n int) []byte {
	return fmt.Appendf(nil, "Nov 28 12:00:00 mx dovecot: imap-login: Disconnected: Aborted login by logging out (auth failed, %d attempts in 4 secs): user=<alice>, method=PLAIN, rip=%s, lip=198.18.0.1, session=<abcd>", n, ip)
}

func newEngine(t testing.TB, mod func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// feed processes lines at the given times and returns the decisions.
func feed(e *Engine, lines [][]byte, times []time.Time) []*Decision {
	var out []*Decision
	for i, l := range lines {
		if r := e.Process(l, "maillog", times[i]); r.Decision != nil {
			out = append(out, r.Decision)
		}
	}
	return out
}

func TestProbeThenLoginIsNotBanned(t *testing.T) {
	e := newEngine(t, nil)
	ip := "198.18.7.1"
	now := t0
	for round := 0; round < 5; round++ {
		// A client that opens 9 idle connections (capability probes,
		// parallel folder sync) before it logs in, every few minutes.
		for i := 0; i < 9; i++ {
			now = now.Add(5 * time.Second)
			if r := e.Process(noAuthLine(ip), "", now); r.Decision != nil {
				t.Fatalf("round %d probe %d: banned %+v", round, i, r.Decision)
			}
		}
		now = now.Add(time.Second)
		e.Process(loginLine(ip), "", now)
	}
	// A typo'd password twice, then a login: no ban either.
	e.Process(authFailedLine("198.18.7.2", 2), "", now)
	e.Process(loginLine("198.18.7.2"), "", now)
	if n := e.Counters().Decisions; n != 0 {
		t.Fatalf("%d decisions, want none", n)
	}
}

func TestLoginDoesNotCancelAuthFailures(t *testing.T) {
	e := newEngine(t, nil)
	ip := "198.18.7.3"
	e.Process(authFailedLine(ip, 3), "", t0)
	e.Process(loginLine(ip), "", t0.Add(time.Second))
	r := e.Process(authFailedLine(ip, 2), "", t0.Add(2*time.Second))
	if r.Decision == nil || r.Decision.Reason != datapath.ReasonAuthFailed || r.Decision.Score != 10 {
		t.Fatalf("5 failed attempts around a login: decision %+v, want auth-failed ban with score 10", r.Decision)
	}
}

func TestSlowAttackerIsBanned(t *testing.T) {
	e := newEngine(t, nil)
	var ds []*Decision
	for i := 0; i < 15; i++ {
		// One idle connection every 50 s: 12 per 10 minutes.
		if r := e.Process(noAuthLine("198.18.8.1"), "", t0.Add(time.Duration(i)*50*time.Second)); r.Decision != nil {
			ds = append(ds, r.Decision)
			if i != 9 {
				t.Errorf("banned at event %d, want the 10th", i+1)
			}
		}
	}
	if len(ds) != 1 {
		t.Fatalf("%d decisions, want 1 (later events fall within the ban)", len(ds))
	}
	d := ds[0]
	if d.Prefix != netip.MustParsePrefix("198.18.8.1/32") || d.Duration != time.Hour || d.Reason != datapath.ReasonNoAuth ||
		d.Rule != RuleDovecotLogin || d.Events != 10 || d.Offence != 1 || d.Kinds[KindNoAuth] != 10 {
		t.Fatalf("decision %+v", d)
	}
	// Exact sliding window: one every 70 s never has 10 within 10 minutes.
	e2 := newEngine(t, nil)
	for i := 0; i < 50; i++ {
		if r := e2.Process(noAuthLine("198.18.8.2"), "", t0.Add(time.Duration(i)*70*time.Second)); r.Decision != nil {
			t.Fatalf("one per 70 s banned at event %d", i+1)
		}
	}
}

func TestAllowlistLoopbackOwnNeverBanned(t *testing.T) {
	e := newEngine(t, func(c *Config) {
		c.Allowlist = []netip.Prefix{netip.MustParsePrefix("198.18.9.0/24"), netip.MustParsePrefix("2001:db8:9:9::42/128")}
	})
	for _, ip := range []string{"198.18.9.77", "127.0.0.1", "::1", "2001:db8:9:9::7"} {
		for i := 0; i < 100; i++ {
			if r := e.Process(noAuthLine(ip), "", t0.Add(time.Duration(i)*time.Second)); r.Decision != nil {
				t.Fatalf("%s banned: %+v", ip, r.Decision)
			}
		}
	}
	// 2001:db8:9:9::7 is not allowlisted itself, but its /64 holds one that is.
	if n := e.Counters().Decisions; n != 0 {
		t.Fatalf("%d decisions", n)
	}
	for a := range e.own {
		for i := 0; i < 20; i++ {
			if r := e.Process(noAuthLine(a.String()), "", t0); r.Decision != nil {
				t.Fatalf("own address %v banned", a)
			}
		}
	}
}

func TestIPv6MaskAndEscalation(t *testing.T) {
	e := newEngine(t, nil)
	now := t0
	var d *Decision
	for i := 0; i < 10; i++ {
		now = now.Add(time.Second)
		if r := e.Process(noAuthLine(fmt.Sprintf("2001:db8:1:2::%x", i+1)), "", now); r.Decision != nil {
			d = r.Decision
		}
	}
	if d == nil || d.Prefix != netip.MustParsePrefix("2001:db8:1:2::/64") {
		t.Fatalf("10 addresses of one /64: decision %+v", d)
	}
	// Second offence after the first ban ended: twice as long.
	now = now.Add(time.Hour + time.Minute)
	d = nil
	for i := 0; i < 10; i++ {
		if r := e.Process(noAuthLine("2001:db8:1:2::99"), "", now); r.Decision != nil {
			d = r.Decision
		}
	}
	if d == nil || d.Offence != 2 || d.Duration != 2*time.Hour {
		t.Fatalf("second offence: %+v", d)
	}
	// A kernel ban of the same /64 escalates further, and is capped.
	if got := record(e, netip.MustParsePrefix("2001:db8:1:2::5/128"), now.Add(3*time.Hour)); got != 4*time.Hour {
		t.Fatalf("third offence: %v, want 4h", got)
	}
	for i := 0; i < 20; i++ {
		record(e, netip.MustParsePrefix("2001:db8:1:2::/64"), now.Add(time.Duration(4+i)*time.Hour))
	}
	if got := record(e, netip.MustParsePrefix("2001:db8:1:2::/64"), now.Add(30*time.Hour)); got != DefaultMaxBan {
		t.Fatalf("capped duration %v, want %v", got, DefaultMaxBan)
	}

	// With /128 granularity the same addresses stay apart.
	e2 := newEngine(t, func(c *Config) { c.IPv6Mask = 128 })
	for i := 0; i < 10; i++ {
		if r := e2.Process(noAuthLine(fmt.Sprintf("2001:db8:1:2::%x", i+1)), "", t0); r.Decision != nil {
			t.Fatalf("/128: banned %v", r.Decision.Prefix)
		}
	}
	// A /24 IPv4 granularity aggregates.
	e3 := newEngine(t, func(c *Config) { c.IPv4Mask = 24 })
	d = nil
	for i := 0; i < 10; i++ {
		if r := e3.Process(noAuthLine(fmt.Sprintf("198.18.44.%d", i+1)), "", t0); r.Decision != nil {
			d = r.Decision
		}
	}
	if d == nil || d.Prefix != netip.MustParsePrefix("198.18.44.0/24") {
		t.Fatalf("/24: %+v", d)
	}
}

func TestSnapshotRestore(t *testing.T) {
	e := newEngine(t, nil)
	record(e, netip.MustParsePrefix("198.18.10.1/32"), t0)
	record(e, netip.MustParsePrefix("198.18.10.1/32"), t0.Add(2*time.Hour))
	b, err := json.Marshal(e.History().Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var list []offence.Offender
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	e2 := newEngine(t, nil)
	if err := e2.History().Restore(list, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := record(e2, netip.MustParsePrefix("198.18.10.1/32"), t0.Add(5*time.Hour)); got != 4*time.Hour {
		t.Fatalf("third offence after restore: %v, want 4h (history %s)", got, b)
	}
	if err := e2.History().Restore([]offence.Offender{{}}, time.Now()); err == nil {
		t.Fatal("restore of an invalid prefix accepted")
	}
}

func TestReloadKeepsScores(t *testing.T) {
	e := newEngine(t, nil)
	for i := 0; i < 5; i++ {
		e.Process(noAuthLine("198.18.11.1"), "", t0)
	}
	cfg := DefaultConfig()
	cfg.Threshold = 6
	if err := e.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if r := e.Process(noAuthLine("198.18.11.1"), "", t0); r.Decision == nil {
		t.Fatal("6th event after reload to threshold 6: no ban")
	}
	bad := DefaultConfig()
	bad.Rules = []RuleConfig{{Name: "x", Regexp: "(", Kind: "no-auth", Weight: 1}}
	if err := e.Reload(bad); err == nil {
		t.Fatal("bad config accepted")
	}
	if e.c.cfg.Threshold != 6 {
		t.Fatal("failed reload changed the configuration")
	}
}

func TestBoundedSources(t *testing.T) {
	e := newEngine(t, func(c *Config) { c.MaxSources = 100 })
	for i := 0; i < 20000; i++ {
		e.Process(noAuthLine(fmt.Sprintf("198.19.%d.%d", i/256, i%256)), "", t0)
	}
	c := e.Counters()
	if c.Sources > 100 || len(e.sources) > 100 || c.SourcesEvicted != 19900 {
		t.Fatalf("sources %d (map %d), evicted %d", c.Sources, len(e.sources), c.SourcesEvicted)
	}
	// The LRU list and the map agree.
	n := 0
	for s := e.lruHead; s != nil; s = s.next {
		n++
	}
	if n != len(e.sources) {
		t.Fatalf("lru %d, map %d", n, len(e.sources))
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) {
			c.Rules = []RuleConfig{{Name: "ok", Regexp: `x (?P<ip>\S+)`, Kind: "auth-failed", Weight: 1}, {Name: "my-rule", Regexp: "a(", Kind: "no-auth"}}
		}, `rules[1] "my-rule": regexp: error parsing regexp: missing closing ): ` + "`a(`"},
		{func(c *Config) { c.Rules = []RuleConfig{{Name: "noip", Regexp: `x`, Kind: "no-auth"}} }, `rules[0] "noip": regexp: no named group (?P<ip>...)`},
		{func(c *Config) { c.Rules = []RuleConfig{{Name: "k", Regexp: `(?P<ip>x)`, Kind: "bogus"}} }, `rules[0] "k": kind: unknown event kind "bogus"`},
		{func(c *Config) { c.IPv6Mask = 129 }, "ipv6_mask: /129 is outside /16../128"},
		{func(c *Config) { c.Weights = map[string]int{"nope": 1} }, `weights: unknown event kind "nope"`},
		{func(c *Config) { c.Builtin = map[string]bool{"sshd": true} }, `builtin: unknown rule "sshd"`},
		{func(c *Config) { c.Threshold = 0 }, "threshold: 0 is outside 1..10000"},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		c.mod(&cfg)
		err := cfg.Validate()
		if err == nil || len(err.Error()) < len(c.want) || err.Error()[:len(c.want)] != c.want {
			t.Errorf("got %v, want prefix %q", err, c.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCustomRule(t *testing.T) {
	e := newEngine(t, func(c *Config) {
		c.Rules = []RuleConfig{
			{Name: "sshd", Regexp: `sshd\[\d+\]: Failed password for (?P<user>\S+) from (?P<ip>\S+) port`, Kind: "auth-failed", Weight: 5, Files: []string{"/var/log/auth.log"}},
			{Name: "gone", Regexp: `(?P<ip>\S+)`, Kind: "probe", Weight: 1, Requires: "/nonexistent/daemon"},
		}
	})
	line := []byte("Nov 28 12:00:00 mx sshd[1]: Failed password for root from 198.18.12.1 port 22 ssh2")
	if r := e.Process(line, "/var/log/maillog", t0); r.Matched {
		t.Fatalf("rule limited to auth.log matched a maillog line: %+v", r)
	}
	e.Process(line, "/var/log/auth.log", t0)
	r := e.Process(line, "/var/log/auth.log", t0)
	if !r.Matched || r.Rule != "sshd" || r.Kind != KindAuthFailed || r.Decision == nil || r.Decision.Score != 10 {
		t.Fatalf("custom rule: %+v", r)
	}
	if _, ok := e.DisabledRules()["gone"]; !ok {
		t.Fatal("rule with a missing requires path not disabled")
	}
}

// record enters a ban decided elsewhere (as the kernel's) into e's history.
func record(e *Engine, p netip.Prefix, at time.Time) time.Duration {
	d, _ := e.History().Record(p, at, datapath.ReasonSynRate, datapath.DetectorSYNRate)
	return d
}
