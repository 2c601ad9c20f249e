package daemon

import (
	"context"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/sockets"
)

// priorityState is the daemon's side of priority steering
// (known_good.priority_ports, internal/bpf/priority.c): the attached
// program, and which listeners it was told of. Only the main loop touches
// it.
type priorityState struct {
	p *datapath.Priority
	// ports maps each protected port to its priority listener's port,
	// from the configuration's entries for protected ports.
	ports map[uint16]uint16
	// reported holds the listeners logged as missing, so that a server
	// without them is said once, not every tick.
	reported map[listenerKey]bool
}

type listenerKey struct {
	port   uint16 // the protected port
	family int
}

// startPriority attaches the steering program to the daemon's network
// namespace. Steering is an addition, not the protection: a failure is
// logged and the daemon goes on without it.
func (d *Daemon) startPriority() {
	ps := &d.priority
	ps.ports = map[uint16]uint16{}
	for _, port := range d.cfg.Kernel.Ports {
		if to, ok := d.cfg.KnownGood.PriorityPorts[port]; ok {
			ps.ports[port] = to
		}
	}
	if len(ps.ports) == 0 || d.cfg.Kernel.Monitor || d.cfg.KnownGood.MaxEntries == 0 {
		return
	}
	p, err := d.guard.AttachPriority("/proc/self/ns/net")
	if err != nil {
		d.log.Error("priority steering for known-good sources is off", "error", err)
		return
	}
	ps.p, ps.reported = p, map[listenerKey]bool{}
	d.syncPriority(context.Background())
}

// syncPriority gives the steering program the server's priority
// listeners it does not have yet: at start, and again after the server
// closed one (a restart: the kernel drops a closed socket from the map).
// When every listener is in place it costs one map lookup per port.
func (d *Daemon) syncPriority(ctx context.Context) {
	ps := &d.priority
	if ps.p == nil {
		return
	}
	missing := map[listenerKey]bool{}
	var ports []uint16
	for from, to := range ps.ports {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			if !ps.p.HasListener(from, fam) {
				missing[listenerKey{from, fam}] = true
				ports = append(ports, to)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	ls, err := sockets.Listeners(ctx, ports)
	if err != nil {
		d.slotError("find the priority listeners", err)
		return
	}
	back := map[uint16]uint16{}
	for from, to := range ps.ports {
		back[to] = from
	}
	var inodes []uint32
	for _, l := range ls {
		inodes = append(inodes, l.Inode)
	}
	files, err := sockets.DupSockets("/proc", inodes)
	if err != nil {
		d.slotError("take hold of the priority listeners", err)
		return
	}
	for _, l := range ls {
		f := files[l.Inode]
		k := listenerKey{back[l.Addr.Port()], familyOf(l.Addr.Addr())}
		if f == nil || !missing[k] {
			if f != nil {
				f.Close()
			}
			continue // no holder left: found again next tick
		}
		err := ps.p.SetListener(k.port, k.family, f)
		f.Close() // the map holds the socket itself
		if err != nil {
			d.log.Error("priority listener not used", "port", k.port, "listener", l.Addr, "error", err)
			continue
		}
		delete(missing, k)
		delete(ps.reported, k)
		d.log.Info("known-good sources go to the priority listener", "port", k.port, "listener", l.Addr)
	}
	for k := range missing {
		if !ps.reported[k] {
			ps.reported[k] = true
			d.log.Info("no priority listener: known-good sources wait in the same queue as all others",
				"port", k.port, "family", familyName(k.family), "want_port", ps.ports[k.port])
		}
	}
}

// close releases the daemon's handles; a pinned program stays attached.
func (ps *priorityState) close() {
	if ps.p != nil {
		ps.p.Close()
	}
}

func familyOf(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func familyName(f int) string {
	if f == unix.AF_INET {
		return "ipv4"
	}
	return "ipv6"
}
