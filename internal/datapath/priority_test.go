package datapath

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cilium/ebpf"
	"github.com/xdpguard/xdpguard/internal/bpf"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// listenIn opens a TCP listener on addr inside ns, closed when the test ends.
func listenIn(t *testing.T, ns *testutil.NS, addr string) *net.TCPListener {
	t.Helper()
	var l net.Listener
	// Plain TCP, as Dovecot's: Go listens with MPTCP by default where the
	// kernel has it, and the socket map takes TCP sockets only.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	if err := ns.Do(func() (err error) { l, err = lc.Listen(t.Context(), "tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// acceptedFrom accepts one connection on l within wait and returns its
// remote address, or an invalid address if none was waiting.
func acceptedFrom(t *testing.T, l *net.TCPListener, wait time.Duration) (netip.Addr, netip.AddrPort) {
	t.Helper()
	l.SetDeadline(time.Now().Add(wait))
	c, err := l.AcceptTCP()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return netip.Addr{}, netip.AddrPort{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), c.LocalAddr().(*net.TCPAddr).AddrPort()
}

// socketOf duplicates l's descriptor; the caller closes it. Not l.File(): that makes the
// listener's socket blocking, and its deadlines stop working.
func socketOf(t *testing.T, l *net.TCPListener) *os.File {
	t.Helper()
	rc, err := l.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), "listener")
}

// attachIn attaches the steering program in w's server namespace, as
// that namespace's thread sees it (/var/run/netns is not there in every
// test kernel's VM), and detaches it when the test ends.
func attachIn(t *testing.T, w *kgWorld, g *Guard) *Priority {
	t.Helper()
	var p *Priority
	if err := w.srv.Do(func() (err error) { p, err = g.AttachPriority("/proc/thread-self/ns/net"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// setListener steers l's connections to ln; the map holds the socket, not
// the descriptor, which is closed at once.
func setListener(t *testing.T, p *Priority, l Listener, ln *net.TCPListener) {
	t.Helper()
	f := socketOf(t, ln)
	defer f.Close()
	if err := p.SetListener(l, f); err != nil {
		t.Fatal(err)
	}
}

// Over a real TCP stack: a known-good source's connection to the public
// port lands in the priority listener's accept queue, with the public
// address as its local one; a source that is not known-good lands in the
// public listener's; and once the priority listener closes, steering falls
// back to the public one by itself.
func TestPrioritySteersKnownGood(t *testing.T) {
	w := newKGWorld(t, DefaultSettings())
	pub4 := listenIn(t, w.srv, "198.18.101.1:110")
	pub6 := listenIn(t, w.srv, "[2001:db8:101::1]:110")
	pri4 := listenIn(t, w.srv, "127.0.0.1:10110")
	pri6 := listenIn(t, w.srv, "[::1]:10110")
	p := attachIn(t, w, w.g)
	for fam, l := range map[int]*net.TCPListener{unix.AF_INET: pri4, unix.AF_INET6: pri6} {
		setListener(t, p, Listener{110, fam, TierKnownGood}, l)
	}
	good := []netip.Prefix{netip.PrefixFrom(kgOld4, 32), netip.PrefixFrom(kgCli6, 64).Masked()}
	if err := w.g.PutKnownGood(good); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		src       netip.Addr
		want, not *net.TCPListener
		dst       netip.AddrPort
	}{
		{kgOld4, pri4, pub4, netip.AddrPortFrom(kgSrv4, 110)},
		{kgCli4, pub4, pri4, netip.AddrPortFrom(kgSrv4, 110)},
		{kgCli6, pri6, pub6, netip.AddrPortFrom(kgSrv6, 110)},
	} {
		if err := w.dial(t, tc.src, 10*time.Second); err != nil {
			t.Fatalf("from %s: %v", tc.src, err)
		}
		// Dial returned: the connection is established, so it already
		// sits in one accept queue or the other.
		if got, _ := acceptedFrom(t, tc.not, 50*time.Millisecond); got.IsValid() {
			t.Fatalf("from %s: accepted on %s, the wrong listener", tc.src, tc.not.Addr())
		}
		got, local := acceptedFrom(t, tc.want, 5*time.Second)
		if got != tc.src || local != tc.dst {
			t.Fatalf("on %s: accepted %s -> %s, want %s -> %s", tc.want.Addr(), got, local, tc.src, tc.dst)
		}
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Steered != 2 || st.Fresh != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v, want 2 steered", st)
	}

	// The fresh tier: with its listener in the map (the daemon puts it
	// there under slot pressure), any other source goes there; without
	// it, to the public listener again.
	fresh4 := listenIn(t, w.srv, "127.0.0.1:20110")
	fresh := Listener{110, unix.AF_INET, TierFresh}
	setListener(t, p, fresh, fresh4)
	for _, want := range []*net.TCPListener{fresh4, pub4} {
		if err := w.dial(t, kgCli4, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, _ := acceptedFrom(t, want, 5*time.Second); got != kgCli4 {
			t.Fatalf("%s accepted %s, want %s", want.Addr(), got, kgCli4)
		}
		if err := p.DeleteListener(fresh); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := p.Stats(); err != nil || st.Fresh != 1 {
		t.Fatalf("stats %+v, %v: want 1 fresh", st, err)
	}

	// Dovecot restarting closes its listener: the kernel drops it from the
	// map, and known-good sources go to the public listener meanwhile.
	pri4.Close()
	if p.HasListener(Listener{110, unix.AF_INET, TierKnownGood}) {
		t.Fatal("a closed priority listener is still in the map")
	}
	if err := w.dial(t, kgOld4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, _ := acceptedFrom(t, pub4, 5*time.Second); got != kgOld4 {
		t.Fatalf("with no priority listener, public listener accepted %s, want %s", got, kgOld4)
	}
}

// With a pin root the steering outlives the process that attached it, a
// second attach (a restart) adopts the pinned socket map and link, and
// DetachAll takes the steering away with the other pins.
func TestPriorityPinned(t *testing.T) {
	w := newKGWorld(t, DefaultSettings())
	pub4 := listenIn(t, w.srv, "198.18.101.1:110")
	pri4 := listenIn(t, w.srv, "127.0.0.1:10110")
	root := filepath.Join(testutil.PinRoot(t, "priority"), "xdpguard")
	g, err := New(Options{PinRoot: root, MaxBans: 1 << 10, MaxTracked: 1 << 10, MaxCIDR: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.PutKnownGood([]netip.Prefix{netip.PrefixFrom(kgOld4, 32)}); err != nil {
		t.Fatal(err)
	}
	attach := func() *Priority {
		var p *Priority
		if err := w.srv.Do(func() (err error) { p, err = g.AttachPriority("/proc/thread-self/ns/net"); return err }); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goesTo := func(want *net.TCPListener) {
		t.Helper()
		if err := w.dial(t, kgOld4, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, _ := acceptedFrom(t, want, 5*time.Second); got != kgOld4 {
			t.Fatalf("%s accepted %s, want %s", want.Addr(), got, kgOld4)
		}
	}
	kg := Listener{110, unix.AF_INET, TierKnownGood}

	p := attach()
	setListener(t, p, kg, pri4)
	p.Close() // the pins keep it attached
	goesTo(pri4)

	p = attach() // a restart
	defer p.Close()
	if !p.HasListener(kg) {
		t.Fatal("the pinned socket map was not adopted")
	}
	goesTo(pri4)

	if err := g.DetachAll(); err != nil {
		t.Fatal(err)
	}
	goesTo(pub4)
}

// A refused source (one the daemon evicted before it authenticated) is
// reset while the fresh tier is on, in both families; a known-good source
// never is; without the fresh tier, or once the refusal's deadline has
// passed (checked in the kernel), it is served again.
func TestPriorityRefusesEvicted(t *testing.T) {
	w := newKGWorld(t, DefaultSettings())
	pub4 := listenIn(t, w.srv, "198.18.101.1:110")
	pri4 := listenIn(t, w.srv, "127.0.0.1:10110")
	pub6 := listenIn(t, w.srv, "[2001:db8:101::1]:110")
	fresh := map[int]*net.TCPListener{
		unix.AF_INET:  listenIn(t, w.srv, "127.0.0.1:20110"),
		unix.AF_INET6: listenIn(t, w.srv, "[::1]:20110"),
	}
	p := attachIn(t, w, w.g)
	setListener(t, p, Listener{110, unix.AF_INET, TierKnownGood}, pri4)
	for fam, l := range fresh {
		setListener(t, p, Listener{110, fam, TierFresh}, l)
	}
	if err := w.g.PutKnownGood([]netip.Prefix{netip.PrefixFrom(kgOld4, 32)}); err != nil {
		t.Fatal(err)
	}
	refused := []netip.Prefix{netip.PrefixFrom(kgCli4, 32), netip.PrefixFrom(kgCli6, 64).Masked(), netip.PrefixFrom(kgOld4, 32)}
	if err := p.Refuse(refused, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, src := range []netip.Addr{kgCli4, kgCli6} {
		if err := w.dial(t, src, 10*time.Second); !errors.Is(err, unix.ECONNREFUSED) {
			t.Fatalf("refused source %s under pressure: dial error %v, want ECONNREFUSED", src, err)
		}
	}
	if err := w.dial(t, kgOld4, 10*time.Second); err != nil {
		t.Fatalf("known-good source: %v", err)
	}
	if got, _ := acceptedFrom(t, pri4, 5*time.Second); got != kgOld4 {
		t.Fatalf("known-good listener accepted %s, want %s", got, kgOld4)
	}
	if st, err := p.Stats(); err != nil || st.Refused != 2 || st.Steered != 1 {
		t.Fatalf("stats %+v, %v: want 2 refused, 1 steered", st, err)
	}

	// Pressure over: the fresh tier goes, and the refusal with it.
	if err := p.DeleteListener(Listener{110, unix.AF_INET, TierFresh}); err != nil {
		t.Fatal(err)
	}
	if err := w.dial(t, kgCli4, 10*time.Second); err != nil {
		t.Fatalf("refused source without pressure: %v", err)
	}
	if got, _ := acceptedFrom(t, pub4, 5*time.Second); got != kgCli4 {
		t.Fatalf("public listener accepted %s, want %s", got, kgCli4)
	}

	// A refusal that has run out: the source is fresh again.
	if err := p.Refuse(refused[1:2], time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the deadline is in the past, whatever the load
	if err := w.dial(t, kgCli6, 10*time.Second); err != nil {
		t.Fatalf("after the refusal's deadline: %v", err)
	}
	if got, _ := acceptedFrom(t, fresh[unix.AF_INET6], 5*time.Second); got != kgCli6 {
		t.Fatalf("fresh listener accepted %s, want %s", got, kgCli6)
	}

	// Past its first seconds under pressure, a source that keeps
	// connecting waits in the public queue, behind later new users.
	time.Sleep(2100 * time.Millisecond) // FRESH_NS, in the past whatever the load
	if err := w.dial(t, kgCli6, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, _ := acceptedFrom(t, pub6, 5*time.Second); got != kgCli6 {
		t.Fatalf("public listener accepted %s, want %s (past the fresh period)", got, kgCli6)
	}
	if st, err := p.Stats(); err != nil || st.Late != 1 {
		t.Fatalf("stats %+v, %v: want 1 late", st, err)
	}
}

// freshTier is a server with the fresh tier on for its IPv4 POP3 port:
// pressure, as the daemon sets it.
func freshTier(t *testing.T) (w *kgWorld, p *Priority, pub4, fresh4 *net.TCPListener) {
	w = newKGWorld(t, DefaultSettings())
	pub4 = listenIn(t, w.srv, "198.18.101.1:110")
	fresh4 = listenIn(t, w.srv, "127.0.0.1:20110")
	p = attachIn(t, w, w.g)
	setListener(t, p, Listener{110, unix.AF_INET, TierFresh}, fresh4)
	return w, p, pub4, fresh4
}

// Under pressure the fresh queue takes fresh_rate new sources a second:
// past it, a new source's connection goes to the public queue, and so do
// its next ones (its first SYN under pressure was turned away).
func TestPriorityFreshRate(t *testing.T) {
	w, p, pub4, fresh4 := freshTier(t)
	// Four a second, up to a second's worth at once.
	if err := p.SetFreshRate(4); err != nil {
		t.Fatal(err)
	}
	var lim bpf.PriorityFreshLimit
	if err := p.freshRate.Lookup(uint32(0), &lim); err != nil || lim.IntervalNs != uint64(250*time.Millisecond) || lim.BurstNs != uint64(750*time.Millisecond) {
		t.Fatalf("fresh rate 4/s: %+v, %v", lim, err)
	}
	// One an hour, no burst: the second source comes within the hour,
	// whatever the load.
	if err := p.freshRate.Update(uint32(0), bpf.PriorityFreshLimit{IntervalNs: uint64(time.Hour)}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  netip.Addr
		want *net.TCPListener
	}{{kgCli4, fresh4}, {kgOld4, pub4}, {kgOld4, pub4}} {
		if err := w.dial(t, tc.src, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, _ := acceptedFrom(t, tc.want, 5*time.Second); got != tc.src {
			t.Fatalf("%s accepted %s, want %s", tc.want.Addr(), got, tc.src)
		}
	}
	if st, err := p.Stats(); err != nil || st.Fresh != 1 || st.FreshFull != 1 || st.Late != 1 {
		t.Fatalf("stats %+v, %v: want 1 fresh, 1 over the rate, 1 late", st, err)
	}
}

// A source marked late goes to the public queue and leaves the fresh
// queue's rate to the next new source; a source whose first SYN under
// pressure the kernel has already seen keeps its entry.
func TestPriorityLate(t *testing.T) {
	w, p, pub4, fresh4 := freshTier(t)
	// One new source an hour.
	if err := p.freshRate.Update(uint32(0), bpf.PriorityFreshLimit{IntervalNs: uint64(time.Hour)}, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if err := p.Late([]netip.Prefix{netip.PrefixFrom(kgOld4, 32)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		src  netip.Addr
		want *net.TCPListener
	}{{kgOld4, pub4}, {kgCli4, fresh4}} {
		if err := w.dial(t, tc.src, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, _ := acceptedFrom(t, tc.want, 5*time.Second); got != tc.src {
			t.Fatalf("%s accepted %s, want %s", tc.want.Addr(), got, tc.src)
		}
	}
	// kgCli4 is in its fresh seconds: marking it late changes nothing.
	if err := p.Late([]netip.Prefix{netip.PrefixFrom(kgCli4, 32)}); err != nil {
		t.Fatal(err)
	}
	var e bpf.PriorityFreshEntry
	if err := p.freshSince[0].Lookup(kgCli4.As4(), &e); err != nil || e.Until == 0 {
		t.Fatalf("the fresh source's entry %+v, %v: want its fresh period kept", e, err)
	}
	if st, err := p.Stats(); err != nil || st.Fresh != 1 || st.Late != 1 || st.FreshFull != 0 {
		t.Fatalf("stats %+v, %v: want 1 fresh, 1 late, none over the rate", st, err)
	}
}
