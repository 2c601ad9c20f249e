package harness

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a named network namespace, visible to `ip netns` and nsenter.
type NS struct {
	Name   string
	handle netns.NsHandle
}

// Path is the namespace's bind mount, for nsenter --net=.
func (ns *NS) Path() string { return "/var/run/netns/" + ns.Name }

func newNS(name string) (*NS, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace; never let Go reuse it.
		runtime.LockOSThread()
		return nil, fmt.Errorf("return to the original netns: %w", err)
	}
	ns := &NS{Name: name, handle: h}
	err = ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("netns %s: lo up: %w", name, err)
	}
	return ns, nil
}

func (ns *NS) close() {
	ns.handle.Close()
	netns.DeleteNamed(ns.Name)
}

// Do runs fn on a thread switched into the namespace; the thread is thrown
// away afterwards so it can never serve another goroutine.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns.handle); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// veth joins a and b with a veth pair; both ends stay down until setup.
func veth(a *NS, ifA string, b *NS, ifB string) error {
	return a.Do(func() error {
		la := netlink.NewLinkAttrs()
		la.Name = ifA
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: ifB}); err != nil {
			return fmt.Errorf("add veth %s/%s: %w", ifA, ifB, err)
		}
		peer, err := netlink.LinkByName(ifB)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(peer, int(b.handle)); err != nil {
			return fmt.Errorf("move %s to %s: %w", ifB, b.Name, err)
		}
		return nil
	})
}

// setup adds addrs (IPv6 without DAD, so they work at once), brings the
// link up and makes routes on-link: the client's sources sit in many
// different /64s, which only an on-link route to the whole /32 reaches.
func setup(ns *NS, ifname string, addrs []netip.Prefix, onlink []netip.Prefix) error {
	return ns.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		for _, p := range addrs {
			a := &netlink.Addr{IPNet: ipnet(p)}
			if p.Addr().Is6() {
				a.Flags = unix.IFA_F_NODAD
			}
			if err := netlink.AddrAdd(l, a); err != nil {
				return fmt.Errorf("add %s to %s: %w", p, ifname, err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		for _, p := range onlink {
			r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet(p), Scope: netlink.SCOPE_LINK}
			if err := netlink.RouteReplace(r); err != nil {
				return fmt.Errorf("route %s dev %s: %w", p, ifname, err)
			}
		}
		return nil
	})
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
