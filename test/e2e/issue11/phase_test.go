//go:build e2e

package issue11

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

// The classes of legitimate users, each reported on its own.
const (
	classReturning = "returning" // logged in before the attack began
	classNew       = "new"       // first login during the attack, from a fresh address
	classOffice    = "office"    // 50 users behind one NAT address, IDLE connections held
	classWebmail   = "webmail"   // one address, 20 IMAP logins a second
)

var classes = []string{classReturning, classNew, classOffice, classWebmail}

// attack is one of the attacks every defence faces.
type attack struct {
	name    string
	sources []netip.Addr
	start   func(limit time.Duration) (*harness.Attack, error)
	// xdpguardPhases is how many phase lengths its xdpguard phase runs:
	// enough logins for a rate of 99% to be measured (a 40 s phase has 40
	// new users' logins: one failure is 97.5%), and time for every source
	// to end up banned or starved, which the phase asserts.
	xdpguardPhases int
}

// run is the world and the users who log in all along.
type run struct {
	w    *harness.World
	plen time.Duration
	// Background users, one child each, running for the whole test.
	returning, officeLogins, officeHold, webmail *harness.Probe
	newNext                                      int // the next unused new user
	results                                      []*phaseResult
}

// phaseResult is one row of the table, and of the raw results file.
type phaseResult struct {
	Attack  string    `json:"attack"`
	Defence string    `json:"defence"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// Classes summarises each class of users' logins started in the phase.
	Classes map[string]mailload.Summary `json:"classes"`
	// OfficeDropped counts the office's authenticated IDLE connections
	// lost during the phase.
	OfficeDropped int                  `json:"office_dropped"`
	AttackStats   mailload.AttackStats `json:"attack_stats"`
	Fate          *fate                `json:"fate,omitempty"`
	LegitBanned   []string             `json:"legit_banned,omitempty"`
	Notes         []string             `json:"notes,omitempty"`
	Bans          []harness.SeenBan    `json:"bans,omitempty"` // every ban status showed, by first sighting
	Attempts      []mailload.Attempt   `json:"attempts"`
	conns         *connWatch
	heldByBanned  map[netip.Addr]int // xdpguard: banned sources still holding connections at the end
	pressure      string             // xdpguard: from when in the phase its log reported slot pressure
}

func (p *phaseResult) name() string { return p.Attack + " / " + p.Defence }

func (r *run) startUsers(t *testing.T) {
	w := r.w
	var err error
	start := func(name string, cfg mailload.ProbeConfig) *harness.Probe {
		cfg.Deadline = harness.ProbeLimit
		p, err := w.StartLogins(name, cfg, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	r.returning = start("probe", mailload.ProbeConfig{Class: classReturning, Users: w.Users, Interval: harness.ProbeEvery})
	r.webmail = start("webmail", mailload.ProbeConfig{Class: classWebmail, Users: w.Webmail, Interval: webmailInterval(t), Protos: []string{"imap"}})
	r.officeLogins = start("office", mailload.ProbeConfig{Class: classOffice, Users: w.Office, Interval: officeEvery, Protos: []string{"imap"}})
	r.officeHold, err = w.StartHold("office-idle", mailload.HoldConfig{
		// A mail client that keeps a folder open waits longer for it
		// than a user at a login prompt, and pauses before it retries.
		ProbeConfig: mailload.ProbeConfig{Class: classOffice, Users: w.Office, Deadline: 30 * time.Second},
		PerUser:     officeHeld, Stagger: 200 * time.Millisecond, Retry: 5 * time.Second,
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
}

// startNewUsers starts one login a second, each by a new user from a new
// address, for the phase's length.
func (r *run) startNewUsers(t *testing.T, name string, d time.Duration) *harness.Probe {
	n := int(d / newUserEvery)
	if r.newNext+n > len(r.w.NewUsers) {
		t.Fatalf("out of new users: %d used, %d more wanted, %d exist (shorten E2E_PHASE or raise newUsers)", r.newNext, n, len(r.w.NewUsers))
	}
	users := r.w.NewUsers[r.newNext : r.newNext+n]
	r.newNext += n
	p, err := r.w.StartLogins("new-"+name, mailload.ProbeConfig{Class: classNew, Users: users, Interval: newUserEvery,
		Deadline: harness.ProbeLimit, Count: n, ProtoByAttempt: true}, d+time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// phase runs attack a for the phase's length while every class of user
// logs in, and collects the figures. before, if set, runs while the attack
// still runs, just before the phase ends.
func (r *run) phase(t *testing.T, a attack, defence string, before func(*phaseResult)) *phaseResult {
	return r.phaseFor(t, a, defence, r.plen, before)
}

func (r *run) phaseFor(t *testing.T, a attack, defence string, d time.Duration, before func(*phaseResult)) *phaseResult {
	t.Helper()
	res := &phaseResult{Attack: a.name, Defence: defence, Start: time.Now()}
	nu := r.startNewUsers(t, a.name+"-"+defence, d)
	res.conns = newConnWatch(r.w, a.sources)
	at, err := a.start(d + time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if before != nil {
		before(res)
	}
	res.End = time.Now()
	// Logins still in flight are reported when they end, up to the
	// deadline later; the attack goes on until then, so that they count,
	// and count under the attack they started in.
	time.Sleep(harness.InFlight)
	res.conns.stop()
	if med, top := res.conns.queues(); top > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("accept queues (sampled every %v): median %d, largest %d waiting", connSampleEvery, med, top))
	}
	if res.AttackStats, err = at.Stop(); err != nil {
		t.Error(err)
	}
	news := nu.Wait()
	var failed []string
	for _, a := range news {
		if !a.OK {
			failed = append(failed, fmt.Sprintf("%.1f s (%s: %s)", a.Start.Sub(res.Start).Seconds(), a.Proto, a.Err))
		}
	}
	if len(failed) > 0 {
		res.Notes = append(res.Notes, "new users' failed logins started "+strings.Join(failed, ", ")+" into the phase")
	}
	r.collect(res, news)
	r.results = append(r.results, res)
	s := res.Classes[classReturning]
	t.Logf("phase %q: returning %d/%d (p99 %v), new %.1f%%, office %.1f%%, webmail %.1f%%; attack %+v", res.name(),
		s.OK, s.Attempts, s.P99.Round(time.Millisecond), 100*res.Classes[classNew].Rate,
		100*res.Classes[classOffice].Rate, 100*res.Classes[classWebmail].Rate, res.AttackStats)
	return res
}

// collect sorts the phase's attempts by class.
func (r *run) collect(res *phaseResult, news []mailload.Attempt) {
	by := map[string][]mailload.Attempt{
		classReturning: r.returning.Between(res.Start, res.End),
		classNew:       news,
		classOffice:    append(r.officeLogins.Between(res.Start, res.End), r.officeHold.Between(res.Start, res.End)...),
		classWebmail:   r.webmail.Between(res.Start, res.End),
	}
	res.Classes = map[string]mailload.Summary{}
	for _, c := range classes {
		res.Classes[c] = mailload.Summarize(by[c])
		res.Attempts = append(res.Attempts, by[c]...)
	}
	for _, a := range by[classOffice] {
		if a.Err == mailload.HeldDropped {
			res.OfficeDropped++
		}
	}
}

// settle waits until the server holds no attacker connection, not even a
// closed one still waiting in an accept queue, and every returning user,
// the office and the webmail have logged in again, so a phase does not
// inherit the last one's attack.
//
// The queues matter: when an attack stops, the connections its bots had
// queued (on the IPv6 sockets, which Dovecot serves last) stay queued,
// closed (close-wait), until Dovecot has accepted them, and IPv6 users
// wait behind them.
func (r *run) settle(t *testing.T) {
	t.Helper()
	legit := map[netip.Addr]bool{}
	for _, a := range r.w.Legitimate() {
		legit[a] = true
	}
	// Generous: a busy machine drains a closed attack slowly (Dovecot
	// starts its login processes one at a time); a quiet one in seconds.
	end := time.Now().Add(180 * time.Second)
	for {
		socks, err := r.w.Sockets("established", "close-wait")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for a, c := range socks {
			if !legit[a] {
				n += c
			}
		}
		// Below xdpguard's pressure mark (20 waiting): legitimate
		// traffic alone must not look like an attack when one starts.
		queued, err := r.w.Waiting()
		if err != nil {
			t.Fatal(err)
		}
		// Logins report when they end: on a busy machine the last
		// seconds' are still in flight.
		ok, why := r.usersOK(time.Now().Add(-8 * time.Second))
		if n == 0 && queued < 10 && ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the server did not recover between phases: %d attacker connections left, %d queued in all; %s", n, queued, why)
		}
		time.Sleep(time.Second)
	}
}

// usersOK says whether, since from, every returning user has logged in
// and the office's and the webmail's logins all succeeded.
func (r *run) usersOK(from time.Time) (bool, string) {
	recent := r.returning.Since(from)
	users := map[netip.Addr]bool{}
	for _, a := range recent {
		if a.OK {
			users[a.Src] = true
		}
	}
	s := mailload.Summarize(recent)
	if s.Attempts == 0 || s.OK != s.Attempts || len(users) != len(r.w.Users) {
		return false, "returning users: " + summaryLine(s) + ", " + itoa(len(users)) + " of " + itoa(len(r.w.Users)) + " in"
	}
	// The office and the webmail are many logins a second: one slow
	// login on a busy machine must not hold the test up.
	for name, p := range map[string]*harness.Probe{"office": r.officeLogins, "webmail": r.webmail} {
		if s := mailload.Summarize(p.Since(from)); s.OK == 0 || s.Rate < 0.95 {
			return false, name + ": " + summaryLine(s)
		}
	}
	return true, ""
}

// warmUp waits, after xdpguard has started, until every returning user,
// the office and the webmail have logged in under its eyes: that is what
// makes them returning users to it. Then it leaves the daemon a moment to
// have read the log.
func (r *run) warmUp(t *testing.T) {
	t.Helper()
	since := time.Now()
	end := since.Add(60 * time.Second)
	for {
		time.Sleep(time.Second)
		ok, why := r.usersOK(since)
		if ok {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the users did not all log in within 60 s of xdpguard's start: %s", why)
		}
	}
	time.Sleep(2 * time.Second)
}

// webmailInterval is webmailEvery, or 1/$E2E_WEBMAIL_RATE: a machine that
// cannot spawn Dovecot's processes 40 times a second (an imap-login and an
// imap per login) besides the attack measures the attack no more.
func webmailInterval(t *testing.T) time.Duration {
	s := os.Getenv("E2E_WEBMAIL_RATE")
	if s == "" {
		return webmailEvery
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("E2E_WEBMAIL_RATE=%q: want logins per second, a positive integer", s)
	}
	return time.Second / time.Duration(n)
}
