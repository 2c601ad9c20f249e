package sockets

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// The whole of priority steering against a real Dovecot (high-security
// mode, two imap-login processes): with both slots held and three
// connections queued on 143, a known-good source's connection, steered to
// the priority listener, is the one served when a slot frees, and then a
// new source's that came under pressure, steered to the fresh listener. The
// listener is found and taken from Dovecot as the daemon does it
// (Listeners, DupSockets).
//
// The configuration is the README's: a login process serves its listeners
// in order, and Dovecot's built-in ones (imap, imaps) come before those a
// configuration adds, so "imap" becomes the priority listener and 143
// gets one of its own, after the fresh one. Named "imap-priority" and
// added after "imap", the priority listener was served after the public
// queue: this test failed.
func TestPriorityRealDovecot(t *testing.T) {
	ns := testutil.New(t, "prio-dc")
	dir := startDovecotConf(t, ns, strings.Replace(preauthConf, `  inet_listener imap {
    port = 143
  }
`, `  process_limit = 2
  inet_listener imap {
    address = 127.0.0.1
    port = 10143
  }
  inet_listener imap-fresh {
    address = 127.0.0.1
    port = 20143
  }
  inet_listener imap-public {
    port = 143
  }
`, 1), "high-security")

	g, err := datapath.New(datapath.Options{MaxBans: 1 << 10, MaxTracked: 1 << 10, MaxCIDR: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	var p *datapath.Priority
	if err := ns.Do(func() (err error) { p, err = g.AttachPriority("/proc/thread-self/ns/net"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	// The fresh tier's listener comes later, with the pressure.
	f := dovecotListener(t, ns, 10143)
	err = p.SetListener(datapath.Listener{Port: 143, Family: unix.AF_INET, Tier: datapath.TierKnownGood}, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	user := netip.MustParseAddr("127.0.0.2")
	if err := g.PutKnownGood([]netip.Prefix{netip.PrefixFrom(user, 32)}); err != nil {
		t.Fatal(err)
	}

	// Both login processes busy with silent clients, three more queued.
	var held []*client
	for range 2 {
		c, err := dialIn(ns, "127.0.0.1:143")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		held = append(held, c)
	}
	// The queue on 143 formed before pressure: no fresh listener yet.
	fresh := datapath.Listener{Port: 143, Family: unix.AF_INET, Tier: datapath.TierFresh}
	f = dovecotListener(t, ns, 20143)
	defer f.Close()
	var queued []net.Conn
	for range 3 {
		queued = append(queued, dialRaw(t, ns, netip.MustParseAddr("127.0.0.1")))
	}
	if err := p.SetListener(fresh, f); err != nil {
		t.Fatal(err)
	}
	late := dialRaw(t, ns, netip.MustParseAddr("127.0.0.3")) // a new user, under pressure
	mine := dialRaw(t, ns, user)
	// Each waiting client reports when it gets its greeting. Dovecot
	// serves a queue in order, and, at process_limit, ends its oldest
	// login connection about once a second to take the next ("Connection
	// queue full"): all four are served in time, and the order tells.
	greeted := make(chan net.Conn, 5)
	for _, c := range append(queued, late, mine) {
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 4)
			if n, _ := c.Read(buf); n > 0 && string(buf[:n]) == "* OK" {
				greeted <- c
			}
		}()
	}
	held[0].Close()
	for i, want := range []net.Conn{mine, late} {
		select {
		case got := <-greeted:
			if got != want {
				t.Errorf("served %d: not the %s connection", i+1, []string{"known-good", "fresh-tier"}[i])
			}
		case <-time.After(30 * time.Second):
			t.Errorf("served %d: nobody within 30 s", i+1)
		}
		if i == 0 {
			held[1].Close() // the second slot, for the fresh tier
		}
	}
	if t.Failed() {
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Logf("dovecot.log:\n%s", log)
	}
	// The counters count SYNs: a SYN resent on a busy machine counts
	// again, so at least one each (the order above is the real check).
	if st, err := p.Stats(); err != nil || st.Steered < 1 || st.Fresh < 1 || st.Refused+st.Late+st.FreshFull+st.Failed != 0 {
		t.Errorf("stats %+v, %v: want SYNs steered to each tier, and none elsewhere", st, err)
	}
}

// dovecotListener finds Dovecot's listener on 127.0.0.1:port in ns and
// takes a descriptor of it, as the daemon does; the caller closes it.
func dovecotListener(t *testing.T, ns *testutil.NS, port uint16) *os.File {
	t.Helper()
	var ls []Listener
	if err := ns.Do(func() (err error) { ls, err = Listeners(context.Background(), []uint16{port}); return err }); err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Addr != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port) {
		t.Fatalf("listeners on %d: %+v, want Dovecot's one", port, ls)
	}
	fs, err := DupSockets("/proc", []uint32{ls[0].Inode})
	if err != nil || fs[ls[0].Inode] == nil {
		t.Fatalf("no descriptor for Dovecot's listener on %d: %v", port, err)
	}
	return fs[ls[0].Inode]
}

// dialRaw connects from src to 127.0.0.1:143 in ns without waiting for the
// greeting: the connection may sit in an accept queue.
func dialRaw(t *testing.T, ns *testutil.NS, src netip.Addr) net.Conn {
	t.Helper()
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 5 * time.Second}
		c, err = d.Dial("tcp", "127.0.0.1:143")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
