// Package maillog generates a realistic mail log for benchmarks: Postfix
// and Dovecot noise, legitimate logins (some after idle probes, some after
// a typo'd password), and attacks from many addresses, in BSD syslog format.
// It also returns the ground truth, so tests can check what was banned.
package maillog

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"time"
)

// Spec describes the file.
type Spec struct {
	Lines     int     // total lines
	AttackPct float64 // share of lines written by attackers (0.05)
	Attackers int     // distinct attacking addresses
	Users     int     // legitimate users, one address each
	Seed      uint64
	Start     time.Time     // first line; local time is written
	Span      time.Duration // the file covers [Start, Start+Span)
}

// DefaultSpec is the benchmark file the issue describes: 1,000,000 lines,
// 5% attack lines from 10,000 addresses, over one day.
func DefaultSpec() Spec {
	return Spec{
		Lines: 1_000_000, AttackPct: 0.05, Attackers: 10_000, Users: 400, Seed: 1,
		Start: time.Date(2026, 11, 27, 0, 0, 0, 0, time.Local), Span: 24 * time.Hour,
	}
}

// EventKind is what a scored line reports, for the ground truth.
type EventKind uint8

const (
	NoAuth     EventKind = iota // weight 1, cancelled by a login
	AuthFailed                  // login summary: weight 2 per attempt
	SASLFailed                  // Postfix SASL: weight 2
	Login                       // cancels NoAuth
	// NoAuthAtOnce is a no-auth line of a client that closed within its
	// first second (noAuthForms[0]): weight 0 (logwatch/gaveup.go).
	NoAuthAtOnce
)

// Event is one scored line of the ground truth.
type Event struct {
	At   time.Time
	Kind EventKind
}

// Truth is what the file contains.
type Truth struct {
	Attackers map[netip.Addr][]Event
	Legit     map[netip.Addr][]Event
	Lines     int
	Bytes     int64
}

type rec struct {
	at   int64
	kind uint8
	a, b int32
}

const (
	rNoAuth uint8 = iota
	rBackend
	rAuthFailed
	rSASL
	rLogin
	rLogout
	rSMTPConnect
	rSMTPClient
	rCleanup
	rQmgrFrom
	rLMTP
	rQmgrRemoved
	rSMTPDisconnect
	rDovecotLMTP
	rResolveWarn
	rAnvil
	numRec
)

// Generate writes the file and returns its ground truth.
func Generate(w io.Writer, s Spec) (Truth, error) {
	rng := rand.New(rand.NewPCG(s.Seed, s.Seed^0x9e3779b97f4a7c15))
	start := s.Start.UnixNano()
	span := int64(s.Span)
	var recs []rec
	truth := Truth{Attackers: map[netip.Addr][]Event{}, Legit: map[netip.Addr][]Event{}}
	attackers := make([]netip.Addr, s.Attackers)
	for i := range attackers {
		if i%10 == 9 {
			attackers[i] = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x0a, 0, byte(i >> 8), byte(i), 0, 0, 0, 0, 0, 0, 0, byte(rng.IntN(200) + 1)})
		} else {
			attackers[i] = netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		}
	}
	users := make([]netip.Addr, s.Users)
	for i := range users {
		users[i] = netip.AddrFrom4([4]byte{198, 18, byte(128 + i>>8), byte(i)})
	}
	addEv := func(m map[netip.Addr][]Event, a netip.Addr, at int64, k EventKind) {
		m[a] = append(m[a], Event{At: time.Unix(0, at), Kind: k})
	}

	// Attack lines. A fifth of the attackers are heavy (20 lines, most in
	// a burst that crosses the threshold, some slow and below it); the
	// rest write 1 to 3 lines at random times.
	budget := int(float64(s.Lines) * s.AttackPct)
	heavy := s.Attackers / 5
	perHeavy := 20
	if heavy*perHeavy > budget*3/5 {
		perHeavy = max(1, budget*3/5/max(heavy, 1))
	}
	written := 0
	emit := func(ai int, at int64, style int) {
		a := attackers[ai]
		switch style {
		case 0: // no-auth bot
			form := int32(rng.IntN(8))
			recs = append(recs, rec{at: at, kind: rNoAuth, a: int32(ai), b: form})
			addEv(truth.Attackers, a, at, noAuthKind(form))
			written++
		case 1: // Dovecot password guessing: backend line + summary
			recs = append(recs, rec{at: at, kind: rBackend, a: int32(ai), b: int32(rng.IntN(4))})
			recs = append(recs, rec{at: at + int64(2*time.Second), kind: rAuthFailed, a: int32(ai), b: int32(rng.IntN(4))})
			addEv(truth.Attackers, a, at+int64(2*time.Second), AuthFailed)
			written += 2
		case 2: // Postfix SASL guessing
			recs = append(recs, rec{at: at, kind: rSASL, a: int32(ai)})
			addEv(truth.Attackers, a, at, SASLFailed)
			written++
		}
	}
	styleOf := func(i int) int {
		switch i % 10 {
		case 0, 1:
			return 1
		case 2:
			return 2
		}
		return 0
	}
	for i := 0; i < heavy && written < budget; i++ {
		st := styleOf(i)
		t := start + rng.Int64N(span-int64(time.Hour))
		var step int64
		if i%5 == 4 {
			step = int64(2*time.Minute) + rng.Int64N(int64(2*time.Minute)) // slow: below threshold
		} else {
			step = int64(5*time.Second) + rng.Int64N(int64(20*time.Second)) // burst
		}
		n := perHeavy
		if st == 1 {
			n = perHeavy / 2
		}
		for j := 0; j < n && written < budget; j++ {
			emit(i, t, st)
			t += step
		}
	}
	for k := 0; written < budget; k++ {
		// Every light attacker appears at least once, then at random.
		i := heavy + k
		if k >= s.Attackers-heavy {
			i = heavy + rng.IntN(s.Attackers-heavy)
		}
		st := styleOf(i)
		n := 1 + rng.IntN(3)
		if st == 1 {
			n = 1
		}
		t := start + rng.Int64N(span-int64(time.Hour))
		for j := 0; j < n && written < budget; j++ {
			emit(i, t, st)
			t += int64(30*time.Second) + rng.Int64N(int64(time.Hour))
		}
	}

	// Legitimate users: logins (with the session's end), a tenth after
	// 1-3 idle probes, one in a hundred after a typo'd password.
	legitBudget := s.Lines / 10
	for n := 0; n < legitBudget; {
		u := rng.IntN(len(users))
		a := users[u]
		t := start + rng.Int64N(span-int64(time.Hour))
		if rng.IntN(10) == 0 {
			for k := 1 + rng.IntN(3); k > 0; k-- {
				form := int32(rng.IntN(8))
				recs = append(recs, rec{at: t, kind: rNoAuth, a: int32(-1 - u), b: form})
				addEv(truth.Legit, a, t, noAuthKind(form))
				t += int64(time.Second)
				n++
			}
		}
		if rng.IntN(100) == 0 {
			recs = append(recs, rec{at: t, kind: rBackend, a: int32(-1 - u)}, rec{at: t + int64(2*time.Second), kind: rAuthFailed, a: int32(-1 - u)})
			addEv(truth.Legit, a, t+int64(2*time.Second), AuthFailed)
			t += int64(3 * time.Second)
			n += 2
		}
		recs = append(recs, rec{at: t, kind: rLogin, a: int32(-1 - u), b: int32(rng.IntN(2))})
		addEv(truth.Legit, a, t, Login)
		recs = append(recs, rec{at: t + rng.Int64N(int64(30*time.Minute)), kind: rLogout, a: int32(u)})
		n += 2
	}

	// Noise up to the line count: one Postfix delivery is 7 lines.
	for len(recs) < s.Lines {
		t := start + rng.Int64N(span)
		c := int32(rng.IntN(1 << 14))
		q := int32(rng.Int32())
		switch rng.IntN(10) {
		case 0:
			recs = append(recs, rec{at: t, kind: rResolveWarn, a: c})
		case 1:
			recs = append(recs, rec{at: t, kind: rAnvil, a: c})
		default:
			for k := rSMTPConnect; k <= rDovecotLMTP && len(recs) < s.Lines; k++ {
				recs = append(recs, rec{at: t, kind: k, a: c, b: q})
				t += int64(50 * time.Millisecond)
			}
		}
	}
	recs = recs[:s.Lines]
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].at < recs[j].at })
	// Attack events cut by the line count are not in the file.
	last := recs[len(recs)-1].at
	for _, m := range []map[netip.Addr][]Event{truth.Attackers, truth.Legit} {
		for a, evs := range m {
			kept := evs[:0]
			for _, e := range evs {
				if e.At.UnixNano() <= last {
					kept = append(kept, e)
				}
			}
			sort.SliceStable(kept, func(i, j int) bool { return kept[i].At.Before(kept[j].At) })
			m[a] = kept
		}
	}

	bw := bufio.NewWriterSize(w, 1<<20)
	var buf []byte
	for i := range recs {
		buf = format(buf[:0], &recs[i], attackers, users)
		truth.Bytes += int64(len(buf))
		if _, err := bw.Write(buf); err != nil {
			return truth, err
		}
	}
	truth.Lines = len(recs)
	return truth, bw.Flush()
}

// noAuthKind is the truth's kind of a no-auth line of the given form.
func noAuthKind(form int32) EventKind {
	if form%int32(len(noAuthForms)) == 0 {
		return NoAuthAtOnce
	}
	return NoAuth
}

var noAuthForms = [...]string{
	"pop3-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=%s, lip=198.18.0.1, session=<%s>",
	"imap-login: Disconnected: Connection closed (no auth attempts in 2 secs): user=<>, rip=%s, lip=198.18.0.1, session=<%s>",
	"pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=%s, lip=198.18.0.1, session=<%s>",
	"imap-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=%s, lip=198.18.0.1, session=<%s>",
	"pop3-login: Disconnected: Connection queue full (no auth attempts in 0 secs): user=<>, rip=%s, lip=198.18.0.1, session=<%s>",
	"imap-login: Disconnected: Connection closed: read(size=1026) failed: Connection reset by peer (no auth attempts in 1 secs): user=<>, rip=%s, lip=198.18.0.1, session=<%s>",
	"pop3-login: Disconnected: Connection closed (no auth attempts in 2 secs): user=<>, rip=%s, lip=198.18.0.1, TLS handshaking: Connection closed, session=<%s>",
	"imap-login: Disconnected: Connection closed (no auth attempts in 1 secs): user=<>, rip=%s, lip=198.18.0.1, TLS: Connection closed, session=<%s>",
}

var guessedUsers = [...]string{"admin", "info", "test", "sales"}

func sid(x int64) string {
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var s [16]byte
	for i := range s {
		s[i] = b64[x&63]
		x = x>>6 ^ x*0x5851f42d
	}
	return string(s[:])
}

func format(buf []byte, r *rec, attackers, users []netip.Addr) []byte {
	t := time.Unix(0, r.at)
	buf = t.AppendFormat(buf, time.Stamp)
	buf = append(buf, " mx "...)
	addr := func(i int32) string {
		if i < 0 {
			return users[-1-i].String()
		}
		return attackers[i].String()
	}
	client := func(c int32) (string, string) {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(64 + c>>8&63), byte(c)})
		if c%3 == 0 {
			return "unknown", ip.String()
		}
		return fmt.Sprintf("mail%d.example.net", c), ip.String()
	}
	qid := fmt.Sprintf("%09X", uint32(r.b))
	pid := 1000 + int(r.at/7%30000)
	switch r.kind {
	case rNoAuth:
		buf = fmt.Appendf(buf, "dovecot: "+noAuthForms[r.b%int32(len(noAuthForms))], addr(r.a), sid(r.at))
	case rBackend:
		buf = fmt.Appendf(buf, "dovecot: auth: passwd-file(%s,%s,<%s>): unknown user", guessedUsers[r.b%4], addr(r.a), sid(r.at))
	case rAuthFailed:
		buf = fmt.Appendf(buf, "dovecot: imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<%s>, method=PLAIN, rip=%s, lip=198.18.0.1, session=<%s>", guessedUsers[r.b%4], addr(r.a), sid(r.at))
	case rSASL:
		buf = fmt.Appendf(buf, "postfix/submission/smtpd[%d]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", pid, addr(r.a))
	case rLogin:
		svc := "imap-login"
		if r.b == 1 {
			svc = "pop3-login"
		}
		buf = fmt.Appendf(buf, "dovecot: %s: Login: user=<user%d@example.org>, method=PLAIN, rip=%s, lip=198.18.0.1, mpid=%d, TLS, session=<%s>", svc, -1-r.a, addr(r.a), pid, sid(r.at))
	case rLogout:
		buf = fmt.Appendf(buf, "dovecot: imap(user%d@example.org)<%d><%s>: Disconnected: Logged out in=%d out=%d deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0", r.a, pid, sid(r.at), 100+r.at%900, 1000+r.at%90000)
	case rSMTPConnect:
		n, ip := client(r.a)
		buf = fmt.Appendf(buf, "postfix/smtpd[%d]: connect from %s[%s]", pid, n, ip)
	case rSMTPClient:
		n, ip := client(r.a)
		buf = fmt.Appendf(buf, "postfix/smtpd[%d]: %s: client=%s[%s]", pid, qid, n, ip)
	case rCleanup:
		buf = fmt.Appendf(buf, "postfix/cleanup[%d]: %s: message-id=<%s@mail%d.example.net>", pid, qid, sid(r.at), r.a)
	case rQmgrFrom:
		buf = fmt.Appendf(buf, "postfix/qmgr[812]: %s: from=<news%d@mail%d.example.net>, size=%d, nrcpt=1 (queue active)", qid, r.a%50, r.a, 2000+r.at%80000)
	case rLMTP:
		buf = fmt.Appendf(buf, "postfix/lmtp[%d]: %s: to=<user%d@example.org>, relay=mx.example.org[private/dovecot-lmtp], delay=0.12, delays=0.05/0.01/0.01/0.05, dsn=2.0.0, status=sent (250 2.0.0 <user%d@example.org> %s Saved)", pid, qid, r.a%400, r.a%400, sid(r.at))
	case rQmgrRemoved:
		buf = fmt.Appendf(buf, "postfix/qmgr[812]: %s: removed", qid)
	case rSMTPDisconnect:
		n, ip := client(r.a)
		buf = fmt.Appendf(buf, "postfix/smtpd[%d]: disconnect from %s[%s] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5", pid, n, ip)
	case rDovecotLMTP:
		buf = fmt.Appendf(buf, "dovecot: lmtp(user%d@example.org)<%d><%s>: msgid=<%s@mail%d.example.net>: saved mail to INBOX", r.a%400, pid, sid(r.at), sid(r.at+1), r.a)
	case rResolveWarn:
		_, ip := client(r.a)
		buf = fmt.Appendf(buf, "postfix/smtpd[%d]: warning: hostname host-%d.example.com does not resolve to address %s: Name or service not known", pid, r.a, ip)
	case rAnvil:
		_, ip := client(r.a)
		buf = fmt.Appendf(buf, "postfix/anvil[811]: statistics: max connection rate 1/60s for (smtp:%s) at %s", ip, t.Format(time.Stamp))
	}
	return append(buf, '\n')
}
