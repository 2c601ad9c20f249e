//go:build e2e

// The end-to-end test: a real Dovecot under the real attack, without
// protection, with xdpguard, and (make bench-e2e) with fail2ban. Run it
// with `make test-e2e`; it needs root and the Debian dovecot packages.
package e2e

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The attack, the slow attacker and the probe are harness's (attacks.go),
// shared with issue 11's test. settleAfter is how much of a phase a
// log-based defence may take to learn of the attack.
const settleAfter = 10 * time.Second

// phaseResult is one row of the table, and of the raw results file.
type phaseResult struct {
	Name    string           `json:"name"`
	Start   time.Time        `json:"start"`
	End     time.Time        `json:"end"`
	Summary mailload.Summary `json:"summary"`
	// Settled leaves out the first settleAfter of the phase: the part of
	// the attack that comes before a log-based defence could have learnt of it.
	Settled  mailload.Summary     `json:"settled"`
	Attack   mailload.AttackStats `json:"attack"`
	Notes    []string             `json:"notes,omitempty"`
	Bans     []harness.SeenBan    `json:"bans,omitempty"` // every ban status showed, by first sighting
	Attempts []mailload.Attempt   `json:"attempts"`
}

func TestE2E(t *testing.T) {
	withF2B := harness.Prerequisites(t)
	e := newE2E(t)
	var results []*phaseResult
	defer func() { report(t, results) }()

	if withF2B {
		results = append(results, e.fail2banPhase())
	}
	// Phase 1: no protection. The attack must hurt, or it is not the
	// seed's attack and the other phases prove nothing.
	none := runPhase(t, e.w, e.probe, "no protection", e.attack, e.plen, nil)
	results = append(results, none)
	if none.Summary.Rate > 0.90 {
		t.Errorf("without protection %.1f%% of logins succeeded: the attack does not hurt, so it is not the seed's attack", 100*none.Summary.Rate)
	}
	settle(t, e.w, e.probe)

	// Phase 2: xdpguard run with default settings.
	x, err := e.w.StartXdpguard()
	if err != nil {
		t.Fatal(err)
	}
	watch := e.w.WatchBans(x)
	defer watch.Stop()
	xr := e.xdpguardPhase(x, watch, none)
	results = append(results, xr)

	// Phase 3: only the slow attacker, under the same daemon, once the
	// attack's slot pressure is over.
	x.WaitPressureOver(t)
	results = append(results, e.slowPhase(watch))

	watch.Stop()
	xr.Bans = watch.All()
	if n := watch.Errs(); n > 0 {
		t.Errorf("xdpguard status failed %d times while it was watched; bans may have gone unseen", n)
	}
	for a, b := range watch.FalseBans() {
		t.Errorf("legitimate user %s was banned: %+v", a, b)
	}
	if !x.Running() {
		t.Errorf("xdpguard run exited during the test:\n%s", x.Log())
	}
	if _, err := e.probe.Stop(); err != nil {
		t.Log(err)
	}
}

// runPhase runs the attack for d while the probe keeps logging in, and
// collects the phase's figures. before, if set, runs just before the
// attack stops.
func runPhase(t *testing.T, w *harness.World, probe *harness.Probe, name string, cfg mailload.AttackConfig, d time.Duration, before func()) *phaseResult {
	t.Helper()
	r := &phaseResult{Name: name, Start: time.Now()}
	a, err := w.StartAttack("attack", cfg, d+time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	if before != nil {
		before()
	}
	r.End = time.Now()
	// Logins still in flight are reported when they end, up to the
	// deadline later; the attack goes on until then, so that they count,
	// and count under the attack they started in.
	time.Sleep(harness.InFlight)
	if r.Attack, err = a.Stop(); err != nil {
		t.Error(err)
	}
	r.Attempts = probe.Between(r.Start, r.End)
	r.Summary = mailload.Summarize(r.Attempts)
	r.Settled = mailload.Summarize(probe.Between(r.Start.Add(settleAfter), r.End))
	t.Logf("phase %q: %d/%d logins (%.1f%%), p50 %v, p99 %v; attack: %+v", name, r.Summary.OK, r.Summary.Attempts,
		100*r.Summary.Rate, r.Summary.P50.Round(time.Millisecond), r.Summary.P99.Round(time.Millisecond), r.Attack)
	return r
}

// settle waits until no attacker connection is left on the server, none
// waits in its accept queues, and every user has logged in again, so a
// phase does not inherit the last one's attack.
//
// The queues matter: when an attack stops, the connections its bots had
// queued (on the IPv6 sockets, which Dovecot serves last) stay queued,
// closed, until Dovecot has accepted them, and IPv6 users wait behind
// them. Only logins that finished are reported, so a user stuck there
// shows as missing, not as failed: each user must have succeeded.
func settle(t *testing.T, w *harness.World, probe *harness.Probe) {
	t.Helper()
	legit := map[netip.Addr]bool{}
	for _, u := range w.Users {
		legit[u.Src] = true
	}
	end := time.Now().Add(60 * time.Second)
	for {
		est, err := w.Established()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for a, c := range est {
			if !legit[a] {
				n += c
			}
		}
		queued, err := w.Waiting()
		if err != nil {
			t.Fatal(err)
		}
		from := time.Now().Add(-3 * time.Second)
		recent := probe.Since(from)
		s := mailload.Summarize(recent)
		users := map[netip.Addr]bool{}
		for _, a := range recent {
			if a.OK {
				users[a.Src] = true
			}
		}
		if n == 0 && queued == 0 && s.Attempts > 0 && s.OK == s.Attempts && len(users) == len(w.Users) {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("the server did not recover between phases: %d attacker connections left, %d queued, %d/%d recent logins ok, %d of %d users logged in",
				n, queued, s.OK, s.Attempts, len(users), len(w.Users))
		}
		time.Sleep(time.Second)
	}
}

// report prints the table and writes the raw figures, every attempt
// included, under build/e2e (or $E2E_OUT) for CI to keep.
func report(t *testing.T, results []*phaseResult) {
	if len(results) == 0 {
		return
	}
	var b strings.Builder
	// Per family, because Dovecot serves its IPv4 listening socket first:
	// under attack the IPv6 users wait behind every queued IPv4 attacker.
	fmt.Fprintf(&b, "%-14s %8s %8s %8s %8s %10s %8s %8s  %s\n", "phase", "logins", "success", "p50", "p99",
		"after "+settleAfter.String(), "v4 users", "v6 users", "attack dials/connected")
	for _, r := range results {
		v4, v6 := mailload.SummarizeByFamily(r.Attempts)
		fmt.Fprintf(&b, "%-14s %8s %7.1f%% %8s %8s %9.1f%% %7.1f%% %7.1f%%  %d/%d\n", r.Name,
			strconv.Itoa(r.Summary.OK)+"/"+strconv.Itoa(r.Summary.Attempts), 100*r.Summary.Rate,
			r.Summary.P50.Round(time.Millisecond), r.Summary.P99.Round(time.Millisecond), 100*r.Settled.Rate,
			100*v4.Rate, 100*v6.Rate, r.Attack.Dials, r.Attack.Connected)
	}
	for _, r := range results {
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "%s: %s\n", r.Name, n)
		}
	}
	t.Logf("legitimate logins (probe every %v, %v deadline; latency of successful logins):\n%s", harness.ProbeEvery, harness.ProbeLimit, b.String())
	harness.WriteResults(t, "", results, b.String())
}
