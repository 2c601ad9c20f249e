package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// run --journal bans from journal entries, and after a restart reads on
// after the cursor it saved: the lines logged while it was down are read,
// the ones it had read are not read again.
func TestDaemonJournal(t *testing.T) {
	w := newDaemonWorld(t)
	j := testutil.StartJournald(t)
	w.logs = fmt.Sprintf("{files: [], journal: {enabled: true, identifiers: [dovecot], directory: %s}}", j.Dir())
	w.writeConfig(3)
	w.start()

	// journalctl starts at the end of the journal: log until the daemon
	// has read a line.
	for deadline := time.Now().Add(20 * time.Second); journalLines(t, w) == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon read nothing from the journal in 20s:\n%s", w.out.String())
		}
		j.Send("dovecot", "imap-login: Login: user=<alice>, method=PLAIN, rip=198.18.60.2, lip=198.18.60.1, mpid=1, TLS, session=<x>")
	}
	noAuth := func(ip string, n int) {
		for i := range n {
			j.Send("dovecot", fmt.Sprintf("pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=%s, lip=%s, session=<j%d>", ip, server, i))
		}
	}
	noAuth(attacker, 3)
	w.waitBanned(attacker, true)
	if r := w.why(t, attacker, func(r whyReport) bool { return len(r.Bans) == 1 && r.Bans[0].Detector != "" }); r.Bans[0].Detector != "dovecot-login" || r.Bans[0].Events != 3 {
		t.Errorf("why %s: %+v", attacker, r.Bans)
	}

	w.stop(syscall.SIGTERM)
	noAuth(attacker2, 3)
	w.start()
	w.waitLog("following the journal after the saved cursor")
	w.waitBanned(attacker2, true)
	// Exactly the three lines logged while it was down: none lost, none
	// of the earlier ones read twice.
	deadline := time.Now().Add(10 * time.Second)
	for journalLines(t, w) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the daemon read %d journal lines, want 3", journalLines(t, w))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // a later line read twice would show in the next status
	if n := journalLines(t, w); n != 3 {
		t.Fatalf("after the restart the daemon read %d journal lines, want 3", n)
	}
}

// journalLines is the daemon's count of journal lines, from status.
func journalLines(t *testing.T, w *daemonWorld) uint64 {
	d := w.daemonStatus(t)
	if d.Status == nil || !d.Running {
		return 0
	}
	for _, in := range d.Logs {
		if in.Kind == "journal" {
			return in.Lines
		}
	}
	return 0
}
