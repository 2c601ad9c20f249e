//go:build e2e

// The end-to-end test: a real Dovecot under two attacks (the seed's slot
// holders and issue 11's distributed trawler), without protection, with
// xdpguard, and (make bench-e2e) with fail2ban, while four classes of
// legitimate users log in. Run it with `make test-e2e`; it needs root and
// the Debian dovecot packages.
package issue11

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

func TestMain(m *testing.M) { harness.Main(m) }

// Sizes of the attacks and of the population. The seed's attack, the slow
// attacker and the returning users' probe are harness's (attacks.go),
// shared with the seed's test.
const (
	// Issue 11's trawler: 300+300 sources, one connection each, a new
	// USER or CAPABILITY every 3 s.
	trawlersV4 = 300
	trawlersV6 = 300
	trawlEvery = 3 * time.Second
	// Returning users: a login every harness.ProbeEvery over five users
	// who logged in before each attack. New users: one login a second,
	// each a new account from an address never seen before.
	newUserEvery  = time.Second
	newUsers      = 600 // 15 phase lengths: per attack fail2ban and none 1 each, xdpguard 3 and 4, slow 1; and a margin
	officeUsers   = 50
	officeHeld    = 2               // IDLE connections per office user (INBOX and one folder)
	officeEvery   = 5 * time.Second // one office user checks mail every 5 s: each every 4 min
	webmailUsers  = 20
	webmailEvery  = 50 * time.Millisecond // 20 logins a second
	starvedWindow = 10 * time.Second
)

func TestE2E(t *testing.T) {
	withF2B := harness.Prerequisites(t)
	r := newRun(t, harness.PhaseLen(t))
	defer func() { report(t, r.results) }()

	attacks := selectAttacks(t, []attack{r.seedAttack(t), r.trawlAttack()})
	if withF2B {
		// First, as in the seed's test.
		r.fail2banPhases(t, attacks)
	}
	for _, a := range attacks {
		none := r.phase(t, a, "none", nil)
		// The attack must hurt, or the other phases prove nothing.
		if rate := none.Classes[classReturning].Rate; rate > 0.90 {
			t.Errorf("%s without protection: %.1f%% of returning users' logins succeeded; the attack does not hurt", a.name, 100*rate)
		}
		r.settle(t)
	}
	x, err := r.w.StartXdpguard()
	if err != nil {
		t.Fatal(err)
	}
	watch := r.w.WatchBans(x)
	defer watch.Stop()
	r.warmUp(t)
	for _, a := range attacks {
		res := r.xdpguardPhase(t, a, x, watch)
		checkXdpguard(t, res, a)
		r.settle(t)
	}
	if len(attacks) == 2 {
		r.slowPhase(t, x, watch)
	}
	watch.Stop()
	r.finalChecks(t, x, watch)
}

// newRun builds the world and starts the legitimate users who log in all
// along: the returning users, the NAT office and the webmail front end.
func newRun(t *testing.T, plen time.Duration) *run {
	w := harness.NewForTest(t, harness.Options{
		AttackersV4: harness.SeedAttackersV4, AttackersV6: harness.SeedAttackersV6,
		TrawlersV4: trawlersV4, TrawlersV6: trawlersV6,
		NewUsers: newUsers, OfficeUsers: officeUsers, WebmailUsers: webmailUsers, TLSProxies: officeUsers * officeHeld,
	}, "issue11")
	r := &run{w: w, plen: plen}
	r.startUsers(t)
	r.settle(t)
	return r
}

func (r *run) seedAttack(t *testing.T) attack {
	cfg := r.w.SeedAttack(t)
	// Three times as long under xdpguard: 120 new users' logins, so that
	// a single failure is still 99.2% (one in 40 failed in one of four
	// runs, and 97.5% is under the target).
	return attack{name: "seed", sources: r.w.Attackers, xdpguardPhases: 3, start: func(limit time.Duration) (*harness.Attack, error) {
		return r.w.StartAttack("attack", cfg, limit)
	}}
}

func (r *run) trawlAttack() attack {
	cfg := mailload.TrawlConfig{Sources: r.w.Trawlers, Every: trawlEvery}
	// Four times as long under xdpguard: the slots Dovecot can start a
	// second go to the users first, so the last queued trawlers reach one,
	// are evicted and refused, and ban themselves on the SYN rate, 56-113 s
	// in on a 2-core machine (README, issue 11).
	return attack{name: "trawler", sources: r.w.Trawlers, xdpguardPhases: 4, start: func(limit time.Duration) (*harness.Attack, error) {
		return r.w.StartTrawl("trawl", cfg, limit)
	}}
}

// selectAttacks keeps the attacks named in $E2E_ATTACKS (comma-separated,
// "seed,trawler"), to study one attack; the slow attacker's phase runs
// only with both. Unset: both.
func selectAttacks(t *testing.T, all []attack) []attack {
	s := os.Getenv("E2E_ATTACKS")
	if s == "" {
		return all
	}
	var out []attack
	for _, name := range strings.Split(s, ",") {
		i := slices.IndexFunc(all, func(a attack) bool { return a.name == name })
		if i < 0 {
			t.Fatalf("E2E_ATTACKS=%q: no attack %q (seed, trawler)", s, name)
		}
		out = append(out, all[i])
	}
	return out
}
