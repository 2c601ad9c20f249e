package logwatch

import (
	"fmt"
	"testing"
	"time"
)

// Clients that gave up waiting in a full accept queue are never banned for
// it: Dovecot logs them as closed in 0 seconds. A silent holder, closed
// after seconds, still scores.
func TestClientLeftAtOnceWeighsNothing(t *testing.T) {
	e := newEngine(t, nil)
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	shapes := []string{
		"Dec  2 03:00:00 mx dovecot: imap-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=198.18.92.1, lip=198.18.0.1, session=<s%d>",
		"Dec  2 03:00:00 mx dovecot: imap-login: Disconnected: Connection closed: read(size=1026) failed: Connection reset by peer (no auth attempts in 0 secs): user=<>, rip=198.18.92.1, lip=198.18.0.1, session=<s%d>",
		"2026-12-02T03:00:00.000001+00:00 mx dovecot[77]: imap-login: Login aborted: Connection closed (no auth attempts in 0 secs) (no_auth_attempts): user=<>, rip=198.18.92.1, lip=192.0.2.1, session=<s%d>",
		"Dec  2 03:00:00 mx dovecot: imap-login: Disconnected: Connection closed (disconnected before auth was ready, waited 0 secs): user=<>, rip=198.18.92.1, lip=198.18.0.1, session=<s%d>",
	}
	for i := range 60 {
		r := e.Process(fmt.Appendf(nil, shapes[i%len(shapes)], i), "", t0.Add(time.Duration(i)*time.Second))
		if !r.Matched || (r.Kind != KindNoAuth && r.Kind != KindProbe) {
			t.Fatalf("line %d not counted as no-auth: %+v", i, r)
		}
		if r.Decision != nil {
			t.Fatalf("banned for clients that left at once: %+v", r.Decision)
		}
	}
	for i := range 10 {
		line := fmt.Sprintf("Dec  2 03:00:00 mx dovecot: imap-login: Disconnected: Connection closed (no auth attempts in 3 secs): user=<>, rip=198.18.92.2, lip=198.18.0.1, session=<h%d>", i)
		if r := e.Process([]byte(line), "", t0.Add(time.Duration(i)*time.Second)); i == 9 && r.Decision == nil {
			t.Fatal("a source whose connections stayed silent for 3 s is not banned")
		}
	}
	// Waiting for the auth process for seconds is still a probe.
	for i := range 10 {
		line := fmt.Sprintf("Dec  2 03:00:00 mx dovecot: imap-login: Disconnected: Connection closed (disconnected before auth was ready, waited 4 secs): user=<>, rip=198.18.92.4, lip=198.18.0.1, session=<p%d>", i)
		if r := e.Process([]byte(line), "", t0.Add(time.Duration(i)*time.Second)); i == 9 && r.Decision == nil {
			t.Fatal("a source that waited 4 s for auth ten times is not banned")
		}
	}
	// A user name cannot make a line weigh nothing.
	if clientLeftAtOnce([]byte("Disconnected: Inactivity (no auth attempts in 180 secs): user=<Connection closed (no auth attempts in 0 secs)>, rip=198.18.92.3")) {
		t.Error("the user name chose the weight")
	}
}
