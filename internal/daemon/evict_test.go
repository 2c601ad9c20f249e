package daemon

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/sockets"
)

// conn is a pre-auth connection whose client has left the floor unused
// for 10 s: the server spoke last, and the client acknowledged it.
func conn(remote string, cookie uint64, inode uint32) sockets.Conn {
	return sockets.Conn{Holder: sockets.Holder{Remote: netip.MustParseAddr(remote), Port: 110,
		Idle: 10 * time.Second, SinceAck: 10 * time.Second, SinceSent: 10 * time.Second, BytesAcked: 30}, Cookie: cookie, Inode: inode}
}

// Eviction takes the oldest pre-auth connections first, never one inside
// its grace period, never a spared (known-good) source's, and no more
// than asked.
func TestEvictionOrder(t *testing.T) {
	var w evictState
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	good := netip.MustParseAddr("198.18.70.1")
	spared := func(a netip.Addr) bool { return a == good }

	w.seen(t0, []sockets.Conn{conn("198.18.70.2", 1, 11), conn("198.18.70.1", 2, 12)})
	w.seen(t0.Add(2*time.Second), []sockets.Conn{conn("198.18.70.2", 1, 11), conn("198.18.70.1", 2, 12), conn("198.18.70.3", 3, 13)})
	all := []sockets.Conn{conn("198.18.70.2", 1, 11), conn("198.18.70.1", 2, 12), conn("198.18.70.3", 3, 13), conn("198.18.70.4", 4, 14)}
	w.seen(t0.Add(3*time.Second), all)
	cookies := func(cs []sockets.Conn) []uint64 {
		var out []uint64
		for _, c := range cs {
			out = append(out, c.Cookie)
		}
		return out
	}
	now := t0.Add(3500 * time.Millisecond)
	// Grace 1 s: cookie 4 (0.5 s old) is too young, 2 is known-good.
	if got := cookies(w.victims(all, 10, time.Second, now, spared)); !slices.Equal(got, []uint64{1, 3}) {
		t.Errorf("victims %v, want [1 3] (oldest first)", got)
	}
	if got := cookies(w.victims(all, 1, time.Second, now, spared)); !slices.Equal(got, []uint64{1}) {
		t.Errorf("one waiting: victims %v, want the oldest, [1]", got)
	}
	if got := w.victims(all, 10, 5*time.Second, now, spared); len(got) != 0 {
		t.Errorf("grace 5 s: victims %v, want none", cookies(got))
	}
	// The oldest client sent its login and waits for the server (it spoke
	// last): a login in progress is never cut, however old.
	waitingForServer := slices.Clone(all)
	waitingForServer[0].Idle, waitingForServer[0].SinceSent = 2*time.Second, 3*time.Second
	if got := cookies(w.victims(waitingForServer, 1, time.Second, now, spared)); !slices.Equal(got, []uint64{3}) {
		t.Errorf("victims %v, want [3]: 1 is waiting for the server", got)
	}
	// A connection that is gone is forgotten; if its cookie came back it
	// would be new.
	w.seen(now, all[1:])
	if _, ok := w.firstSeen[1]; ok {
		t.Error("a closed connection's first-seen time is kept")
	}
}

func TestQueueFull(t *testing.T) {
	for line, want := range map[string]bool{
		"dovecot: pop3-login: Disconnected: Connection queue full (no auth attempts in 1 secs): user=<>, rip=198.18.200.121, lip=198.18.0.1, session=<e/FVR1lhpYHGEsh5>":                                 true,
		"dovecot: pop3-login: Login aborted: Connection queue full (no auth attempts in 2 secs) (no_auth_attempts): user=<>, rip=203.0.113.42, lip=192.0.2.1, session=<R2x0Ih0C>":                        true,
		"dovecot: imap-login: Login aborted: Connection queue full (client_limit and process_limit was hit and this login session was killed.) (process_full): user=<>, rip=203.0.113.42, lip=192.0.2.1": true,
		"dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<Connection queue full>, rip=198.18.200.121, lip=198.18.0.1, session=<e/FVR1lhpYHGEsh5>":                     false,
		"dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<(process_full)>, rip=198.18.200.121":                                                                        false,
	} {
		if got := queueFull([]byte(line)); got != want {
			t.Errorf("%v, want %v: %s", got, want, line)
		}
	}
}
