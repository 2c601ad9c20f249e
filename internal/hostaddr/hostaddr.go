// Package hostaddr lists the host's own addresses. No layer ever bans them:
// a ban on one would cut the host off from itself (and, through a manual
// ban, its operator from the host).
package hostaddr

import (
	"net"
	"net/netip"
)

// Set holds the addresses of every interface in the caller's network
// namespace (the host's, when xdpguard runs there), IPv4 unmapped. It is
// empty, not nil, when the interfaces cannot be read: that only means no
// extra protection, never a failed start.
func Set() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}
