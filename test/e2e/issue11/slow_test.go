//go:build e2e

package issue11

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
)

// slowPhase: only the slow attacker (harness.SlowAttack), one address
// opening a connection every SlowHold+SlowPause, which the log layer must
// ban (harness.CheckSlowBan).
//
// It is the log layer's test on a server that is not under attack, so it
// starts once the daemon has said the last attack's slot pressure is
// over (harness.Xdpguard.WaitPressureOver).
func (r *run) slowPhase(t *testing.T, x *harness.Xdpguard, watch *harness.BanWatch) {
	x.WaitPressureOver(t)
	cfg := r.w.SlowAttack()
	a := attack{name: "slow", sources: cfg.Sources, start: func(d time.Duration) (*harness.Attack, error) {
		return r.w.StartAttack("slow-attacker", cfg, d)
	}}
	res := r.phaseFor(t, a, "xdpguard", max(r.plen, harness.SlowLimit()), nil)
	res.Fate = computeFate(res, a.sources, func(s netip.Addr) (time.Time, bool) {
		if _, ok := watch.Get(s); !ok {
			return time.Time{}, false
		}
		return watch.FirstBan(s), true
	})
	if note := harness.CheckSlowBan(t, watch, res.AttackStats.Connected, res.Start); note != "" {
		res.Notes = append(res.Notes, note)
	}
	if s := res.Classes[classReturning]; s.Rate < 0.99 {
		t.Errorf("slow-attacker phase: %.2f%% of returning users' logins succeeded, want >= 99%%", 100*s.Rate)
	}
}

// finalChecks: no legitimate source was ever banned, by what status showed
// or by the daemon's own log, and the daemon is still running.
func (r *run) finalChecks(t *testing.T, x *harness.Xdpguard, watch *harness.BanWatch) {
	// Every ban status showed, by first sighting, goes with the last
	// xdpguard phase into results.json.
	if len(r.results) > 0 {
		last := r.results[len(r.results)-1]
		last.Bans = watch.All()
	}
	if n := watch.Errs(); n > 0 {
		t.Errorf("xdpguard status failed %d times while it was watched; bans may have gone unseen", n)
	}
	for a, b := range watch.FalseBans() {
		t.Errorf("legitimate source %s was banned: %+v", a, b)
	}
	bans := harness.ReadTimeline(x.Log()).Bans
	for _, a := range r.w.Legitimate() {
		for p, at := range bans {
			if p.Contains(a) {
				t.Errorf("xdpguard's log: legitimate source %s banned as %s at %s", a, p, at.Format(time.RFC3339Nano))
			}
		}
	}
	if !x.Running() {
		t.Errorf("xdpguard run exited during the test:\n%s", x.Log())
	}
	for _, p := range []*harness.Probe{r.returning, r.officeLogins, r.officeHold, r.webmail} {
		if _, err := p.Stop(); err != nil {
			t.Log(err)
		}
	}
}
