package sockets

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/bpf"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

func TestConnRecLayout(t *testing.T) {
	var r bpf.SocketsConnRec
	for name, c := range map[string][2]uintptr{
		"family":   {unsafe.Offsetof(r.Family), recFamily},
		"state":    {unsafe.Offsetof(r.State), recState},
		"lport":    {unsafe.Offsetof(r.Lport), recLport},
		"rport":    {unsafe.Offsetof(r.Rport), recRport},
		"inode":    {unsafe.Offsetof(r.Inode), recInode},
		"ifindex":  {unsafe.Offsetof(r.Ifindex), recIfindex},
		"laddr":    {unsafe.Offsetof(r.Laddr), recLaddr},
		"raddr":    {unsafe.Offsetof(r.Raddr), recRaddr},
		"cookie":   {unsafe.Offsetof(r.Cookie), recCookie},
		"received": {unsafe.Offsetof(r.BytesReceived), recReceived},
		"acked":    {unsafe.Offsetof(r.BytesAcked), recAcked},
		"recv":     {unsafe.Offsetof(r.SinceRecv), recRecv},
		"ack":      {unsafe.Offsetof(r.SinceAck), recAck},
		"sent":     {unsafe.Offsetof(r.SinceSent), recSent},
		"unacked":  {unsafe.Offsetof(r.Unacked), recUnacked},
		"size":     {unsafe.Sizeof(r), recLen},
	} {
		if c[0] != c[1] {
			t.Errorf("conn_rec.%s at %d, decoded at %d", name, c[0], c[1])
		}
	}
}

// indexWorld is a namespace with a dual-stack listener on 143 and an
// IPv4 one on 110 (protected), and a dual-stack one on 25 (not).
type indexWorld struct {
	ns        *testutil.NS
	listeners map[uint16]int
}

var indexPorts = []uint16{110, 143}

func newIndexWorld(t *testing.T) *indexWorld {
	w := &indexWorld{ns: testutil.New(t, "connidx"), listeners: map[uint16]int{}}
	err := w.ns.Do(func() error {
		for _, ap := range []string{"[::]:143", "127.0.0.1:110", "[::]:25"} {
			a := netip.MustParseAddrPort(ap)
			fd, err := testutil.ListenOn(a)
			if err != nil {
				return err
			}
			w.listeners[a.Port()] = fd
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, fd := range w.listeners {
			unix.Close(fd)
		}
	})
	return w
}

// dial connects to dst and, with accept, takes the server end from the
// listener (else it stays in the accept queue); say is sent to the
// server. It returns the server end (-1 when not accepted).
func (w *indexWorld) dial(t *testing.T, dst string, accept bool, say string) int {
	t.Helper()
	ap := netip.MustParseAddrPort(dst)
	server := -1
	err := w.ns.Do(func() error {
		fam := unix.AF_INET6
		if ap.Addr().Is4() {
			fam = unix.AF_INET
		}
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Connect(fd, sockaddr(ap)); err != nil {
			return err
		}
		if say != "" {
			unix.Write(fd, []byte(say))
		}
		if accept {
			if server, _, err = unix.Accept4(w.listeners[ap.Port()], unix.SOCK_CLOEXEC); err != nil {
				return err
			}
			t.Cleanup(func() { unix.Close(server) })
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return server
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

func (w *indexWorld) index(t *testing.T) *ConnIndex {
	t.Helper()
	var ci *ConnIndex
	err := w.ns.Do(func() (err error) {
		ci, err = NewConnIndex(indexPorts, IndexSize)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ci.Close() })
	return ci
}

// dump is what inet_diag lists.
func (w *indexWorld) dump(t *testing.T) []Conn {
	t.Helper()
	var cs []Conn
	err := w.ns.Do(func() (err error) {
		cs, err = Conns(context.Background(), indexPorts)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// byCookie returns a function that keys a listing by cookie, for the
// results of the listing functions.
func byCookie(t *testing.T) func([]Conn, error) map[uint64]Conn {
	return func(cs []Conn, err error) map[uint64]Conn {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint64]Conn{}
		for _, c := range cs {
			if _, dup := out[c.Cookie]; dup {
				t.Errorf("connection %d listed twice", c.Cookie)
			}
			out[c.Cookie] = c
		}
		return out
	}
}

// sameConn compares what the index says of a connection with inet_diag;
// the timings were read apart, at most apart (what the test measured: on
// a busy machine, seconds), and are in ticks.
func sameConn(t *testing.T, got, want Conn, apart time.Duration) {
	t.Helper()
	near := func(a, b time.Duration) bool { return (a - b).Abs() <= apart+100*time.Millisecond }
	if got.Remote != want.Remote || got.Port != want.Port || got.RemotePort != want.RemotePort ||
		got.Inode != want.Inode || got.id != want.id || got.Received != want.Received ||
		got.BytesAcked != want.BytesAcked || got.Unacked != want.Unacked ||
		!near(got.Idle, want.Idle) || !near(got.SinceAck, want.SinceAck) || !near(got.SinceSent, want.SinceSent) {
		t.Errorf("index %+v\ndump  %+v", got, want)
	}
}

// The index lists the connections inet_diag lists on the protected ports,
// with the same identity and counts, up to the bytes it is asked for:
// IPv4, IPv6 and IPv4-mapped, accepted or in the accept queue, seeded at
// load or seen as they come. One that received more is dropped for good.
// The login iterator lists those a login process holds (this test's
// process stands in for one), as PreAuth does from the dump.
func TestConnIndexMatchesDump(t *testing.T) {
	testutil.RequireRoot(t)
	self := selfComm(t)
	w := newIndexWorld(t)

	// Before the index: seeded; the other port's is not listed at all.
	w.dial(t, "127.0.0.1:143", true, "")
	w.dial(t, "[::1]:143", false, "")
	w.dial(t, "127.0.0.1:25", true, "")
	ci := w.index(t)
	// After: seen as their handshakes complete.
	talk := w.dial(t, "127.0.0.1:110", true, "a1 LOGIN\r\n")
	w.dial(t, "[::1]:143", true, "")
	w.dial(t, "127.0.0.1:143", false, "")
	w.dial(t, "[::1]:25", true, "")

	// Data on loopback is delivered by the time the sender's write
	// returns, so one dump is the truth.
	start := time.Now()
	dumped := w.dump(t)
	want := byCookie(t)(dumped, nil)
	if len(want) != 5 {
		t.Fatalf("inet_diag lists %d connections, want 5", len(want))
	}
	got := byCookie(t)(ci.AppendConns(nil, 1<<40))
	apart := time.Since(start)
	if len(got) != len(want) {
		t.Errorf("index lists %d connections, inet_diag %d", len(got), len(want))
	}
	for k, c := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("index misses %+v", c)
			continue
		}
		sameConn(t, g, c, apart)
	}
	if g := got[cookieOf(t, talk)]; g.Received != uint64(len("a1 LOGIN\r\n")) {
		t.Errorf("talking connection: received %d", g.Received)
	}

	// Over the bytes: dropped, and not listed again under a larger bound.
	for _, max := range []uint64{4, 1 << 40} {
		got := byCookie(t)(ci.AppendConns(nil, max))
		if _, ok := got[cookieOf(t, talk)]; ok || len(got) != 4 {
			t.Errorf("max %d bytes: %d listed (the talking one: %v), want the 4 others", max, len(got), ok)
		}
	}

	// The login processes' connections: the accepted ones.
	li, err := func() (li *LoginIter, err error) {
		err = w.ns.Do(func() error {
			li, err = NewLoginIter([]string{"no-such-login", self}, indexPorts...)
			return err
		})
		return li, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	defer li.Close()
	inodes, err := LoginInodes("/proc", []string{self})
	if err != nil {
		t.Fatal(err)
	}
	pre := byCookie(t)(PreAuth(dumped, inodes), nil)
	lc := byCookie(t)(li.AppendConns(nil))
	apart = time.Since(start)
	if len(pre) != 3 || len(lc) != len(pre) {
		t.Errorf("login iterator lists %d connections, PreAuth %d, want 3", len(lc), len(pre))
	}
	for k, c := range pre {
		if g, ok := lc[k]; !ok {
			t.Errorf("login iterator misses %+v", c)
		} else {
			sameConn(t, g, c, apart)
		}
	}
}

// A connection the index has no room for makes every scan say so: the
// caller must not take a partial list for the whole.
func TestConnIndexFull(t *testing.T) {
	testutil.RequireRoot(t)
	w := newIndexWorld(t)
	var ci *ConnIndex
	err := w.ns.Do(func() (err error) {
		ci, err = NewConnIndex(indexPorts, 2)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ci.Close()
	for range 3 {
		w.dial(t, "127.0.0.1:143", true, "")
	}
	for range 2 {
		if cs, err := ci.AppendConns(nil, 1<<40); !errors.Is(err, ErrIndexFull) || len(cs) != 2 {
			t.Fatalf("%d listed, %v; want 2 and ErrIndexFull", len(cs), err)
		}
	}
}

// Where the kernel's config says its HZ, the measurement agrees.
func TestMeasureHZ(t *testing.T) {
	testutil.RequireRoot(t)
	want := configHZ()
	if want == 0 {
		t.Skip("no kernel config to check against")
	}
	ci := newIndexWorld(t).index(t)
	got, err := measureHZ(func() (bpf.SocketsConnEnd, error) {
		_, end, err := ci.read(math.MaxUint64)
		return end, err
	})
	if err != nil || got != want {
		t.Fatalf("measured HZ %d, %v; CONFIG_HZ=%d", got, err, want)
	}
}

func cookieOf(t *testing.T, fd int) uint64 {
	t.Helper()
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
