package sockets

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// Dovecot's two login modes (doc.dovecot.org, "Login processes"):
// high-security runs a login process per connection, high-performance
// serves many connections per process.
var loginModes = map[string]string{
	"high-security":    "service_count = 1",
	"high-performance": "service_count = 0\n    client_limit = 100\n    process_min_avail = 1",
}

const preauthConf = `base_dir = %[1]s/run
state_dir = %[1]s/state
protocols = imap pop3
listen = 127.0.0.1
ssl = no
log_path = %[1]s/dovecot.log
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=%[1]s/mail/%%u
}
first_valid_uid = 65534
first_valid_gid = 65534
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = 143
  }
  inet_listener imaps {
    port = 0
  }
  %[2]s
}
service pop3-login {
  inet_listener pop3 {
    port = 110
  }
  inet_listener pop3s {
    port = 0
  }
  %[2]s
}
`

// startDovecot runs a private Dovecot in ns (listening on 127.0.0.1 there)
// and stops it when the test ends.
func startDovecot(t *testing.T, ns *testutil.NS, mode string) {
	t.Helper()
	startDovecotConf(t, ns, preauthConf, mode)
}

// startDovecotConf is startDovecot with another configuration template
// (preauthConf's arguments); it returns Dovecot's directory.
func startDovecotConf(t *testing.T, ns *testutil.NS, template, mode string) string {
	t.Helper()
	if _, err := exec.LookPath("dovecot"); err != nil {
		t.Skip("dovecot is not installed (make test installs it)")
	}
	dir, err := os.MkdirTemp("", "xdpguard-slots-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Dovecot's unprivileged login and mail processes read and write here.
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
	os.Chown(filepath.Join(dir, "mail"), 65534, 65534)
	os.WriteFile(filepath.Join(dir, "passwd"), []byte("alice:{PLAIN}secret::::::\n"), 0o644)
	conf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, template, dir, loginModes[mode]), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+ns.Path(), "--", "dovecot", "-F", "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := dialIn(ns, "127.0.0.1:143")
		if err == nil {
			c.Close()
			return dir
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot not listening: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// client is a connection that has read the server's greeting.
type client struct {
	net.Conn
	r *bufio.Reader
}

func dialIn(ns *testutil.NS, addr string) (*client, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	cl := &client{Conn: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := cl.r.ReadString('\n'); err != nil { // the greeting
		c.Close()
		return nil, err
	}
	return cl, nil
}

// say sends a command and reads one reply line.
func (c *client) say(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatal(err)
	}
	l, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("%q: %v", cmd, err)
	}
	return l
}

func localPort(c net.Conn) uint16 {
	return netip.MustParseAddrPort(c.LocalAddr().String()).Port()
}

// TestPreAuthRealDovecot finds the connections still in Dovecot's login
// processes, in both login modes: idle and mid-dialogue ones are pre-auth,
// logged-in ones (handed to imap and pop3) are not, and destroying the
// pre-auth ones leaves the sessions alone.
func TestPreAuthRealDovecot(t *testing.T) {
	for _, mode := range []string{"high-security", "high-performance"} {
		t.Run(mode, func(t *testing.T) {
			ns := testutil.New(t, "slotsuser-pa")
			startDovecot(t, ns, mode)
			var index *ConnIndex
			var login *LoginIter
			err := ns.Do(func() (err error) {
				if index, err = NewConnIndex([]uint16{110, 143}, IndexSize); err != nil {
					return err
				}
				login, err = NewLoginIter(LoginProcesses, 110, 143)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			defer index.Close()
			defer login.Close()
			var pre, authed []*client
			for i := range 6 {
				addr := "127.0.0.1:143"
				if i%2 == 1 {
					addr = "127.0.0.1:110"
				}
				c, err := dialIn(ns, addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				switch i {
				case 0, 1, 2:
					pre = append(pre, c) // says nothing after the greeting
				case 3:
					if r := c.say(t, "USER trawl1"); !strings.HasPrefix(r, "+OK") {
						t.Fatalf("USER: %q", r)
					}
					pre = append(pre, c) // talks, never authenticates
				case 4:
					if r := c.say(t, "a LOGIN alice secret"); !strings.HasPrefix(r, "a OK") {
						t.Fatalf("IMAP LOGIN: %q", r)
					}
					authed = append(authed, c)
				case 5:
					c.say(t, "USER alice")
					if r := c.say(t, "PASS secret"); !strings.HasPrefix(r, "+OK") {
						t.Fatalf("POP3 PASS: %q", r)
					}
					authed = append(authed, c)
				}
			}
			var want []uint16
			for _, c := range pre {
				want = append(want, localPort(c))
			}
			slices.Sort(want)
			ctx := context.Background()
			var got []Conn
			var all []Conn
			// The login process hands a session over just after its OK:
			// wait for that, not for a fixed time.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var err error
				err = ns.Do(func() error {
					all, err = Conns(ctx, []uint16{110, 143})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				inodes, err := LoginInodes("/proc", LoginProcesses)
				if err != nil {
					t.Fatal(err)
				}
				got = PreAuth(all, inodes)
				var ports []uint16
				for _, c := range got {
					ports = append(ports, c.RemotePort)
				}
				slices.Sort(ports)
				if slices.Equal(ports, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pre-auth client ports %v, want %v (all: %+v)", ports, want, all)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(all) != 6 {
				t.Fatalf("%d connections listed, want 6", len(all))
			}
			// The BPF iterator that the daemon uses finds the same
			// sockets as the /proc walk (a login process that starts or
			// ends between the two reads: read both again).
			it, err := NewLoginIter(LoginProcesses)
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			for try := 0; ; try++ {
				walk, err := LoginInodes("/proc", LoginProcesses)
				if err != nil {
					t.Fatal(err)
				}
				iter, err := it.Inodes()
				if err != nil {
					t.Fatal(err)
				}
				if maps.Equal(walk, iter) && len(walk) > 0 {
					break
				}
				if try == 20 {
					t.Fatalf("iterator found %d login sockets, /proc %d", len(iter), len(walk))
				}
				time.Sleep(50 * time.Millisecond)
			}
			// The login iterator lists the pre-auth connections itself;
			// the index, those that have said nothing.
			if lc, err := login.AppendConns(nil); err != nil || !sameCookies(lc, got) {
				t.Errorf("login iterator: %+v, %v; PreAuth: %+v", lc, err, got)
			}
			silent, err := index.AppendConns(nil, 0)
			var ports, quiet []uint16
			for _, c := range silent {
				ports = append(ports, c.RemotePort)
			}
			for _, c := range pre[:3] {
				quiet = append(quiet, localPort(c))
			}
			slices.Sort(ports)
			slices.Sort(quiet)
			if err != nil || !slices.Equal(ports, quiet) {
				t.Errorf("index: silent client ports %v, %v; want %v", ports, err, quiet)
			}
			// The mode is really in force: a process per connection, or
			// several connections per process.
			procs := loginPIDs(t, got)
			switch {
			case mode == "high-security" && procs != len(got):
				t.Errorf("high-security: %d pre-auth connections in %d login processes, want one each", len(got), procs)
			case mode == "high-performance" && procs >= len(got):
				t.Errorf("high-performance: %d pre-auth connections in %d login processes, want them shared", len(got), procs)
			}
			var n int
			err = ns.Do(func() (err error) {
				n, err = DestroyConns(ctx, got)
				return err
			})
			if err != nil || n != len(pre) {
				t.Fatalf("destroyed %d, %v; want %d", n, err, len(pre))
			}
			for _, c := range pre {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.r.ReadByte(); err == nil || os.IsTimeout(err) {
					t.Errorf("pre-auth connection %d still open: %v", localPort(c), err)
				}
			}
			// The sessions live on.
			if r := authed[0].say(t, "b NOOP"); !strings.HasPrefix(r, "b OK") {
				t.Errorf("IMAP session after the eviction: %q", r)
			}
			if r := authed[1].say(t, "NOOP"); !strings.HasPrefix(r, "+OK") {
				t.Errorf("POP3 session after the eviction: %q", r)
			}
		})
	}
}

// sameCookies reports whether a and b list the same connections.
func sameCookies(a, b []Conn) bool {
	key := func(cs []Conn) []uint64 {
		var out []uint64
		for _, c := range cs {
			out = append(out, c.Cookie)
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

// loginPIDs counts the login processes that hold the connections.
func loginPIDs(t *testing.T, conns []Conn) int {
	t.Helper()
	want := map[string]bool{}
	for _, c := range conns {
		want[fmt.Sprintf("socket:[%d]", c.Inode)] = true
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	pids := map[string]bool{}
	for _, fd := range procs {
		if l, err := os.Readlink(fd); err == nil && want[l] {
			pids[strings.Split(fd, "/")[2]] = true
		}
	}
	return len(pids)
}
