package sockets

import (
	"errors"
	"maps"
	"net"
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

// The iterator finds the sockets of the processes it is given by name, and
// only theirs, as the /proc walk does. This test's own process stands in
// for a login process, so it runs in the kernel matrix, where there is no
// Dovecot (TestPreAuthRealDovecot compares the two against Dovecot).
func TestLoginIterFindsItsProcess(t *testing.T) {
	testutil.RequireRoot(t)
	self := selfComm(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var st syscall.Stat_t
	rc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { err = syscall.Fstat(int(fd), &st) })
	if err != nil {
		t.Fatal(err)
	}

	it, err := NewLoginIter([]string{"no-such-login", self})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	got, err := it.Inodes()
	if err != nil {
		t.Fatal(err)
	}
	if !got[uint32(st.Ino)] {
		t.Fatalf("the iterator did not find this process's socket %d among %d", st.Ino, len(got))
	}
	if walk, err := LoginInodes("/proc", []string{self}); err != nil || !maps.Equal(walk, got) {
		t.Fatalf("/proc walk %v (%v), iterator %v", walk, err, got)
	}

	other, err := NewLoginIter([]string{"no-such-login"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got, err := other.Inodes(); err != nil || len(got) != 0 {
		t.Fatalf("no process of that name, got %v, %v", got, err)
	}
}

func TestLoginIterNames(t *testing.T) {
	for _, names := range [][]string{{"a", "b", "c", "d", "e"}, {""}, {"a-name-of-16-chr"}} {
		if _, err := NewLoginIter(names); err == nil {
			t.Errorf("%q: no error", names)
		}
	}
}

// selfComm is this process's name, which the tests give the iterators as
// a login process's.
func selfComm(t *testing.T) string {
	t.Helper()
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(comm))
}

// The kernel's table of login processes follows them: one that existed
// before the load (the seed) and one started after it (the exec hook) are
// listed with their connections; once they exit (the exit hook) they and
// their connections are gone. The test's own end of each connection,
// held by a process of another name, is never listed.
func TestLoginIterFollowsProcesses(t *testing.T) {
	ns := testutil.New(t, "loginiter")
	const name = "xg-fake-login"
	bin := fakeLogin(t, name)
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", "127.0.0.1:143"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A login process: the server's end of a connection to 143 as
	// descriptor 3, which only it holds.
	start := func() (*exec.Cmd, uint16) {
		var client net.Conn
		if err := ns.Do(func() (err error) { client, err = net.Dial("tcp", "127.0.0.1:143"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		server, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		f, err := server.(*net.TCPConn).File()
		server.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), fakeLoginEnv+"=1")
		cmd.ExtraFiles = []*os.File{f}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { testutil.Stop(cmd, 0) })
		return cmd, uint16(client.LocalAddr().(*net.TCPAddr).Port)
	}
	listed := func(it *LoginIter, want ...uint16) {
		t.Helper()
		var got []uint16
		for try := 0; try < 200; try++ {
			conns, err := it.AppendConns(nil)
			if err != nil {
				t.Fatal(err)
			}
			got = got[:0]
			for _, c := range conns {
				got = append(got, c.RemotePort)
			}
			slices.Sort(got)
			slices.Sort(want)
			if slices.Equal(got, want) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("login connections from ports %v, want %v", got, want)
	}

	before, p1 := start()
	var it *LoginIter
	if err := ns.Do(func() (err error) { it, err = NewLoginIter([]string{name}, 143); return err }); err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	listed(it, p1)
	after, p2 := start()
	listed(it, p1, p2)

	testutil.Stop(before, 0)
	listed(it, p2)
	testutil.Stop(after, 0)
	listed(it)
	var n int
	for it2 := it.objs.Tasks.Iterate(); it2.Next(new(uint32), new(uint64)); {
		n++
	}
	if n != 0 {
		t.Errorf("%d login processes still in the table after both exited", n)
	}
}

// A login process the table has no room for makes every scan say so:
// the daemon must not take a partial list for the whole.
func TestLoginIterFull(t *testing.T) {
	ns := testutil.New(t, "loginfull")
	const name = "xg-fake-full"
	bin := fakeLogin(t, name)
	for range 2 {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), fakeLoginEnv+"=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { testutil.Stop(cmd, 0) })
	}
	defer func(n uint32) { loginTableSize = n }(loginTableSize)
	loginTableSize = 1
	var it *LoginIter
	if err := ns.Do(func() (err error) { it, err = NewLoginIter([]string{name}, 143); return err }); err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if _, err := it.AppendConns(nil); !errors.Is(err, ErrIndexFull) {
		t.Fatalf("two login processes in a table of one: %v, want ErrIndexFull", err)
	}
}

// fakeLoginEnv makes this test binary a stand-in login process: it holds
// the descriptors it was given until it is killed, or for an hour. (Not /bin/sleep under
// another name: in the kernel matrix's initramfs that is busybox, which
// knows no applet of that name.)
const fakeLoginEnv = "XDPGUARD_FAKE_LOGIN"

func init() {
	if os.Getenv(fakeLoginEnv) == "1" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
}

// fakeLogin is this test binary under name, for a process whose comm is
// name.
func fakeLogin(t *testing.T, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if os.Link(self, bin) == nil {
		return bin
	}
	src, err := os.ReadFile(self)
	if err == nil {
		err = os.WriteFile(bin, src, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
