package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/state"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

var probeSeq int

// testDaemon is the daemon run in this process on the real kernel, with
// no interface attached: log lines in, bans in the kernel maps out.
type testDaemon struct {
	t       *testing.T
	c       config.Config
	guard   *datapath.Guard
	log     *os.File
	stopped bool
	stop    func()
}

// startDaemon starts the daemon on a pin root and state directory that
// survive restarts within the test (pass the previous one's c to reuse).
func startDaemon(t *testing.T, c *config.Config) *testDaemon {
	t.Helper()
	testutil.RequireRoot(t)
	if c == nil {
		c = newTestConfig(t)
	}
	det := logwatch.DefaultConfig()
	det.Files = c.Logs.Files
	logs := &testutil.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			out := logs.String()
			t.Logf("daemon log (last 4 KiB):\n%s", out[max(0, len(out)-4096):])
		}
	})
	g, cancel, done := runDaemon(t, *c, det,
		Options{Tick: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	f, err := os.OpenFile(c.Logs.Files[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	d := &testDaemon{t: t, c: *c, guard: g, log: f}
	// The follower starts at the end of the file, so lines written before
	// it is there are never read: write no-auth lines of a fresh probe
	// source until it is banned, which only lines read live can do (the
	// history read at start learns logins and scores nothing). A busy CI
	// machine gets 30 s.
	probeSeq++
	probe := netip.AddrFrom4([4]byte{198, 18, 99, byte(probeSeq)})
	for i, deadline := 0, time.Now().Add(30*time.Second); ; i++ {
		d.noAuth(probe, i)
		if _, ok, err := g.BanOf(probe); err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("the daemon does not read its log")
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stop = func() {
		if d.stopped {
			return
		}
		d.stopped = true
		f.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
		g.Close()
	}
	t.Cleanup(d.stop)
	return d
}

func (d *testDaemon) write(format string, args ...any) {
	d.t.Helper()
	if _, err := fmt.Fprintf(d.log, "%s mx "+format+"\n", append([]any{time.Now().Format(time.Stamp)}, args...)...); err != nil {
		d.t.Fatal(err)
	}
}

func (d *testDaemon) login(a netip.Addr, i int) {
	d.write("dovecot: imap-login: Login: user=<u%d>, method=PLAIN, rip=%s, lip=198.18.0.1, mpid=%d, session=<L%d>", i, a, 1000+i, i)
}

func (d *testDaemon) noAuth(a netip.Addr, i int) {
	d.write("dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=%s, lip=198.18.0.1, session=<N%d>", a, i)
}

func (d *testDaemon) authFailed(a netip.Addr, i int) {
	d.write("dovecot: imap-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<u%d>, method=PLAIN, rip=%s, lip=198.18.0.1, session=<F%d>", i, a, i)
}

// banned waits until a is banned (or up to 30 s, generous for a busy CI
// machine) and reports whether it was.
func (d *testDaemon) banned(a netip.Addr) (datapath.Ban, bool) {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, ok, err := d.guard.BanOf(a)
		if err != nil {
			d.t.Fatal(err)
		}
		if ok || time.Now().After(deadline) {
			return b, ok
		}
	}
}

// bannedNow reports whether a is banned now: after settle, the daemon has
// acted on every line written before.
func (d *testDaemon) bannedNow(a netip.Addr) (datapath.Ban, bool) {
	d.t.Helper()
	b, ok, err := d.guard.BanOf(a)
	if err != nil {
		d.t.Fatal(err)
	}
	return b, ok
}

// settle waits until the daemon has read everything written so far: a
// marker source's ban is the last thing it does.
func (d *testDaemon) settle(marker netip.Addr) {
	d.t.Helper()
	for i := range 10 {
		d.noAuth(marker, i)
	}
	if _, ok := d.banned(marker); !ok {
		d.t.Fatal("marker source not banned: the daemon is not reading the log")
	}
}

// savedKnownGood waits for the state file to list want among its
// known-good sources.
func savedKnownGood(t *testing.T, dir string, want netip.Prefix) bool {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, _ := state.Store{Dir: dir}.Load()
		for _, k := range st.KnownGood {
			if k.Prefix == want {
				return true
			}
		}
	}
	return false
}

// A source that logged in is never banned for evidence of held slots, and
// that survives a restart: the known-good store is saved and restored.
// Failed passwords still ban it.
func TestKnownGoodSparedAndPersisted(t *testing.T) {
	d := startDaemon(t, nil)
	nat := netip.MustParseAddr("198.18.61.1")   // a NAT office: 50 users
	guess := netip.MustParseAddr("198.18.61.2") // logs in, then guesses passwords
	stranger := netip.MustParseAddr("198.18.61.3")
	for i := range 50 {
		d.login(nat, i)
	}
	d.login(guess, 0)
	if !savedKnownGood(t, d.c.StateDir, netip.PrefixFrom(nat, 32)) {
		t.Fatal("the NAT office is not in the state file's known_good")
	}
	if !kernelKnows(t, d.guard, netip.PrefixFrom(nat, 32)) {
		t.Error("the kernel was not told the NAT office is known-good")
	}
	// A stale entry the kernel holds but the store does not (it expired
	// while the daemon was down) is removed at the next start.
	stale := netip.MustParsePrefix("198.18.61.99/32")
	if err := d.guard.PutKnownGood([]netip.Prefix{stale}); err != nil {
		t.Fatal(err)
	}
	d.stop()

	d = startDaemon(t, &d.c)
	if !kernelKnows(t, d.guard, netip.PrefixFrom(nat, 32)) || kernelKnows(t, d.guard, stale) {
		t.Error("after a restart the kernel's known-good set is not the saved one")
	}
	// Thunderbird's five connections per user, aborted by a busy server:
	// 250 no-auth lines from the office, 25 times the ban threshold.
	for i := range 250 {
		d.noAuth(nat, i)
	}
	// Failed passwords ban a known-good source at three times the
	// threshold: 10 failed logins (two decisions) do not, 15 do.
	for i := range 10 {
		d.authFailed(guess, i)
	}
	d.settle(stranger)
	if b, ok := d.bannedNow(nat); ok {
		t.Errorf("the NAT office was banned after a restart: %+v", b)
	}
	if _, ok := d.bannedNow(guess); ok {
		t.Error("a known-good source banned after 10 failed passwords")
	}
	for i := range 5 {
		d.authFailed(guess, 10+i)
	}
	if _, ok := d.banned(guess); !ok {
		t.Error("a known-good source that fails 15 passwords is not banned")
	}
}

// A webmail front end opens a connection per request, 20 per second, and
// each one logs in: it is never banned by the log layer.
func TestWebmailNeverBanned(t *testing.T) {
	d := startDaemon(t, nil)
	web := netip.MustParseAddr("2001:db8:62::80")
	for i := range 200 {
		d.login(web, i)
		if i%20 == 19 {
			// A request cut off before it authenticated, now and then.
			d.noAuth(web, i)
		}
	}
	d.settle(netip.MustParseAddr("198.18.62.9"))
	if b, ok := d.bannedNow(web); ok {
		t.Errorf("webmail front end banned: %+v", b)
	}
}

// IPv6: three /64s of one /48 banned within the window ban the /48, unless
// it holds a known-good source.
func TestIPv6Escalation(t *testing.T) {
	d := startDaemon(t, nil)
	for n := range 3 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8:63:%d::1", n+1))
		for i := range 10 {
			d.noAuth(a, i)
		}
	}
	if !d.cidrBanned(netip.MustParsePrefix("2001:db8:63::/48"), 5*time.Second) {
		t.Fatal("the /48 of three banned /64s is not banned")
	}

	// A /48 with a user in it is never banned whole.
	d.login(netip.MustParseAddr("2001:db8:64:aaaa::7"), 0)
	time.Sleep(200 * time.Millisecond)
	for n := range 3 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8:64:%d::1", n+1))
		for i := range 10 {
			d.noAuth(a, i)
		}
	}
	d.settle(netip.MustParseAddr("198.18.64.9"))
	if d.cidrBanned(netip.MustParsePrefix("2001:db8:64::/48"), 0) {
		t.Error("a /48 holding a known-good source was banned")
	}
	if _, ok := d.banned(netip.MustParseAddr("2001:db8:64:3::1")); !ok {
		t.Error("the offending /64s themselves are still banned")
	}
}

// cidrBanned waits up to wait for a ban of exactly p.
func (d *testDaemon) cidrBanned(p netip.Prefix, wait time.Duration) bool {
	d.t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		bans, err := d.guard.Bans()
		if err != nil {
			d.t.Fatal(err)
		}
		for _, b := range bans {
			if b.Prefix == p {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func kernelKnows(t *testing.T, g *datapath.Guard, p netip.Prefix) bool {
	t.Helper()
	ps, err := g.KnownGood()
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(ps, p)
}

// newTestConfig is a configuration on a fresh pin root, state directory
// and empty log file, all removed when the test ends.
func newTestConfig(t *testing.T) *config.Config {
	t.Helper()
	c := baseConfig(t, "daemon")
	c.SlotHolders.Enabled = false
	return &c
}

// baseConfig is the defaults on a fresh pin root (named with label),
// state directory and empty log file, all removed when the test ends, and
// with no connections killed.
func baseConfig(tb testing.TB, label string) config.Config {
	tb.Helper()
	dir := tb.TempDir()
	pins := testutil.PinRoot(tb, label)
	tb.Cleanup(func() { // before PinRoot's removal
		if g, err := datapath.Open(filepath.Join(pins, "pins")); err == nil {
			g.DetachAll()
			g.Close()
		}
	})
	c := config.Default()
	c.PinRoot = filepath.Join(pins, "pins")
	c.StateDir = filepath.Join(dir, "state")
	c.Logs.Files = []string{filepath.Join(dir, "maillog")}
	c.KillConnections = false // no namespace: sockdestroy has its own tests
	os.WriteFile(c.Logs.Files[0], nil, 0o644)
	return c
}

// runDaemon runs the daemon in this process, with no interface attached,
// and waits until its maps are pinned. It returns the pinned maps, the
// cancel that stops the daemon and the channel that then yields what Run
// returned.
func runDaemon(tb testing.TB, c config.Config, det logwatch.Config, opts Options) (*datapath.Guard, context.CancelFunc, <-chan error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Config: c, Detect: det}, opts, nil)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			cancel()
			tb.Fatalf("daemon exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			tb.Fatal("daemon did not start")
		}
		if g, err := datapath.Open(c.PinRoot); err == nil {
			return g, cancel, done
		}
	}
}

// The logins already in the log when the daemon starts make their sources
// known-good (within the retention); the attack lines beside them ban no
// one.
func TestKnownGoodFromHistory(t *testing.T) {
	c := newTestConfig(t)
	now := time.Now().UTC()
	var hist []byte
	at := func(d time.Duration) string { return now.Add(-d).Format("2006-01-02T15:04:05.000000-07:00") }
	hist = fmt.Appendf(hist, "%s mx dovecot: imap-login: Login: user=<a>, method=PLAIN, rip=198.18.95.1, lip=198.18.0.1, mpid=1, session=<h1>\n", at(time.Hour))
	hist = fmt.Appendf(hist, "%s mx dovecot: imap-login: Login: user=<b>, method=PLAIN, rip=198.18.95.2, lip=198.18.0.1, mpid=2, session=<h2>\n", at(40*24*time.Hour))
	hist = fmt.Appendf(hist, "%s mx postfix/submission/smtpd[9]: 4F2Y3k1x2Cz9sW: client=unknown[2001:db8:95::1], sasl_method=PLAIN, sasl_username=c\n", at(2*time.Hour))
	for i := range 20 {
		hist = fmt.Appendf(hist, "%s mx dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=198.18.95.3, lip=198.18.0.1, session=<n%d>\n", at(time.Minute), i)
	}
	if err := os.WriteFile(c.Logs.Files[0], hist, 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, c)
	for p, want := range map[string]bool{"198.18.95.1/32": true, "2001:db8:95::/64": true, "198.18.95.2/32": false} {
		if got := kernelKnows(t, d.guard, netip.MustParsePrefix(p)); got != want {
			t.Errorf("%s known-good %v, want %v", p, got, want)
		}
	}
	d.settle(netip.MustParseAddr("198.18.95.9"))
	if _, ok := d.bannedNow(netip.MustParseAddr("198.18.95.3")); ok {
		t.Error("an old attack line banned someone at start-up")
	}
}

// The victims of a full server are never banned by the log layer: a
// client that has never logged in (a new user, not known-good) and keeps
// retrying against full accept queues leaves only the lines of clients
// that gave up waiting, which Dovecot writes when it finally takes the
// closed connection. (Dovecot's "Connection queue full" cuts the oldest
// pre-auth connection, which a real client, logged in within milliseconds
// of its banner, is not; in a flood those lines are the bots'.)
// (The kernel side, retransmitted and admission-dropped SYNs never
// counted, is datapath's TestRetransmittedSYNsOverVeth and
// TestAdmission.)
func TestFullServerVictimNeverBanned(t *testing.T) {
	d := startDaemon(t, nil)
	for _, victim := range []netip.Addr{netip.MustParseAddr("198.18.63.7"), netip.MustParseAddr("2001:db8:63:1::7")} {
		for i := range 40 {
			switch i % 3 {
			case 0:
				d.write("dovecot: imap-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=%s, lip=198.18.0.1, session=<V%d>", victim, i)
			case 1:
				d.write("dovecot: imap-login: Disconnected: Connection closed (disconnected before auth was ready, waited 0 secs): user=<>, rip=%s, lip=198.18.0.1, session=<V%d>", victim, i)
			case 2:
				d.write("dovecot: imap-login: Login aborted: Connection closed (no auth attempts in 0 secs) (no_auth_attempts): user=<>, rip=%s, lip=192.0.2.1, session=<V%d>", victim, i)
			}
		}
	}
	// Control: a slot holder Dovecot evicts after seconds, three times,
	// is banned by the same daemon (evictions are evidence).
	holder := netip.MustParseAddr("198.18.63.9")
	for i := range evictBan {
		d.write("dovecot: pop3-login: Disconnected: Connection queue full (auth failed, 3 attempts in 9 secs): user=<admin%d>, method=PLAIN, rip=%s, lip=198.18.0.1, session=<H%d>", i, holder, i)
	}
	if _, ok := d.banned(holder); !ok {
		t.Fatal("a source Dovecot evicted three times after seconds is not banned")
	}
	d.settle(netip.MustParseAddr("198.18.63.10"))
	for _, victim := range []netip.Addr{netip.MustParseAddr("198.18.63.7"), netip.MustParseAddr("2001:db8:63:1::7")} {
		if b, ok := d.bannedNow(victim); ok {
			t.Errorf("victim %s of a full server banned: %+v", victim, b)
		}
	}
}
