package testutil

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// CrowdSpec describes a busy mail host's connections: N established TCP
// connections from a client namespace to a server namespace, spread
// evenly over Ports and over IPv4 and IPv6. On every other port the
// server listens dual-stack (its IPv4 peers are IPv4-mapped AF_INET6
// sockets), on the others with one socket per family.
type CrowdSpec struct {
	Label string
	Ports []uint16
	N     int
	// Greet ports: the server writes Greeting on every connection it
	// accepts there, and the client answers with Reply unless Silent says
	// the i-th connection is a bot that never speaks.
	Greet    map[uint16]bool
	Greeting []byte
	Reply    []byte
	Silent   func(i int) bool
}

// CrowdConns is the scan benchmarks' crowd size: 100,000 connections, or
// XDPGUARD_SCAN_CONNS to try them out smaller.
func CrowdConns() int {
	if n, err := strconv.Atoi(os.Getenv("XDPGUARD_SCAN_CONNS")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// MailHost is a large IMAP host's crowd for the scan benchmarks: n
// connections, half to IMAP and IMAPS (143, 993), where the server greets
// and every client but four in a hundred logs in and idles (IDLE), the
// rest silent slot holders; the other half to SMTP and submission (25,
// 587), which the daemon does not protect.
func MailHost(label string, n int) CrowdSpec {
	ports := []uint16{143, 993, 25, 587}
	return CrowdSpec{
		Label: label, Ports: ports, N: n,
		Greet:    map[uint16]bool{143: true, 993: true},
		Greeting: []byte("* OK [CAPABILITY IMAP4rev1] ready\r\n"),
		Reply:    []byte("a1 LOGIN user@example.org secret\r\na2 SELECT INBOX\r\na3 IDLE\r\n"),
		Silent:   func(i int) bool { return i%100 < len(ports) },
	}
}

// Crowd is a CrowdSpec built, with every connection open.
type Crowd struct {
	Server, Client   *NS
	Server4, Server6 netip.Addr
	Sources          []netip.Addr // client addresses, per family in turn
	listeners        []int

	mu    sync.Mutex
	fds   []int    // open, not parked yet
	parks [][2]int // socket pairs holding the rest in flight
	// parkFull: the last pair's queue is full.
	parkFull bool
	failed   atomic.Value // an error from an accepting goroutine
}

// Addresses: the server is .1, clients from .16 on (up to 32 of each
// family), all in 198.18.200.0/24 and 2001:db8:200::/64.
const crowdSources = 32

// NewCrowd builds the crowd and registers its removal (connections reset,
// namespaces deleted).
//
// The two ends of 100,000 connections are more descriptors than
// RLIMIT_NOFILE allows, and raising it needs CAP_SYS_RESOURCE, which a
// container's root may lack. So the sockets are parked: sent over a UNIX
// socket pair (SCM_RIGHTS) that nobody reads, and closed here. Descriptors
// in flight count against no process's limit (with CAP_SYS_ADMIN), and
// keep their sockets open until the pair is closed.
func NewCrowd(tb testing.TB, s CrowdSpec) *Crowd {
	tb.Helper()
	RequireRoot(tb)
	server := New(tb, s.Label+"s")
	c := &Crowd{
		Server:  server,
		Client:  ownEhash(tb, func() *NS { return New(tb, s.Label+"c") }),
		Server4: netip.MustParseAddr("198.18.200.1"),
		Server6: netip.MustParseAddr("2001:db8:200::1"),
	}
	tb.Cleanup(c.close) // before the namespaces go (cleanups run last first)
	var cli []netip.Prefix
	for i := range crowdSources {
		a4 := netip.AddrFrom4([4]byte{198, 18, 200, byte(16 + i)})
		a6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x02, 0x00, 15: byte(16 + i)})
		c.Sources = append(c.Sources, a4, a6)
		cli = append(cli, netip.PrefixFrom(a4, 24), netip.PrefixFrom(a6, 64))
	}
	Veth(tb, c.Server, "xgcrowd0", []netip.Prefix{netip.PrefixFrom(c.Server4, 24), netip.PrefixFrom(c.Server6, 64)},
		c.Client, "xgcrowd1", cli)
	accepted := c.listen(tb, s)
	if err := c.connect(s, accepted); err != nil {
		tb.Fatal(err)
	}
	// Every server end exists once accept has returned it.
	for deadline := time.Now().Add(time.Minute); accepted.Load() < int64(s.N); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("crowd: %d of %d connections accepted", accepted.Load(), s.N)
		}
	}
	return c
}

// parkBatch is how many descriptors one message carries (SCM_MAX_FD is
// 253).
const parkBatch = 250

// childEhash is the sysctl that gives namespaces created afterwards their
// own TCP established hash (Linux 6.1).
const childEhash = "/proc/sys/net/ipv4/tcp_child_ehash_entries"

// ownEhash runs mk with childEhash set, so that the namespace it creates
// keeps its sockets out of the host's established hash. The client ends
// of a crowd are the Internet, not the host: without this every dump on
// the server walks them too, twice the sockets a real host holds. The
// setting is put back at once; on an older kernel the client shares the
// host's hash (and scans cost more than on a real host).
func ownEhash(tb testing.TB, mk func() *NS) *NS {
	tb.Helper()
	old, err := os.ReadFile(childEhash)
	if err != nil {
		tb.Logf("crowd: %v: the client's sockets share the host's hash", err)
		return mk()
	}
	if err := os.WriteFile(childEhash, []byte("131072"), 0); err != nil {
		tb.Logf("crowd: %v: the client's sockets share the host's hash", err)
		return mk()
	}
	defer os.WriteFile(childEhash, old, 0)
	return mk()
}

// keep holds fd until the crowd is closed.
func (c *Crowd) keep(fd int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fds = append(c.fds, fd)
	if len(c.fds) < parkBatch {
		return nil
	}
	if len(c.parks) == 0 || c.parkFull {
		p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("crowd: park: %w", err)
		}
		// Room for every message: they are never read.
		unix.SetsockoptInt(p[0], unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
		unix.SetsockoptInt(p[1], unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		c.parks = append(c.parks, p)
		c.parkFull = false
	}
	p := c.parks[len(c.parks)-1]
	if err := unix.Sendmsg(p[0], []byte{0}, unix.UnixRights(c.fds...), nil, unix.MSG_DONTWAIT); err != nil {
		if err == unix.EAGAIN {
			c.parkFull = true // the next batch opens another pair
			return nil
		}
		return fmt.Errorf("crowd: park %d sockets: %w", len(c.fds), err)
	}
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = c.fds[:0]
	return nil
}

// listen opens the listeners in the server namespace and accepts on them
// until close.
func (c *Crowd) listen(tb testing.TB, s CrowdSpec) *atomic.Int64 {
	tb.Helper()
	var accepted atomic.Int64
	failed := &c.failed
	err := c.Server.Do(func() error {
		for i, port := range s.Ports {
			addrs := []netip.Addr{netip.IPv6Unspecified()}
			if i%2 == 1 {
				addrs = []netip.Addr{c.Server4, c.Server6}
			}
			for _, a := range addrs {
				fd, err := ListenOn(netip.AddrPortFrom(a, port))
				if err != nil {
					return err
				}
				c.listeners = append(c.listeners, fd)
				greet := s.Greet[port]
				go func() {
					for {
						nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
						if err == unix.EINTR || err == unix.ECONNABORTED {
							continue
						}
						if err != nil {
							return // shut down by close
						}
						if greet {
							unix.Write(nfd, s.Greeting)
						}
						if err := c.keep(nfd); err != nil {
							failed.Store(err)
							return
						}
						accepted.Add(1)
					}
				}()
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &accepted
}

// ListenOn opens a listening TCP socket on ap (backlog 4096) in the
// calling thread's namespace: call it within NS.Do.
func ListenOn(ap netip.AddrPort) (int, error) {
	fam := unix.AF_INET6
	if ap.Addr().Is4() {
		fam = unix.AF_INET
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if fam == unix.AF_INET6 {
		// [::] takes IPv4 too; a specific IPv6 address only IPv6.
		only := 0
		if !ap.Addr().IsUnspecified() {
			only = 1
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, only)
	}
	if err := unix.Bind(fd, sockaddr(ap)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %v: %w", ap, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// connect opens the connections from the client namespace, one thread,
// blocking connects, never more than a listen backlog ahead of accept.
func (c *Crowd) connect(s CrowdSpec, accepted *atomic.Int64) error {
	return c.Client.Do(func() error {
		deadline := time.Now().Add(3 * time.Minute)
		for i := range s.N {
			for int64(i)-accepted.Load() > 2048 {
				if time.Now().After(deadline) {
					return fmt.Errorf("crowd: accept stalled at %d of %d", accepted.Load(), i)
				}
				time.Sleep(time.Millisecond)
			}
			port := s.Ports[i%len(s.Ports)]
			src := c.Sources[(i/len(s.Ports))%len(c.Sources)]
			dst := c.Server4
			if src.Is6() {
				dst = c.Server6
			}
			fd, err := dialFrom(src, netip.AddrPortFrom(dst, port), deadline)
			if err != nil {
				return fmt.Errorf("crowd: connection %d of %d: %w", i, s.N, err)
			}
			if s.Greet[port] && (s.Silent == nil || !s.Silent(i)) {
				// Read the greeting first, as a client does: the reply
				// then comes after the server's last words.
				buf := make([]byte, len(s.Greeting))
				unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
				if err := retry(func() error { _, err := unix.Read(fd, buf); return err }); err != nil {
					return fmt.Errorf("crowd: greeting on connection %d: %w", i, err)
				}
				unix.Write(fd, s.Reply)
			}
			if err := c.keep(fd); err != nil {
				return err
			}
			if err, _ := c.failed.Load().(error); err != nil {
				return err
			}
		}
		return nil
	})
}

// Dial opens one more connection, from src in the client namespace to
// dst, which the crowd keeps open until it is removed.
func (c *Crowd) Dial(src netip.Addr, dst netip.AddrPort) error {
	return c.Client.Do(func() error {
		fd, err := dialFrom(src, dst, time.Now().Add(10*time.Second))
		if err != nil {
			return err
		}
		return c.keep(fd)
	})
}

// dialFrom connects from src (the kernel picks the port at connect, so one
// source serves many destinations), retrying while IPv6 neighbours settle.
func dialFrom(src netip.Addr, dst netip.AddrPort, deadline time.Time) (int, error) {
	fam := unix.AF_INET6
	if src.Is4() {
		fam = unix.AF_INET
	}
	for {
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		// Closing resets the connection at once: nothing lingers in
		// TIME_WAIT after the test.
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		if err = unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err == nil {
			err = unix.Connect(fd, sockaddr(dst))
			// Interrupted (the Go runtime's signals), the handshake goes
			// on: connect again until it says how it ended.
			for err == unix.EINTR || err == unix.EALREADY {
				time.Sleep(100 * time.Microsecond)
				if err = unix.Connect(fd, sockaddr(dst)); err == unix.EISCONN {
					err = nil
				}
			}
		}
		if err == nil {
			return fd, nil
		}
		unix.Close(fd)
		if (err != unix.ENETUNREACH && err != unix.EADDRNOTAVAIL && err != unix.ETIMEDOUT) || time.Now().After(deadline) {
			return -1, fmt.Errorf("%v -> %v: %w", src, dst, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// retry calls fn again while the Go runtime's signals interrupt it.
func retry(fn func() error) error {
	for {
		if err := fn(); err != unix.EINTR {
			return err
		}
	}
}

// close resets every connection and stops the listeners.
func (c *Crowd) close() {
	for _, fd := range c.listeners {
		unix.Shutdown(fd, unix.SHUT_RDWR) // wakes the blocked accept
		unix.Close(fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fd := range c.fds {
		unix.Close(fd)
	}
	c.fds = nil
	// Closing a pair drops the messages in its queue, and with them the
	// last references to the parked sockets.
	for _, p := range c.parks {
		unix.Close(p[0])
		unix.Close(p[1])
	}
	c.parks = nil
}
