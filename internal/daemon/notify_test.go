package daemon

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// notifySocket listens where systemd would and returns what arrives.
func notifySocket(t *testing.T, name string) (*net.UnixConn, string) {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, name
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func noDatagram(t *testing.T, conn *net.UnixConn, after string) {
	t.Helper()
	buf := make([]byte, 512)
	// Datagrams on a local socket arrive before Write returns; a short
	// deadline only bounds the wait for one that was never sent.
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("%s: unexpected datagram %q", after, buf[:n])
	}
}

func TestNotifierProtocol(t *testing.T) {
	conn, path := notifySocket(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	n := newNotifier(slog.Default())
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q left in the environment for children to inherit", k, v)
		}
	}
	n.ready()
	if got := recv(t, conn); !strings.HasPrefix(got, "READY=1\n") {
		t.Fatalf("ready sent %q", got)
	}

	// WatchdogSec=2s: a ping at most every second, the first at once.
	t0 := time.Now()
	n.alive(t0)
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("first ping %q", got)
	}
	n.alive(t0.Add(500 * time.Millisecond))
	noDatagram(t, conn, "ping after half a period")
	n.alive(t0.Add(time.Second))
	if got := recv(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("ping after a period: %q", got)
	}

	n.stopping()
	if got := recv(t, conn); got != "STOPPING=1" {
		t.Fatalf("stopping sent %q", got)
	}
	n.alive(t0.Add(time.Hour)) // after stopping: nothing, and no panic
	noDatagram(t, conn, "ping after stopping")
}

func TestNotifierAbstractSocket(t *testing.T) {
	name := "@xdpguard-deb-notify-" + strconv.Itoa(os.Getpid())
	conn, _ := notifySocket(t, name)
	t.Setenv("NOTIFY_SOCKET", name)
	newNotifier(slog.Default()).ready()
	if got := recv(t, conn); !strings.HasPrefix(got, "READY=1") {
		t.Fatalf("ready on an abstract socket sent %q", got)
	}
}

func TestNotifierWatchdogForAnotherPID(t *testing.T) {
	conn, path := notifySocket(t, filepath.Join(t.TempDir(), "notify"))
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", "1") // the watchdog is meant for another process
	n := newNotifier(slog.Default())
	n.alive(time.Now())
	noDatagram(t, conn, "watchdog meant for pid 1")
}

func TestNotifierOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier(slog.Default())
	n.ready()
	n.alive(time.Now())
	n.stopping()
	if n.conn != nil {
		t.Fatal("a connection without NOTIFY_SOCKET")
	}
}
