package daemon

import (
	"bytes"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/sockets"
)

var (
	bot4  = netip.MustParseAddr("198.51.100.7")
	bot6a = netip.MustParseAddr("2001:db8:bad:1::1")
	bot6b = netip.MustParseAddr("2001:db8:bad:1::2") // the same /64 as bot6a
	user4 = netip.MustParseAddr("192.0.2.10")
	good4 = netip.MustParseAddr("192.0.2.99") // allowlisted
)

func testPrefix(a netip.Addr) (netip.Prefix, bool) {
	if a == good4 {
		return netip.Prefix{}, false
	}
	bits := 64
	if a.Is4() {
		bits = 32
	}
	p, _ := a.Prefix(bits)
	return p, true
}

// silent is a connection that got the greeting (or the reply to its USER:
// POP3 bots send one), acknowledged it, and said nothing since.
func silent(a netip.Addr, d time.Duration, received uint64) sockets.Holder {
	return sockets.Holder{Remote: a, Port: 143, Idle: d, SinceAck: d, SinceSent: d, BytesAcked: 30, Received: received}
}

func TestOffendersNormal(t *testing.T) {
	h := config.Default().SlotHolders // 2 connections silent for 5s, 32 bytes
	hs := []sockets.Holder{
		silent(bot4, 6*time.Second, 0), silent(bot4, 7*time.Second, 14), silent(bot4, 5*time.Second, 0),
		silent(bot6a, 6*time.Second, 0), silent(bot6b, 6*time.Second, 0), // two addresses, one /64
		silent(user4, 9*time.Second, 0),                                  // a phone idling on one connection
		silent(good4, 9*time.Second, 0), silent(good4, 9*time.Second, 0), // allowlisted
		// A client that has said more than a greeting's worth.
		silent(netip.MustParseAddr("192.0.2.20"), 9*time.Second, 33), silent(netip.MustParseAddr("192.0.2.20"), 9*time.Second, 300),
		// Silent 2 s only: not yet, without pressure.
		silent(netip.MustParseAddr("192.0.2.30"), 2*time.Second, 0), silent(netip.MustParseAddr("192.0.2.30"), 2*time.Second, 0),
	}
	got := offenders(hs, h, false, testPrefix)
	want := []holding{{netip.MustParsePrefix("198.51.100.7/32"), 3}, {netip.MustParsePrefix("2001:db8:bad:1::/64"), 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("offenders = %v, want %v", got, want)
	}
}

func TestOffendersUnderPressure(t *testing.T) {
	h := config.Default().SlotHolders // under pressure: 1s after the acknowledgement
	fast := netip.MustParseAddr("192.0.2.30")
	slowLink := netip.MustParseAddr("192.0.2.40")
	slowSrv := netip.MustParseAddr("192.0.2.45")
	tb := netip.MustParseAddr("192.0.2.50")
	hs := []sockets.Holder{
		silent(fast, 1200*time.Millisecond, 0), silent(fast, 1100*time.Millisecond, 14),
		// A client on a slow link: 1.5 s without data, but the greeting
		// is still unacknowledged, or was acknowledged just now.
		{Remote: slowLink, Idle: 1500 * time.Millisecond, SinceAck: 1500 * time.Millisecond, SinceSent: 1500 * time.Millisecond, Unacked: 1, BytesAcked: 0},
		{Remote: slowLink, Idle: 1500 * time.Millisecond, SinceAck: 20 * time.Millisecond, SinceSent: 1500 * time.Millisecond, BytesAcked: 30},
		// A server too busy to greet, or to answer a pipelined command:
		// the clients wait, and it is not their silence.
		{Remote: slowSrv, Idle: 2 * time.Second, SinceAck: 2 * time.Second, SinceSent: 2 * time.Second},
		{Remote: slowSrv, Idle: 1500 * time.Millisecond, SinceAck: 1500 * time.Millisecond, SinceSent: 2 * time.Second, BytesAcked: 30, Received: 15},
		// Thunderbird: five connections that sent CAPABILITY, STARTTLS and
		// a TLS ClientHello at once.
		silent(tb, 2*time.Second, 540), silent(tb, 2*time.Second, 540), silent(tb, 2*time.Second, 540),
		silent(tb, 2*time.Second, 540), silent(tb, 2*time.Second, 540),
		silent(user4, 3*time.Second, 0), // one idle connection is never enough
		silent(good4, 3*time.Second, 0), silent(good4, 3*time.Second, 0),
		// Not yet a second.
		silent(bot4, 900*time.Millisecond, 0), silent(bot4, 900*time.Millisecond, 0),
	}
	want := []holding{{netip.MustParsePrefix("192.0.2.30/32"), 2}}
	if got := offenders(hs, h, true, testPrefix); !reflect.DeepEqual(got, want) {
		t.Errorf("under pressure: offenders = %v, want %v", got, want)
	}
	if got := offenders(hs, h, false, testPrefix); len(got) != 0 {
		t.Errorf("without pressure: offenders = %v, want none", got)
	}
	// The pressure signal counts every quiet connection, allowlisted ones
	// too: they hold slots all the same.
	if n := quietCount(hs, h); n != 5 {
		t.Errorf("quietCount = %d, want 5", n)
	}
}

func TestOffendersBusiestFirst(t *testing.T) {
	h := config.Default().SlotHolders
	var hs []sockets.Holder
	for i, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		for range 2 + i%2*3 {
			hs = append(hs, silent(netip.MustParseAddr(a), 6*time.Second, 0))
		}
	}
	got := offenders(hs, h, false, testPrefix)
	want := []holding{{netip.MustParsePrefix("192.0.2.2/32"), 5}, {netip.MustParsePrefix("192.0.2.1/32"), 2}, {netip.MustParsePrefix("192.0.2.3/32"), 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("offenders = %v, want %v", got, want)
	}
}

func TestSlotPressure(t *testing.T) {
	p := config.Default().SlotHolders.Pressure // 20 connections, hold 1m
	var w slotWatch
	t0 := time.Unix(1000, 0)
	w.waiting, w.silent = 12, 7
	if w.note(t0, p) {
		t.Fatal("19 connections: pressure")
	}
	if on, _ := w.under(t0); on {
		t.Fatal("under pressure at 19")
	}
	// Waiting and silent connections add up.
	w.silent = 8
	if !w.note(t0, p) {
		t.Fatal("20 connections: no pressure")
	}
	if w.note(t0.Add(time.Second), p) {
		t.Error("pressure begun twice")
	}
	// It holds for a minute after it was last seen...
	w.waiting, w.silent = 0, 0
	w.note(t0.Add(time.Second), p)
	if on, ended := w.under(t0.Add(61 * time.Second)); !on || ended {
		t.Errorf("61s after the start, 60s after last seen: on %v, ended %v", on, ended)
	}
	// ...and ends once.
	if on, ended := w.under(t0.Add(62 * time.Second)); on || !ended {
		t.Errorf("after the hold: on %v, ended %v", on, ended)
	}
	if on, ended := w.under(t0.Add(63 * time.Second)); on || ended {
		t.Errorf("later: on %v, ended %v", on, ended)
	}
	// Connections 0 turns it off.
	p.Connections = 0
	w.waiting = 1000
	if w.note(t0, p) {
		t.Error("pressure with connections 0")
	}
}

// Dovecot's own "process_limit reached" warning is pressure, however few
// connections the queues and the scan saw: chatty bots that Dovecot cycles
// through its slots leave neither a queue nor silent connections.
func TestSlotPressureFromDovecot(t *testing.T) {
	var logs bytes.Buffer
	d := &Daemon{cfg: Config{Config: config.Default()}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	t0 := time.Now()
	line := []byte("Dec  2 05:41:19 mx dovecot: master: Warning: service(imap-login): process_limit (100) reached, client connections are being dropped")
	e, err := logwatch.New(logwatch.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	r := e.Process(line, "maillog", t0)
	if r.Pressure == nil {
		t.Fatalf("the master's warning is not pressure: %+v", r)
	}
	// A mail process's limit is reached by logged-in users: not the slots.
	d.dovecotFull(logwatch.Pressure{Service: "imap", Limit: "process_limit", Value: 1024}, t0)
	if on, _ := d.slots.under(t0); on {
		t.Fatal("service(imap)'s limit is login slot pressure")
	}
	d.slots.waiting, d.slots.silent = 0, 0
	d.dovecotFull(*r.Pressure, t0)
	if on, _ := d.slots.under(t0.Add(59 * time.Second)); !on {
		t.Fatalf("no pressure after Dovecot said imap-login is full; log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "login slots under pressure") || !strings.Contains(logs.String(), "dovecot_full=imap-login") {
		t.Errorf("the pressure is not logged with its cause:\n%s", logs.String())
	}
	// The warning counts once: the next check without it does not
	// extend the hold.
	d.notePressure(t0.Add(30 * time.Second))
	if on, _ := d.slots.under(t0.Add(61 * time.Second)); on {
		t.Error("pressure held past the hold without a new sign of it")
	}
	// Pressure detection off (connections 0): the warning changes nothing.
	d = &Daemon{cfg: Config{Config: config.Default()}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	d.cfg.SlotHolders.Pressure.Connections = 0
	d.dovecotFull(*r.Pressure, t0)
	if on, _ := d.slots.under(t0); on {
		t.Error("pressure from Dovecot's warning with slot_holders.pressure.connections 0")
	}
}

func TestSlotSettingsCapped(t *testing.T) {
	h := config.Default().SlotHolders
	if got := slotPeriod(h); got != 250*time.Millisecond {
		t.Errorf("slotPeriod = %v, want the pressure scan interval", got)
	}
	if got := pressureIdle(h); got != time.Second {
		t.Errorf("pressureIdle = %v", got)
	}
	// The pressure settings never make the detector slower.
	h.Pressure.ScanInterval, h.Pressure.Idle = 10*time.Second, 30*time.Second
	if got := slotPeriod(h); got != h.ScanInterval {
		t.Errorf("slotPeriod = %v, want scan_interval %v", got, h.ScanInterval)
	}
	if got := pressureIdle(h); got != h.Idle {
		t.Errorf("pressureIdle = %v, want idle %v", got, h.Idle)
	}
	h.Pressure.Connections = 0
	h.ScanInterval = 3 * time.Second
	if got := slotPeriod(h); got != 3*time.Second {
		t.Errorf("pressure off: slotPeriod = %v, want scan_interval", got)
	}
}
