package daemon

import (
	"log/slog"
	"net"
)

// exposed reports whether a listening address is reachable from other
// hosts: anything but loopback, the unspecified address (0.0.0.0, ::)
// included.
func exposed(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return !ok || !t.IP.IsLoopback()
}

// warnExposed says so when the metrics endpoint listens beyond loopback: it
// has no authentication, and its counters and ban figures tell an attacker
// how the defence is doing.
func warnExposed(a net.Addr, log *slog.Logger) {
	if exposed(a) {
		log.Warn("metrics.listen is not a loopback address: anyone who can reach it reads xdpguard's counters (no authentication); bind 127.0.0.1 or firewall the port",
			"listen", a.String())
	}
}
