package logwatch

import (
	"fmt"
	"testing"
	"time"
)

func TestForgive(t *testing.T) {
	e := newEngine(t, nil)
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	decide := func(from int) *Decision {
		for i := range 10 {
			line := fmt.Sprintf("Dec  2 03:00:00 mx dovecot: pop3-login: Disconnected (no auth attempts in 3 secs): user=<>, rip=198.18.91.1, lip=198.18.0.1, session=<s%d>", from+i)
			if r := e.Process([]byte(line), "", t0.Add(time.Duration(from+i)*time.Second)); r.Decision != nil {
				return r.Decision
			}
		}
		return nil
	}
	d := decide(0)
	if d == nil || d.Offence != 1 {
		t.Fatalf("first decision %+v", d)
	}
	// Not forgiven, the source counts as banned: its next lines are skipped.
	if d2 := decide(10); d2 != nil {
		t.Fatalf("a banned source decided again: %+v", d2)
	}
	e.Forgive(d.Prefix, d.Time)
	d3 := decide(20)
	if d3 == nil || d3.Offence != 1 {
		t.Fatalf("after Forgive: %+v, want a fresh first offence", d3)
	}
	if c := e.Counters(); c.Offenders != 1 {
		t.Errorf("offenders %d, want 1 (the forgiven one gone, the new one in)", c.Offenders)
	}
}
