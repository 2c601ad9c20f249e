// Package testutil gives kernel tests, the end-to-end test and the demo
// what they share: root checks (root.go), bpffs pin roots (pins.go), a
// private journald (journald.go), and throwaway network worlds (this
// file): named network namespaces joined by veth pairs. Names are registered under /var/run/netns so that
// `nsenter --net=/var/run/netns/NAME` and `ip -n NAME` see them too.
//
// Create, VethPair and Configure return errors, for callers that are not
// tests; New and Veth are their testing forms, which also remove what they
// made when the test ends, even when it fails.
package testutil

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

// Create makes a named namespace with lo up.
func Create(name string) (*NS, error) {
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
		// This thread is stuck in the new namespace: lock it a second
		// time so that the deferred unlock leaves it locked and Go
		// discards it instead of reusing it.
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
		ns.Close()
		return nil, fmt.Errorf("netns %s: lo up: %w", name, err)
	}
	return ns, nil
}

// Close deletes the namespace; interfaces in it go with it.
func (ns *NS) Close() error {
	ns.handle.Close()
	return netns.DeleteNamed(ns.Name)
}

// Path is the namespace's bind mount, for nsenter --net=.
func (ns *NS) Path() string { return "/var/run/netns/" + ns.Name }

// Do runs fn on an OS thread switched into the namespace. Sockets fn creates
// stay in the namespace after Do returns.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	// A fresh goroutine whose thread is thrown away afterwards (it exits
	// locked), so a thread left in the wrong namespace never serves another
	// goroutine.
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

// VethPair joins a and b with a veth pair named ifA (in a) and ifB (in b).
// Both ends stay down until Configure.
func VethPair(a *NS, ifA string, b *NS, ifB string) error {
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
		return netlink.LinkSetNsFd(peer, int(b.handle))
	})
}

// Configure adds addrs to ifname in ns (IPv6 ones skip DAD, so they work
// at once), sets the link up and adds on-link routes to onlink.
func Configure(ns *NS, ifname string, addrs, onlink []netip.Prefix) error {
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

var seq atomic.Uint32

// New creates a namespace for the test and registers its removal.
func New(t testing.TB, label string) *NS {
	t.Helper()
	RequireRoot(t)
	ns, err := Create(fmt.Sprintf("xg%d-%d-%s", os.Getpid(), seq.Add(1), label))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// Veth joins a and b with a veth pair, gives the ends addrs and sets them up.
func Veth(t testing.TB, a *NS, ifA string, addrsA []netip.Prefix, b *NS, ifB string, addrsB []netip.Prefix) {
	t.Helper()
	if err := VethPair(a, ifA, b, ifB); err != nil {
		t.Fatal(err)
	}
	if err := Configure(a, ifA, addrsA, nil); err != nil {
		t.Fatal(err)
	}
	if err := Configure(b, ifB, addrsB, nil); err != nil {
		t.Fatal(err)
	}
}
