package sockets

import (
	"maps"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

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
