package daemon

import (
	"context"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/sockets"
)

// priorityState is the daemon's side of priority steering
// (internal/bpf/priority.c): the attached program, and which of the
// server's tier listeners it was given. Only the main loop touches it.
type priorityState struct {
	p *datapath.Priority
	// ports maps each tier's listeners to their ports: for each protected
	// port, from known_good.priority_ports and
	// slot_holders.pressure.evict.fresh_ports.
	ports map[datapath.Listener]uint16
	// fresh is whether the fresh tier is on (slot pressure).
	fresh bool
	// reported holds the listeners logged as missing, so that a server
	// without them is said once, not every tick.
	reported map[datapath.Listener]bool
}

// startPriority attaches the steering program to the daemon's network
// namespace. Steering is an addition, not the protection: a failure is
// logged and the daemon goes on without it.
func (d *Daemon) startPriority() {
	ps := &d.priority
	ps.ports = map[datapath.Listener]uint16{}
	for _, port := range d.cfg.Kernel.Ports {
		for tier, m := range map[datapath.Tier]map[uint16]uint16{
			datapath.TierKnownGood: d.cfg.KnownGood.PriorityPorts,
			datapath.TierFresh:     d.cfg.SlotHolders.Pressure.Evict.FreshPorts,
		} {
			if tier == datapath.TierKnownGood && d.cfg.KnownGood.MaxEntries == 0 {
				continue // nobody is known-good
			}
			if tier == datapath.TierFresh && !d.cfg.SlotHolders.Pressure.Evict.Enabled {
				continue // the fresh queue would wait for slots nobody frees
			}
			if to, ok := m[port]; ok {
				for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
					ps.ports[datapath.Listener{Port: port, Family: fam, Tier: tier}] = to
				}
			}
		}
	}
	if len(ps.ports) == 0 || d.cfg.Kernel.Monitor {
		return
	}
	p, err := d.guard.AttachPriority("/proc/self/ns/net")
	if err != nil {
		d.log.Error("priority steering is off", "error", err)
		return
	}
	if err := p.SetFreshRate(d.cfg.SlotHolders.Pressure.Evict.FreshRate); err != nil {
		d.log.Error("fresh queue rate not set: it takes every new source", "error", err)
	}
	ps.p, ps.reported = p, map[datapath.Listener]bool{}
	d.syncPriority(context.Background(), false)
}

// syncPriority gives the steering program the server's listeners it
// should have and does not: the known-good tier's always, the fresh
// tier's while the slots are under pressure (and takes those out when it
// ends). It runs at start and on every slot tick, so a listener the server
// closed (a restart: the kernel drops a closed socket from the map) is
// found again. When every listener is in place it costs a map lookup each.
func (d *Daemon) syncPriority(ctx context.Context, pressure bool) {
	ps := &d.priority
	if ps.p == nil {
		return
	}
	if !pressure && ps.fresh {
		for l := range ps.ports {
			if l.Tier == datapath.TierFresh {
				if err := ps.p.DeleteListener(l); err != nil {
					d.log.Error("fresh listener not removed", "port", l.Port, "error", err)
				}
			}
		}
		d.log.Info("fresh listeners off: the slots are no longer short")
	}
	ps.fresh = pressure
	missing := map[uint16][]datapath.Listener{} // by the listener's port
	var ports []uint16
	for l, to := range ps.ports {
		if (l.Tier == datapath.TierFresh && !pressure) || ps.p.HasListener(l) {
			continue
		}
		if len(missing[to]) == 0 {
			ports = append(ports, to)
		}
		missing[to] = append(missing[to], l)
	}
	if len(ports) == 0 {
		return
	}
	found, err := sockets.Listeners(ctx, ports)
	if err != nil {
		d.slotError("find the priority listeners", err)
		return
	}
	var inodes []uint32
	for _, s := range found {
		inodes = append(inodes, s.Inode)
	}
	files, err := sockets.DupSockets("/proc", inodes)
	if err != nil {
		d.slotError("take hold of the priority listeners", err)
		return
	}
	for _, s := range found {
		f := files[s.Inode]
		if f == nil {
			continue // no holder left: found again next tick
		}
		for _, l := range missing[s.Addr.Port()] {
			if l.Family != familyOf(s.Addr.Addr()) {
				continue
			}
			if err := ps.p.SetListener(l, f); err != nil {
				d.log.Error("listener not used", "tier", l.Tier.String(), "port", l.Port, "listener", s.Addr, "error", err)
				continue
			}
			delete(ps.reported, l)
			d.log.Info("steering to a listener", "tier", l.Tier.String(), "port", l.Port, "listener", s.Addr)
		}
		f.Close() // the map holds the socket itself
	}
	for _, ls := range missing {
		for _, l := range ls {
			if ps.reported[l] || ps.p.HasListener(l) {
				continue
			}
			ps.reported[l] = true
			d.log.Info("no listener for a tier: its sources wait in the public queue", "tier", l.Tier.String(),
				"port", l.Port, "family", familyName(l.Family), "want_port", ps.ports[l])
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
