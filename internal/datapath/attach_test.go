package datapath

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// world is a server namespace and a client namespace on a veth pair.
type world struct {
	srv, cli *testutil.NS
	srvAddr4 netip.Addr
	srvAddr6 netip.Addr
	ln4, ln6 net.Listener
}

var (
	cliClean4  = netip.MustParseAddr("198.18.100.2")
	cliBanned4 = netip.MustParseAddr("198.18.100.3")
	cliBurst4  = netip.MustParseAddr("198.18.100.4")
	cliClean6  = netip.MustParseAddr("2001:db8:100:1::2")
	cliBanned6 = netip.MustParseAddr("2001:db8:100:2::3")
)

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{
		srv:      testutil.New(t, "srv"),
		cli:      testutil.New(t, "cli"),
		srvAddr4: netip.MustParseAddr("198.18.100.1"),
		srvAddr6: netip.MustParseAddr("2001:db8:100::1"),
	}
	testutil.Veth(t, w.srv, "xg-srv", []netip.Prefix{mustPrefix("198.18.100.1/24"), mustPrefix("2001:db8:100::1/48")},
		w.cli, "xg-cli", []netip.Prefix{mustPrefix("198.18.100.2/24"), mustPrefix("198.18.100.3/24"), mustPrefix("198.18.100.4/24"),
			mustPrefix("2001:db8:100:1::2/48"), mustPrefix("2001:db8:100:2::3/48")})
	err := w.srv.Do(func() (err error) {
		if w.ln4, err = net.Listen("tcp4", "198.18.100.1:110"); err != nil {
			return err
		}
		w.ln6, err = net.Listen("tcp6", "[2001:db8:100::1]:110")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range []net.Listener{w.ln4, w.ln6} {
		testutil.Serve(t, ln, func(c net.Conn) {
			c.Write([]byte("+OK\r\n"))
			c.Close()
		})
	}
	return w
}

// dial connects from src to the server's port 110 inside the client
// namespace and reads the greeting.
func (w *world) dial(src netip.Addr, timeout time.Duration) error {
	dst := w.srvAddr4
	if src.Is6() {
		dst = w.srvAddr6
	}
	return w.cli.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: timeout}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, 110).String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		buf := make([]byte, 5)
		_, err = c.Read(buf)
		return err
	})
}

func TestAttachNativeOverVeth(t *testing.T) {
	w := newWorld(t)
	s := rateSettings(5)
	g := newTestGuard(t, s)
	err := w.srv.Do(func() error {
		mode, err := g.Attach("xg-srv", ModeNative)
		if err == nil && mode != ModeNative {
			t.Errorf("attached in %s mode, want native", mode)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, a := range []netip.Addr{cliBanned4, cliBanned6} {
		if err := g.Ban(netip.PrefixFrom(a, a.BitLen()), time.Hour, OriginManual, ReasonManual); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []netip.Addr{cliClean4, cliClean6} {
		if err := w.dial(a, 2*time.Second); err != nil {
			t.Errorf("unbanned %s cannot connect: %v", a, err)
		}
	}
	for _, a := range []netip.Addr{cliBanned4, cliBanned6} {
		if err := w.dial(a, 500*time.Millisecond); err == nil {
			t.Errorf("banned %s connected", a)
		}
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.DroppedBan == 0 {
		t.Errorf("no drops counted: %+v", st)
	}

	// A burst over the rate: 5 connections pass, the 6th SYN bans.
	for i := range 5 {
		if err := w.dial(cliBurst4, 2*time.Second); err != nil {
			t.Fatalf("connection %d of the burst failed early: %v", i+1, err)
		}
	}
	if err := w.dial(cliBurst4, 500*time.Millisecond); err == nil {
		t.Fatal("connection over the rate succeeded")
	}
	bans, _ := g.Bans()
	found := false
	for _, b := range bans {
		found = found || (b.Prefix.Addr() == cliBurst4 && b.Origin == OriginKernel)
	}
	if !found {
		t.Fatalf("burst source not auto-banned: %+v", bans)
	}
	// Other sources are untouched by it.
	if err := w.dial(cliClean4, 2*time.Second); err != nil {
		t.Errorf("unbanned source failed after the auto-ban: %v", err)
	}
}

func TestAttachErrors(t *testing.T) {
	w := newWorld(t)
	g := newTestGuard(t, DefaultSettings())
	err := w.srv.Do(func() error { _, err := g.Attach("xg-nosuch", ModeAuto); return err })
	if err == nil || !strings.Contains(err.Error(), "xg-nosuch") {
		t.Errorf("missing interface: %v", err)
	}
	// Someone else's XDP program is never replaced.
	other := newTestGuard(t, DefaultSettings())
	if err := w.srv.Do(func() error { _, err := other.Attach("xg-srv", ModeNative); return err }); err != nil {
		t.Fatal(err)
	}
	err = w.srv.Do(func() error { _, err := g.Attach("xg-srv", ModeNative); return err })
	if !errors.Is(err, ErrForeignProgram) || !strings.Contains(err.Error(), "xg-srv") {
		t.Errorf("attach over a foreign program: %v", err)
	}
}

// The helper process attaches with pins and exits; protection must stay.
const helperEnv = "XDPGUARD_TEST_ATTACH_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		if err := attachHelper(spec); err != nil {
			os.Stderr.WriteString("helper: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// attachHelper runs in a child process: "NETNS PINROOT IFACE BANNED".
func attachHelper(spec string) error {
	f := strings.Fields(spec)
	runtime.LockOSThread() // setns applies to this thread only
	h, err := netns.GetFromName(f[0])
	if err != nil {
		return err
	}
	if err := netns.Set(h); err != nil {
		return err
	}
	g, err := New(Options{PinRoot: f[1], MaxBans: 1 << 12, MaxTracked: 1 << 10, MaxCIDR: 1 << 8})
	if err != nil {
		return err
	}
	if _, err := g.Attach(f[2], ModeNative); err != nil {
		return err
	}
	return g.Ban(netip.MustParsePrefix(f[3]), time.Hour, OriginManual, ReasonManual)
}

func TestPinnedProgramOutlivesItsProcess(t *testing.T) {
	w := newWorld(t)
	root := filepath.Join(testutil.PinRoot(t, "attach"), "xdpguard")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join([]string{w.srv.Name, root, "xg-srv", cliBanned4.String() + "/32"}, " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("attach helper: %v\n%s", err, out)
	}
	// The process is gone; the pins hold program, maps and link.
	if err := w.dial(cliBanned4, 500*time.Millisecond); err == nil {
		t.Error("banned source connected after the attaching process exited")
	}
	if err := w.dial(cliClean4, 2*time.Second); err != nil {
		t.Errorf("unbanned source: %v", err)
	}

	// Another process reopens the pinned state, as the CLI does.
	g, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	bans, err := g.Bans()
	if err != nil || len(bans) != 1 || bans[0].Prefix.Addr() != cliBanned4 {
		t.Fatalf("Bans() via pins = %+v, %v", bans, err)
	}
	var ifs []Interface
	w.srv.Do(func() (err error) { ifs, err = g.Interfaces(); return err })
	if len(ifs) != 1 || ifs[0].Name != "xg-srv" || ifs[0].Mode != "native" || ifs[0].ProgramID == 0 {
		t.Errorf("Interfaces() = %+v", ifs)
	}
	if err := g.Unban(netip.PrefixFrom(cliBanned4, 32)); err != nil {
		t.Fatal(err)
	}
	if err := w.dial(cliBanned4, 2*time.Second); err != nil {
		t.Errorf("unbanned through the pins, still blocked: %v", err)
	}

	// A second load adopts the pinned maps and upgrades the program in place.
	g2, err := New(Options{PinRoot: root, MaxBans: 1 << 12, MaxTracked: 1 << 10, MaxCIDR: 1 << 8})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	g2.Ban(netip.PrefixFrom(cliBanned4, 32), time.Hour, OriginManual, ReasonManual)
	if err := w.srv.Do(func() error { _, err := g2.Attach("xg-srv", ModeNative); return err }); err != nil {
		t.Fatalf("upgrade in place: %v", err)
	}
	var ifs2 []Interface
	w.srv.Do(func() (err error) { ifs2, err = g2.Interfaces(); return err })
	if len(ifs2) != 1 || ifs2[0].ProgramID == ifs[0].ProgramID {
		t.Errorf("program not replaced: before %+v, after %+v", ifs, ifs2)
	}
	if err := w.dial(cliBanned4, 500*time.Millisecond); err == nil {
		t.Error("ban lost across the upgrade")
	}

	// Adopting with other map sizes is refused, not silently mismatched.
	if _, err := New(Options{PinRoot: root, MaxBans: 1 << 13}); err == nil {
		t.Error("adopted pinned maps of another size")
	}

	if err := w.srv.Do(g2.DetachAll); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("pins remain after DetachAll: %v", err)
	}
	if err := w.dial(cliBanned4, 2*time.Second); err != nil {
		t.Errorf("after detach, traffic is still filtered: %v", err)
	}
}
