package datapath

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// kgWorld is a server and a client namespace on a veth pair, the program
// attached natively to the server's end.
type kgWorld struct {
	srv, cli *testutil.NS
	g        *Guard
}

var (
	kgSrv4 = netip.MustParseAddr("198.18.101.1")
	kgSrv6 = netip.MustParseAddr("2001:db8:101::1")
	kgCli4 = netip.MustParseAddr("198.18.101.2")
	kgCli6 = netip.MustParseAddr("2001:db8:101:1::2")
	kgOld4 = netip.MustParseAddr("198.18.101.3") // a returning user
)

func newKGWorld(t *testing.T, s Settings) *kgWorld {
	t.Helper()
	w := &kgWorld{srv: testutil.New(t, "kgood-srv"), cli: testutil.New(t, "kgood-cli")}
	testutil.Veth(t, w.srv, "kg-srv", []netip.Prefix{mustPrefix("198.18.101.1/24"), mustPrefix("2001:db8:101::1/48")},
		w.cli, "kg-cli", []netip.Prefix{mustPrefix("198.18.101.2/24"), mustPrefix("198.18.101.3/24"), mustPrefix("2001:db8:101:1::2/48")})
	w.g = newTestGuard(t, s)
	if err := w.srv.Do(func() error { _, err := w.g.Attach("kg-srv", ModeNative); return err }); err != nil {
		t.Fatal(err)
	}
	return w
}

// listen opens a listener on the server's port 110 with the given accept
// backlog, never accepting: with backlog 0 the second connection finds the
// accept queue full and the server drops its SYNs, as an overloaded
// Dovecot's does.
func (w *kgWorld) listen(t *testing.T, a netip.Addr, backlog int) {
	t.Helper()
	err := w.srv.Do(func() error {
		var fam int
		var sa unix.Sockaddr
		if a.Is4() {
			fam, sa = unix.AF_INET, &unix.SockaddrInet4{Port: 110, Addr: a.As4()}
		} else {
			fam, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: 110, Addr: a.As16()}
		}
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, sa); err != nil {
			return err
		}
		return unix.Listen(fd, backlog)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// dial connects from src to the server's port 110; the connection is closed
// when the test ends.
func (w *kgWorld) dial(t *testing.T, src netip.Addr, timeout time.Duration) error {
	dst := kgSrv4
	if src.Is6() {
		dst = kgSrv6
	}
	return w.cli.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: timeout}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, 110).String())
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return err
	})
}

// The victim: a server too busy to answer, a client whose stack
// resends its SYNs. Real Linux retransmissions must not count: 4
// connections sending 10 SYNs against a threshold of 4 are not banned, and
// the same traffic with the resend check off is (the test's control).
func TestRetransmittedSYNsOverVeth(t *testing.T) {
	for _, tc := range []struct {
		name   string
		src    netip.Addr
		window time.Duration
		banned bool
	}{
		{"v4", kgCli4, 10 * time.Second, false},
		{"v6", kgCli6, 10 * time.Second, false},
		{"v4 without the resend check", kgCli4, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each in its own namespaces; most of it is waiting
			s := rateSettings(4)
			s.RetransmitWindow = tc.window
			w := newKGWorld(t, s)
			w.listen(t, kgSrv4, 0)
			w.listen(t, kgSrv6, 0)

			// The first connection fills the accept queue.
			if err := w.dial(t, tc.src, 5*time.Second); err != nil {
				t.Fatalf("first connection: %v", err)
			}
			// Three more wait 3.5 s, unanswered: Linux sends each SYN at
			// 0, 1, 2 and 3 s (6.5 and later) or 0, 1 and 3 s.
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := w.dial(t, tc.src, 3500*time.Millisecond); err == nil {
						t.Error("a connection to a full accept queue was answered")
					}
				}()
			}
			wg.Wait()
			st, err := w.g.Stats()
			if err != nil {
				t.Fatal(err)
			}
			_, banned, err := w.g.BanOf(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", st)
			if banned != tc.banned {
				t.Fatalf("banned = %v, want %v (stats %+v)", banned, tc.banned, st)
			}
			if tc.window > 0 && st.SYNRetransmits < 3 {
				t.Errorf("%d resends seen, want one per waiting connection at least", st.SYNRetransmits)
			}
		})
	}
}

// Admission over a real TCP stack: a never-seen client's first connection
// passes, its second within the interval does not, a returning (known-good)
// user connects as often as it likes, and nobody is banned.
func TestAdmissionOverVeth(t *testing.T) {
	s := rateSettings(3)
	s.AdmissionInterval = time.Hour
	w := newKGWorld(t, s)
	w.listen(t, kgSrv4, 64)
	if err := w.g.PutKnownGood([]netip.Prefix{netip.PrefixFrom(kgOld4, 32)}); err != nil {
		t.Fatal(err)
	}
	if err := w.g.SetAdmission(true); err != nil {
		t.Fatal(err)
	}
	if err := w.dial(t, kgCli4, 5*time.Second); err != nil {
		t.Fatalf("a never-seen client's first connection: %v", err)
	}
	if err := w.dial(t, kgCli4, 1500*time.Millisecond); err == nil {
		t.Fatal("a second connection within the admission interval got through")
	}
	for i := range 6 { // twice the SYN threshold
		if err := w.dial(t, kgOld4, 5*time.Second); err != nil {
			t.Fatalf("returning user's connection %d: %v", i+1, err)
		}
	}
	st, err := w.g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// The limited client sent its SYN twice (at 0 and 1 s): both dropped,
	// neither counted.
	if st.DroppedAdmission < 2 || st.AutoBans != 0 || st.KnownGoodSpared != 3 {
		t.Fatalf("stats %+v: want >= 2 admission drops, no ban, 3 known-good SYNs over the rate", st)
	}
}
