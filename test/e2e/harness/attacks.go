package harness

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

// The attacks and the login probe both end-to-end tests run, defined once
// so that their figures compare.
const (
	// The seed's attack: 400 held connections against two login services
	// of 100 processes each is the seed's "hundreds"; 48+48 sources are
	// the "at least 64 attacker addresses, IPv4 and IPv6".
	SeedConns       = 400
	SeedAttackersV4 = 48
	SeedAttackersV6 = 48
	// The legitimate probe: a login every ProbeEvery, each given
	// ProbeLimit.
	ProbeEvery = 500 * time.Millisecond
	ProbeLimit = 5 * time.Second
	// InFlight is how long after a phase's end every login it started
	// has been reported: the deadline, and a second for the report.
	InFlight = ProbeLimit + time.Second
	// The slow attacker: one connection every 8 s (held 3 s, then a 5 s
	// pause), one address (Slow), far below the kernel's 20 SYNs per 10 s.
	SlowHold  = 3 * time.Second
	SlowPause = 5 * time.Second
)

// SeedAttack is the seed's attack on w: SeedConns connections, or
// $E2E_CONNS, held from w.Attackers.
func (w *World) SeedAttack(t testing.TB) mailload.AttackConfig {
	t.Helper()
	conns := SeedConns
	if s := os.Getenv("E2E_CONNS"); s != "" {
		var err error
		if conns, err = strconv.Atoi(s); err != nil {
			t.Fatalf("E2E_CONNS=%q: %v", s, err)
		}
	}
	return mailload.AttackConfig{Servers: w.Servers(), Sources: w.Attackers, Conns: conns}
}

// SlowAttack is the slow attacker on w. The SYN rate never catches it; the
// log layer must, no later than the connection that lifts its score to the
// threshold (its POP3 `USER` is logged as a failed authentication).
func (w *World) SlowAttack() mailload.AttackConfig {
	return mailload.AttackConfig{Servers: w.Servers(), Sources: []netip.Addr{Slow}, Conns: 1, Hold: SlowHold, Pause: SlowPause}
}

// slowDue is the slow attacker's connection that the log layer, with the
// default detection settings, must ban it on, and their threshold.
func slowDue() (due, threshold int) {
	lw := logwatch.DefaultConfig()
	return (lw.Threshold + lw.Weights["auth-failed"] - 1) / lw.Weights["auth-failed"], lw.Threshold
}

// SlowLimit is how long the slow attacker may take to be banned: until
// two connections after its due one.
func SlowLimit() time.Duration {
	due, _ := slowDue()
	return time.Duration(due+2) * (SlowHold + SlowPause)
}

// CheckSlowBan fails t unless watch saw the slow attacker banned by the log
// layer by its due connection; connected is how many of its connections got
// through, from start. It returns the table's note on the ban, "" after a
// failure.
func CheckSlowBan(t testing.TB, watch *BanWatch, connected int64, start time.Time) string {
	t.Helper()
	due, threshold := slowDue()
	ban, banned := watch.Get(Slow)
	switch {
	case !banned:
		t.Errorf("the slow attacker %s (%d connections) was not banned within %v", Slow, connected, SlowLimit())
	case ban.Origin != "log":
		t.Errorf("the slow attacker was banned by %q, want the log layer", ban.Origin)
	case connected > int64(due)+1:
		t.Errorf("the slow attacker got %d connections through; the ban was due on connection %d (threshold %d)", connected, due, threshold)
	default:
		return fmt.Sprintf("slow attacker %s (one connection per %v) banned by the log layer (%s) after %d connections, %.0f s after its first; due after %d",
			Slow, SlowHold+SlowPause, ban.Reason, connected, watch.FirstBan(Slow).Sub(start).Seconds(), due)
	}
	return ""
}
