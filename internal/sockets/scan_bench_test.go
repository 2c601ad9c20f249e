package sockets

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// benchMaxBytes is slot_holders.max_bytes' default.
const benchMaxBytes = 32

// BenchmarkScan measures one slot check's dump with 100,000 established
// connections on the host (make bench-scan; BENCHMARKS.md).
func BenchmarkScan(b *testing.B) {
	n := testutil.CrowdConns()
	crowd := testutil.NewCrowd(b, testutil.MailHost("scanb", n))
	benchProtected := []uint16{143, 993}
	ctx := context.Background()
	want := n / 2
	run := func(name string, fn func() (int, error)) {
		b.Run(name, func(b *testing.B) {
			err := crowd.Server.Do(func() error {
				for range b.N {
					n, err := fn()
					if err != nil {
						return err
					}
					if n != want {
						b.Errorf("%s: %d connections, want %d", name, n, want)
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
	count := func(f bool) func() (int, error) {
		return func() (int, error) {
			cs, err := conns(ctx, nil, benchProtected, f)
			return len(cs), err
		}
	}
	run("unfiltered", count(false))
	run("bytecode", count(true))
	run("vishvananda-netlink", func() (int, error) {
		n := 0
		for _, fam := range []uint8{unix.AF_INET6, unix.AF_INET} {
			rs, err := netlink.SocketDiagTCPInfo(fam)
			if err != nil {
				return 0, err
			}
			for _, r := range rs {
				if s := r.InetDiagMsg; s.State == tcpEstab && (s.ID.SourcePort == 143 || s.ID.SourcePort == 993) && r.TCPInfo != nil {
					n++
				}
			}
		}
		return n, nil
	})
	want = 0
	// The floor: the kernel walks its established hash and the filter
	// rejects every socket.
	run("walk-only", func() (int, error) {
		c, done, err := dialCtx(ctx)
		if err != nil {
			return 0, err
		}
		defer done()
		n := 0
		q := query{family: unix.AF_UNSPEC, states: 1 << tcpEstab, bc: bytecode(portTerms([]uint16{1}))}
		err = c.dump(q, func([]byte) { n++ })
		return n, err
	})
	none := []netip.Prefix{netip.MustParsePrefix("198.18.201.0/24"), netip.MustParsePrefix("2001:db8:201::/64")}
	// The index, as the slot check reads it: its first scan drops the
	// logged-in sessions (timed apart), the next ones list the silent
	// connections, 2 in 100 (MailHost).
	var ci *ConnIndex
	var first time.Duration
	err := crowd.Server.Do(func() (err error) {
		if ci, err = NewConnIndex(benchProtected, IndexSize); err != nil {
			return err
		}
		t := time.Now()
		_, err = ci.AppendConns(nil, benchMaxBytes)
		first = time.Since(t)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	defer ci.Close()
	b.Logf("index: first scan %v (drops the logged-in sessions)", first)
	want = n / 50
	var cs []Conn
	run("index", func() (int, error) {
		var err error
		cs, err = ci.AppendConns(cs[:0], benchMaxBytes)
		return len(cs), err
	})
	want = 0
	run("destroy-no-match", func() (int, error) { return DestroyAll(ctx, none, benchProtected) })
	run("waiting", func() (int, error) { return Waiting(ctx, benchProtected) })
}

// BenchmarkLogin finds the pre-auth connections as eviction does under
// pressure, on a host with no other processes and on one with 3,000 idle
// processes of ten descriptors each, which stand in for the imap
// processes of a host's logged-in sessions (one each): the kernel's table
// of login processes (AppendConns), a task_file iterator over every
// process (Inodes) and the /proc walk (LoginInodes).
func BenchmarkLogin(b *testing.B) {
	testutil.RequireRoot(b)
	for _, procs := range []int{0, 3000} {
		idle := idleProcs(b, procs)
		it, err := NewLoginIter(LoginProcesses, 110, 143)
		if err != nil {
			b.Fatal(err)
		}
		for name, fn := range map[string]func() error{
			"table":     func() error { _, err := it.AppendConns(nil); return err },
			"task_file": func() error { _, err := it.Inodes(); return err },
			"proc":      func() error { _, err := LoginInodes("/proc", LoginProcesses); return err },
		} {
			b.Run(fmt.Sprintf("%s/procs=%d", name, procs), func(b *testing.B) {
				for b.Loop() {
					if err := fn(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		it.Close()
		idle()
	}
}

// idleProcs starts n sleeping processes holding ten descriptors each, and
// returns what stops them.
func idleProcs(b *testing.B, n int) (stop func()) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
		cmds = nil
	}
	b.Cleanup(stop)
	for range n {
		c := exec.Command("sleep", "600")
		c.ExtraFiles = slices.Repeat([]*os.File{null}, 10)
		c.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	return stop
}
