//go:build e2e

package issue11

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

// report prints the table and writes the raw figures, every attempt
// included, under build/e2e (or $E2E_OUT) for CI to keep.
func report(t *testing.T, results []*phaseResult) {
	if len(results) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %-14s %9s %17s %8s %8s %8s  %-30s %s\n", "attack", "defence", "returning", "p50/p99", "new",
		"office", "webmail", "attackers banned+starved", "legit banned")
	for _, r := range results {
		ret := r.Classes[classReturning]
		fmt.Fprintf(&b, "%-8s %-14s %8.1f%% %17s %7.1f%% %7.1f%% %7.1f%%  %-30s %d\n", r.Attack, r.Defence, 100*ret.Rate,
			ret.P50.Round(time.Millisecond).String()+"/"+ret.P99.Round(time.Millisecond).String(),
			100*r.Classes[classNew].Rate, 100*r.Classes[classOffice].Rate, 100*r.Classes[classWebmail].Rate,
			r.Fate, len(r.LegitBanned))
	}
	for _, r := range results {
		for _, c := range classes {
			if s := r.Classes[c]; s.OK < s.Attempts {
				fmt.Fprintf(&b, "%s: %s %s\n", r.name(), c, summaryLine(s))
			}
		}
		if r.OfficeDropped > 0 {
			fmt.Fprintf(&b, "%s: office IDLE connections dropped: %d\n", r.name(), r.OfficeDropped)
		}
		fmt.Fprintf(&b, "%s: attack dials/connected/server drops %d/%d/%d\n", r.name(), r.AttackStats.Dials, r.AttackStats.Connected, r.AttackStats.ServerDrops)
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "%s: %s\n", r.name(), n)
		}
		if r.Fate != nil && len(r.Fate.Neither) > 0 {
			fmt.Fprintf(&b, "%s: %d sources neither banned nor starved, e.g. %v\n", r.name(), len(r.Fate.Neither), firstAddrs(r.Fate.Neither, 5))
		}
		if r.Fate != nil && r.Fate.Queued > 0 {
			fmt.Fprintf(&b, "%s: %d of the starved sources still waited in an accept queue in the last %v\n", r.name(), r.Fate.Queued, starvedWindow)
		}
		for _, l := range r.LegitBanned {
			fmt.Fprintf(&b, "%s: LEGITIMATE SOURCE BANNED: %s\n", r.name(), l)
		}
	}
	t.Logf("legitimate logins by class (returning users every %v, new users every %v, %v deadline; p50/p99 of the returning users' successful logins; "+
		"starved: no login slot, no connection Dovecot accepted, in the phase's last %v):\n%s", harness.ProbeEvery, newUserEvery, harness.ProbeLimit, starvedWindow, b.String())
	harness.WriteResults(t, "issue11", results, b.String())
}

func summaryLine(s mailload.Summary) string {
	out := fmt.Sprintf("%d/%d ok (%.1f%%)", s.OK, s.Attempts, 100*s.Rate)
	for _, k := range slices.Sorted(maps.Keys(s.Failed)) {
		out += fmt.Sprintf("; %s failed %d", k, s.Failed[k])
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
