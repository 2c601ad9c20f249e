package daemon

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// notifier speaks systemd's sd_notify protocol: one datagram per state
// change on the unix socket named by $NOTIFY_SOCKET. It is a few lines
// rather than coreos/go-systemd/daemon because it needs no library and the
// protocol is stable (sd_notify(3)). Outside systemd (no $NOTIFY_SOCKET)
// every method does nothing.
type notifier struct {
	conn *net.UnixConn
	log  *slog.Logger
	// watchdog is half of WatchdogSec, as sd_watchdog_enabled(3) advises:
	// a ping per period keeps systemd from killing a live daemon that was
	// merely slow for one tick. 0: no watchdog.
	watchdog time.Duration
	lastPing time.Time
}

// newNotifier reads the environment systemd gives a Type=notify service and
// unsets it, so that nothing the daemon starts notifies in its name.
func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log}
	path := os.Getenv("NOTIFY_SOCKET")
	usec, _ := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	pid := os.Getenv("WATCHDOG_PID")
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(k)
	}
	if path == "" {
		return n
	}
	// A leading '@' (an abstract socket) is translated by package net.
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		log.Warn("systemd notify socket unusable; readiness and watchdog not reported", "error", err)
		return n
	}
	n.conn = conn
	if usec > 0 && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		n.watchdog = time.Duration(usec) * time.Microsecond / 2
	}
	return n
}

func (n *notifier) send(state string) {
	if n.conn == nil {
		return
	}
	if _, err := n.conn.Write([]byte(state)); err != nil {
		n.log.Warn("systemd notify", "state", state, "error", err)
	}
}

// ready tells systemd that the program is attached and the logs are open:
// `systemctl start` returns only then, so units ordered after xdpguard
// start with the protection in force.
func (n *notifier) ready() {
	n.send("READY=1\nSTATUS=attached; following the logs")
}

// alive pings the watchdog when a ping is due. It is called from the main
// loop's tick, so a loop stuck on anything stops the pings and systemd
// restarts the daemon (WatchdogSec, Restart=on-failure).
func (n *notifier) alive(now time.Time) {
	if n.watchdog <= 0 || now.Sub(n.lastPing) < n.watchdog {
		return
	}
	n.lastPing = now
	n.send("WATCHDOG=1")
}

// stopping is sent before the daemon saves its state and exits, so that
// systemd does not count the time that takes as a hang.
func (n *notifier) stopping() {
	n.send("STOPPING=1")
	if n.conn != nil {
		n.conn.Close()
		n.conn = nil
	}
}
