package testutil

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RequireRoot skips the test unless it runs as root: BPF, namespaces,
// SOCK_DESTROY and a private journald all need it.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (BPF, network namespaces, SOCK_DESTROY)")
	}
}

// EnterNetns moves the calling goroutine's thread into a fresh, anonymous
// network namespace with lo up and addrs on it. Cleanup restores the original namespace;
// the new one disappears once its last socket closes. Every socket of the
// test must be created on this goroutine.
func EnterNetns(t testing.TB, addrs ...netip.Addr) {
	t.Helper()
	RequireRoot(t)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("netns.New: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime then discards it
			// with the goroutine instead of reusing a thread stuck in
			// the test namespace.
			t.Errorf("restore netns: %v", err)
			return
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	// Route messages only: with no family named, the handle also opens
	// XFRM and netfilter sockets, which fail where their modules are not
	// loaded (the kernel matrix's VMs load none on demand).
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once
		}
		if err := h.AddrAdd(lo, addr); err != nil {
			t.Fatalf("add %v to lo: %v", a, err)
		}
	}
	// The kernel installs an IPv6 address's local route from a work
	// queue, even with NODAD; dialling before that fails with "network is
	// unreachable". This is an event the test waits for, not a timing
	// assumption: the deadline only bounds a broken kernel.
	for _, a := range addrs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			routes, err := h.RouteGet(a.AsSlice())
			if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no local route for %v: %v %v", a, routes, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
