// Package nstest builds throwaway network worlds for kernel tests: named
// network namespaces joined by veth pairs, torn down when the test ends,
// even when it fails. Names are registered under /var/run/netns so that
// `nsenter --net=/var/run/netns/NAME` and `ip -n NAME` see them too.
package nstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a named network namespace.
type NS struct {
	Name   string
	handle netns.NsHandle
}

var seq atomic.Uint32

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and BPF")
	}
}

// New creates a namespace with lo up and registers its removal.
func New(t testing.TB, label string) *NS {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("xg%d-%d-%s", os.Getpid(), seq.Add(1), label)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to the original netns: %v", err)
	}
	ns := &NS{Name: name, handle: h}
	t.Cleanup(func() {
		h.Close()
		netns.DeleteNamed(name)
	})
	if err := ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// Path is the namespace's bind mount, for nsenter --net=.
func (ns *NS) Path() string { return "/var/run/netns/" + ns.Name }

// Do runs fn on an OS thread switched into the namespace. Sockets fn creates
// stay in the namespace after Do returns.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	// A fresh goroutine whose thread is thrown away afterwards, so a thread
	// left in the wrong namespace can never serve another goroutine.
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

// Veth joins a and b with a veth pair named ifA (in a) and ifB (in b), sets
// both up and gives them addrs. IPv6 addresses skip DAD so they work at once.
func Veth(t testing.TB, a *NS, ifA string, addrsA []netip.Prefix, b *NS, ifB string, addrsB []netip.Prefix) {
	t.Helper()
	err := a.Do(func() error {
		la := netlink.NewLinkAttrs()
		la.Name = ifA
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: ifB}); err != nil {
			return fmt.Errorf("add veth %s/%s: %w", ifA, ifB, err)
		}
		peer, err := netlink.LinkByName(ifB)
		if err != nil {
			return err
		}
		return netlink.LinkSetNsFd(peer, int(b.handle))
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		ns    *NS
		ifc   string
		addrs []netip.Prefix
	}{{a, ifA, addrsA}, {b, ifB, addrsB}} {
		if err := side.ns.Do(func() error { return configure(side.ifc, side.addrs) }); err != nil {
			t.Fatal(err)
		}
	}
}

func configure(ifname string, addrs []netip.Prefix) error {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, ifname, err)
		}
	}
	return netlink.LinkSetUp(l)
}
