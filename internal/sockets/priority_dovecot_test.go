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
// the priority listener, is the one served when a slot frees. The
// listener is found and taken from Dovecot as the daemon does it
// (Listeners, DupSockets).
//
// The configuration is the README's: a login process serves its listeners
// in order, and Dovecot's built-in ones (imap, imaps) come before those a
// configuration adds, so "imap" becomes the priority listener and 143
// gets one of its own. Named "imap-priority" and added after "imap", the
// priority listener was served after the public queue: this test failed.
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
	var ls []Listener
	if err := ns.Do(func() (err error) { ls, err = Listeners(context.Background(), []uint16{10143}); return err }); err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Addr != netip.MustParseAddrPort("127.0.0.1:10143") {
		t.Fatalf("listeners on 10143: %+v, want Dovecot's one", ls)
	}
	fs, err := DupSockets("/proc", []uint32{ls[0].Inode})
	f := fs[ls[0].Inode]
	if err != nil || f == nil {
		t.Fatalf("no descriptor for Dovecot's listener: %v", err)
	}
	err = p.SetListener(143, unix.AF_INET, f)
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
	var queued []net.Conn
	for range 3 {
		queued = append(queued, dialRaw(t, ns, netip.MustParseAddr("127.0.0.1")))
	}
	mine := dialRaw(t, ns, user)
	// Each waiting client reports when it gets its greeting. Dovecot
	// serves a queue in order, and, at process_limit, ends its oldest
	// login connection about once a second to take the next ("Connection
	// queue full"): all four are served in time, and the order tells.
	greeted := make(chan net.Conn, 4)
	for _, c := range append(queued, mine) {
		go func() {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 4)
			if n, _ := c.Read(buf); n > 0 && string(buf[:n]) == "* OK" {
				greeted <- c
			}
		}()
	}
	held[0].Close()
	select {
	case first := <-greeted:
		if first != mine {
			t.Errorf("a connection queued on 143 was served before the known-good one")
		}
	case <-time.After(30 * time.Second):
		t.Errorf("nobody was served within 30 s of a slot freeing")
	}
	if t.Failed() {
		log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
		t.Logf("dovecot.log:\n%s", log)
	}
	if st, err := p.Stats(); err != nil || st.Steered != 1 {
		t.Errorf("stats %+v, %v: want 1 steered", st, err)
	}
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
