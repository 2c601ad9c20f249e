package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/knowngood"
	"github.com/xdpguard/xdpguard/internal/logwatch"
	"github.com/xdpguard/xdpguard/internal/sockets"
	"github.com/xdpguard/xdpguard/internal/testutil"
	"golang.org/x/sys/unix"
)

// fakeLoginEnv makes the test binary a tiny POP3 login server with a fixed
// number of slots: it greets the connections it accepts and accepts no
// more until one closes, so the rest wait in the kernel's accept queue.
// It runs under the name pop3-login, which is what eviction looks for.
// Real Dovecot evicts its own oldest connection within a fraction of a
// second of running out, which would race the daemon; this server does
// not, so the test sees the daemon's choices alone.
const fakeLoginEnv = "XDPGUARD_SLOTS_USER_FAKE_LOGIN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(fakeLoginEnv); addr != "" {
		fakeLogin(addr, 4)
		return
	}
	os.Exit(m.Run())
}

func fakeLogin(addr string, slots int) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	free := make(chan struct{}, slots)
	for range slots {
		free <- struct{}{}
	}
	for {
		<-free
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			c.Write([]byte("+OK fake\r\n"))
			io.Copy(io.Discard, c)
			c.Close()
			free <- struct{}{}
		}()
	}
}

// TestEvictionRealSockets runs the eviction on real sockets: four slots
// held by a client waiting for the server's answer to its login (the
// oldest), two silent bots and a known-good user, with a known-good user
// waiting. One connection is waiting, so exactly one is evicted: the
// oldest bot's. The login in progress and the known-good connection stay,
// and the waiting user gets the freed slot.
func TestEvictionRealSockets(t *testing.T) {
	srv := testutil.New(t, "su-evsrv")
	cli := testutil.New(t, "su-evcli")
	server := netip.MustParseAddr("198.18.80.1")
	var clients []netip.Prefix
	for i := 2; i <= 6; i++ {
		clients = append(clients, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 80, byte(i)}), 24))
	}
	testutil.Veth(t, srv, "su0", []netip.Prefix{netip.PrefixFrom(server, 24)}, cli, "su1", clients)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "pop3-login")
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+srv.Path(), "--", link)
	cmd.Env = append(os.Environ(), fakeLoginEnv+"="+netip.AddrPortFrom(server, 110).String())
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() })
	if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || l != "listening\n" {
		t.Fatalf("fake login server: %q %v", l, err)
	}

	d := evictDaemon(t)
	known := netip.MustParseAddr("198.18.80.5")
	d.kg.store.Learn(known, time.Now())
	fresh := freshListener(t, d, srv)
	ctx := context.Background()
	t0 := time.Now()
	scan := func(at time.Duration) {
		t.Helper()
		err := srv.Do(func() error {
			// As watchSlots does: the accept queues, then the scan.
			n, err := sockets.Waiting(ctx, d.cfg.Kernel.Ports)
			if err != nil {
				return err
			}
			d.slots.waiting = n
			conns, err := d.holderConns(ctx, nil)
			if err == nil {
				d.evictPreAuth(ctx, t0.Add(at), true, conns, nil)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	dial := func(src string, greeted bool) *testConn {
		t.Helper()
		var c net.Conn
		err := cli.Do(func() (err error) {
			dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			c, err = dl.Dial("tcp", netip.AddrPortFrom(server, 110).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		tc := &testConn{c, bufio.NewReader(c)}
		if greeted {
			if l, err := tc.line(5 * time.Second); err != nil || l != "+OK fake\r\n" {
				t.Fatalf("%s: greeting %q %v", src, l, err)
			}
		}
		return tc
	}
	midLogin := dial("198.18.80.4", true)
	// A few clock ticks after the greeting, as over any real link: within
	// the same tick the kernel's times cannot say who spoke last
	// (Holder.Quiet takes it to be the server).
	time.Sleep(30 * time.Millisecond)
	if _, err := midLogin.c.Write([]byte("USER alice\r\n")); err != nil { // never answered
		t.Fatal(err)
	}
	scan(0)
	oldBot := dial("198.18.80.2", true)
	scan(0)
	newBot := dial("198.18.80.3", true)
	scan(500 * time.Millisecond)
	goodOld := dial("198.18.80.5", true) // known-good, pre-auth
	scan(time.Second)
	waiting := dial("198.18.80.5", false) // no slot left: the accept queue
	// Quiet time is the kernel's, in real time: let the bots sit silent
	// past the grace.
	time.Sleep(1200 * time.Millisecond)
	scan(3 * time.Second)

	for _, c := range []struct {
		name string
		c    *testConn
		want bool
	}{{"oldest bot", oldBot, true}, {"newer bot", newBot, false}, {"known-good user", goodOld, false}, {"login in progress", midLogin, false}} {
		if got := c.c.closed(time.Second); got != c.want {
			t.Errorf("%s: closed %v, want %v", c.name, got, c.want)
		}
	}
	if l, err := waiting.line(5 * time.Second); err != nil || l != "+OK fake\r\n" {
		t.Errorf("the waiting user got no slot: %q %v", l, err)
	}

	// The evicted source is refused while the fresh tier is on (as under
	// pressure); a source never evicted goes to the fresh listener.
	fresh.on()
	err = cli.Do(func() error {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("198.18.80.2")}, Timeout: 5 * time.Second}
		_, err := dl.Dial("tcp", netip.AddrPortFrom(server, 110).String())
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("the evicted source reconnecting under pressure: %v, want ECONNREFUSED", err)
	}
	dial("198.18.80.6", false)
	fresh.l.SetDeadline(time.Now().Add(5 * time.Second))
	if c, err := fresh.l.Accept(); err != nil {
		t.Errorf("a new source under pressure did not reach the fresh listener: %v", err)
	} else {
		c.Close()
	}

	// Evicted twice more, the bot's source is banned; a known-good source
	// never is, however often it is counted.
	bot := netip.MustParseAddr("198.18.80.2")
	for range 2 {
		d.evidence([]netip.Addr{bot, known}, time.Now())
	}
	if _, ok, _ := d.guard.BanOf(bot); !ok {
		t.Error("a source evicted 3 times is not banned")
	}
	if _, ok, _ := d.guard.BanOf(known); ok {
		t.Error("a known-good source was banned for evictions")
	}
}

// freshListener attaches the steering program in srv for d and opens a
// fresh-tier listener on 127.0.0.1:20110, which on puts in the steering
// map, as the daemon does under pressure.
func freshListener(t *testing.T, d *Daemon, srv *testutil.NS) *fresh {
	t.Helper()
	var l net.Listener
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // the socket map takes plain TCP sockets
	err := srv.Do(func() (err error) {
		if d.priority.p, err = d.guard.AttachPriority("/proc/thread-self/ns/net"); err != nil {
			return err
		}
		l, err = lc.Listen(t.Context(), "tcp", "127.0.0.1:20110")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); d.priority.close() })
	return &fresh{t, d, l.(*net.TCPListener)}
}

type fresh struct {
	t *testing.T
	d *Daemon
	l *net.TCPListener
}

func (f *fresh) on() {
	f.t.Helper()
	rc, err := f.l.SyscallConn()
	if err != nil {
		f.t.Fatal(err)
	}
	var fd int
	if cerr := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil || err != nil {
		f.t.Fatal(cerr, err)
	}
	sock := os.NewFile(uintptr(fd), "fresh")
	defer sock.Close() // the map holds the socket itself
	if err := f.d.priority.p.SetListener(datapath.Listener{Port: 110, Family: unix.AF_INET, Tier: datapath.TierFresh}, sock); err != nil {
		f.t.Fatal(err)
	}
}

type testConn struct {
	c net.Conn
	r *bufio.Reader
}

func (tc *testConn) line(wait time.Duration) (string, error) {
	tc.c.SetReadDeadline(time.Now().Add(wait))
	return tc.r.ReadString('\n')
}

// closed reports whether the connection was destroyed: a read returns a
// reset or EOF within wait rather than timing out.
func (tc *testConn) closed(wait time.Duration) bool {
	tc.c.SetReadDeadline(time.Now().Add(wait))
	_, err := tc.r.ReadByte()
	return err != nil && !os.IsTimeout(err)
}

// evictDaemon is a Daemon with just what eviction needs: the kernel maps
// (for evidence bans), the engine, metrics off, no interface.
func evictDaemon(t testing.TB) *Daemon {
	t.Helper()
	pins := testutil.PinRoot(t, "evict")
	c := config.Default()
	c.Kernel.Ports = []uint16{110}
	c.SlotHolders.Pressure.Evict.Enabled = true
	c.SlotHolders.Pressure.Evict.Grace = time.Second
	g, err := datapath.New(datapath.Options{PinRoot: filepath.Join(pins, "pins"), MaxBans: 1024, MaxTracked: 1024, MaxCIDR: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.SetSettings(c.Kernel.Settings()); err != nil {
		t.Fatal(err)
	}
	det := logwatch.DefaultConfig()
	eng, err := logwatch.New(det)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := newMetrics("", g, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: Config{Config: c, Detect: det}, log: log, guard: g, engine: eng, metrics: m,
		records: map[netip.Prefix]datapath.Ban{}, own: map[netip.Addr]bool{}}
	d.kg.store = knowngood.New(c.KnownGood.Retention, c.KnownGood.MaxEntries, datapath.Granularity{V4: 32, V6: 64})
	t.Cleanup(d.conns.close)
	return d
}
