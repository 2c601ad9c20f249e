package datapath

// Priority steering: the sk_lookup program of internal/bpf/priority.c, which
// hands a new connection to a protected port to the server's listener for
// the source's tier (see priority.c for why). It reads the XDP program's
// known-good maps and settings, so a source marked with PutKnownGood is
// steered from its next SYN.

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// The priority pins, next to the XDP program's. Their names do not start
// with linkPrefix: that is for interfaces.
const (
	priorityLinkPin  = "priority_link"
	prioritySocksPin = "priority_socks"
)

// Tier is a class of sources with a listener of its own (enum
// priority_tier in priority.c).
type Tier uint8

const (
	// TierKnownGood: sources that logged in before.
	TierKnownGood Tier = iota
	// TierFresh: every other source, while the daemon keeps a listener
	// for it in the map (under slot pressure).
	TierFresh
)

func (t Tier) String() string {
	if t == TierKnownGood {
		return "known-good"
	}
	return "fresh"
}

// Priority is the attached steering program of one network namespace.
type Priority struct {
	g          *Guard // its settings mask refused sources like its bans
	socks      *ebpf.Map
	stats      *ebpf.Map
	refused    [2]*ebpf.Map // refused_v4, refused_v6
	freshSince [2]*ebpf.Map // fresh_since_v4, fresh_since_v6: the kernel writes them, Late adds
	freshRate  *ebpf.Map
	link       link.Link // nil when pinned: the pin keeps it attached
}

// PriorityStats counts the SYNs the steering program handed to a tier's
// listener (the order of enum priority_stat).
type PriorityStats struct {
	// Steered went to the known-good tier's listener.
	Steered uint64 `json:"steered"`
	// Fresh went to the fresh tier's listener.
	Fresh uint64 `json:"fresh"`
	// Failed went to the public listener: the tier's was closing.
	Failed uint64 `json:"failed"`
	// Refused were reset: their source was evicted (Refuse) and the
	// fresh tier was on.
	Refused uint64 `json:"refused"`
	// Late went to the public listener under pressure: their source was
	// past its first seconds under pressure (FRESH_NS in priority.c).
	Late uint64 `json:"late"`
	// FreshFull went to the public listener under pressure: the first SYN
	// of a new source while the fresh queue's rate was used up
	// (SetFreshRate).
	FreshFull uint64 `json:"fresh_full"`
}

// AttachPriority loads the steering program over this Guard's known-good
// maps and settings and attaches it to the network namespace netns (a path
// such as /proc/self/ns/net). With a pin root the link and the socket map
// are pinned, so steering outlives the process as the XDP program does,
// and a later call (a restart, an upgrade) adopts them and replaces the
// program in place.
func (g *Guard) AttachPriority(netns string) (*Priority, error) {
	spec, err := bpf.LoadPriority()
	if err != nil {
		return nil, fmt.Errorf("parse embedded priority program: %w", err)
	}
	repl := map[string]*ebpf.Map{
		bpf.PriorityMapGoodV4:   g.maps.GoodV4,
		bpf.PriorityMapGoodV6:   g.maps.GoodV6,
		bpf.PriorityMapSettings: g.maps.Settings,
	}
	if g.pinRoot != "" {
		m, err := ebpf.LoadPinnedMap(filepath.Join(g.pinRoot, prioritySocksPin), nil)
		if err == nil {
			defer m.Close()
			repl[bpf.PriorityMapPrioritySocks] = m
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("adopt the priority socket map: %w", privilegeHint(err))
		}
	}
	for name, m := range repl {
		spec.Maps[name].MaxEntries = m.MaxEntries() // sized by the loader, not the C file
	}
	var objs bpf.PriorityObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return nil, fmt.Errorf("load the priority program: %w", loadError(err))
	}
	defer objs.Priority.Close()
	p := &Priority{g: g, socks: objs.PrioritySocks, stats: objs.PriorityStats, refused: [2]*ebpf.Map{objs.RefusedV4, objs.RefusedV6},
		freshSince: [2]*ebpf.Map{objs.FreshSinceV4, objs.FreshSinceV6}, freshRate: objs.FreshRate}
	objs.FreshTat.Close() // only the program uses it
	if err := p.attach(g.pinRoot, netns, objs.Priority); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Priority) attach(pinRoot, netns string, prog *ebpf.Program) error {
	if pinRoot != "" {
		if l, err := link.LoadPinnedLink(filepath.Join(pinRoot, priorityLinkPin), nil); err == nil {
			defer l.Close()
			if err := l.Update(prog); err != nil {
				return fmt.Errorf("upgrade the priority program: %w", privilegeHint(err))
			}
			return nil
		}
	}
	ns, err := os.Open(netns)
	if err != nil {
		return fmt.Errorf("attach the priority program: %w", err)
	}
	defer ns.Close()
	l, err := link.AttachNetNs(int(ns.Fd()), prog)
	if err != nil {
		return fmt.Errorf("attach the priority program to %s: %w", netns, privilegeHint(err))
	}
	if pinRoot == "" {
		p.link = l
		return nil
	}
	defer l.Close() // the pin keeps it attached
	if err := p.socks.Pin(filepath.Join(pinRoot, prioritySocksPin)); err != nil {
		return fmt.Errorf("pin the priority socket map: %w", err)
	}
	if err := l.Pin(filepath.Join(pinRoot, priorityLinkPin)); err != nil {
		return fmt.Errorf("pin the priority link: %w", err)
	}
	return nil
}

// Listener names one tier's listener of a protected port in one address
// family (unix.AF_INET or unix.AF_INET6).
type Listener struct {
	Port   uint16
	Family int
	Tier   Tier
}

func (l Listener) key() (bpf.PriorityPriorityKey, error) {
	if l.Family != unix.AF_INET && l.Family != unix.AF_INET6 {
		return bpf.PriorityPriorityKey{}, fmt.Errorf("priority listener: address family %d is neither IPv4 nor IPv6", l.Family)
	}
	return bpf.PriorityPriorityKey{Port: l.Port, Family: uint8(l.Family), Tier: uint8(l.Tier)}, nil
}

// SetListener steers l's connections to the listening socket sock (a
// descriptor of this process; the map takes its own reference, so the
// caller may close it).
func (p *Priority) SetListener(l Listener, sock *os.File) error {
	return l.write(func(k bpf.PriorityPriorityKey) error {
		return p.socks.Update(k, uint64(sock.Fd()), ebpf.UpdateAny)
	})
}

// DeleteListener stops steering l's connections: they go to the port's
// public listener again. A listener that is not in the map is no error.
func (p *Priority) DeleteListener(l Listener) error {
	return l.write(func(k bpf.PriorityPriorityKey) error {
		if err := p.socks.Delete(k); !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		return nil
	})
}

// write runs op, a change to the socket map, on l's key, and names l in
// its error.
func (l Listener) write(op func(bpf.PriorityPriorityKey) error) error {
	k, err := l.key()
	if err != nil {
		return err
	}
	if err := op(k); err != nil {
		return fmt.Errorf("%s listener for port %d: %w", l.Tier, l.Port, privilegeHint(err))
	}
	return nil
}

// HasListener reports whether l is in the map. The kernel removes a socket
// that closes, so false after true means the server closed it (a restart).
func (p *Priority) HasListener(l Listener) bool {
	k, err := l.key()
	if err != nil {
		return false
	}
	var cookie uint64
	return p.socks.Lookup(k, &cookie) == nil
}

// Refuse resets the new connections of the sources ps (masked to the ban
// granularity) until until, while the fresh tier is on: sources evicted
// before authenticating, which would otherwise reconnect into the fresh
// queue ahead of new users. Known-good sources are never refused. The
// deadline is checked in the kernel; the maps are LRU, so the oldest
// refusals make room.
func (p *Priority) Refuse(ps []netip.Prefix, until time.Time) error {
	k4, k6, err := p.g.knownGoodKeys(ps)
	if err != nil {
		return err
	}
	deadline := monoNow() + uint64(max(time.Until(until), 0))
	if err := refuse(p.refused[0], k4, deadline); err != nil {
		return err
	}
	return refuse(p.refused[1], k6, deadline)
}

func refuse[K any](m *ebpf.Map, keys []K, deadline uint64) error {
	for _, k := range keys {
		if err := m.Update(k, deadline, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("refuse %v: %w", k, privilegeHint(err))
		}
	}
	return nil
}

// Late marks the sources ps, masked like bans, as past their fresh
// seconds, unless the kernel has already seen their first SYN under
// pressure: their next connections wait in the public queue, and none
// takes a place in the fresh queue's rate. The daemon marks the sources
// that already hold connections when the slots run out: a source that
// holds slots is not a new user, and an attack's sources, all redialling
// in its first seconds, would otherwise use up the rate that the new
// users who come next need.
func (p *Priority) Late(ps []netip.Prefix) error {
	k4, k6, err := p.g.knownGoodKeys(ps)
	if err != nil {
		return err
	}
	// A second back: the program reads the coarse clock, which lags
	// CLOCK_MONOTONIC by up to a tick, and a first SYN "after now" would
	// read as 600 s old, a new source again.
	e := bpf.PriorityFreshEntry{First: monoNow() - uint64(time.Second)}
	if err := late(p.freshSince[0], k4, e); err != nil {
		return err
	}
	return late(p.freshSince[1], k6, e)
}

func late[K any](m *ebpf.Map, keys []K, e bpf.PriorityFreshEntry) error {
	for _, k := range keys {
		if err := m.Update(k, e, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
			return fmt.Errorf("mark %v late: %w", k, privilegeHint(err))
		}
	}
	return nil
}

// SetFreshRate sets how many new sources a second, at most, the fresh
// queue takes under pressure (up to a second's worth at once); the first
// SYN of any other goes to the public queue. 0 takes every source.
func (p *Priority) SetFreshRate(perSecond int) error {
	var r bpf.PriorityFreshLimit
	if perSecond > 0 {
		r.IntervalNs = uint64(time.Second) / uint64(perSecond)
		r.BurstNs = r.IntervalNs * uint64(perSecond-1)
	}
	if err := p.freshRate.Update(uint32(0), r, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set the fresh queue's rate: %w", privilegeHint(err))
	}
	return nil
}

// Stats sums the steering counters over the CPUs.
func (p *Priority) Stats() (PriorityStats, error) {
	var s PriorityStats
	for i, dst := range []*uint64{&s.Steered, &s.Fresh, &s.Failed, &s.Refused, &s.Late, &s.FreshFull} {
		var percpu []uint64
		if err := p.stats.Lookup(uint32(i), &percpu); err != nil {
			return PriorityStats{}, fmt.Errorf("read priority counters: %w", err)
		}
		for _, v := range percpu {
			*dst += v
		}
	}
	return s, nil
}

// Close releases this process's handles; a pinned program stays attached.
func (p *Priority) Close() error {
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
	}
	errs = append(errs, p.socks.Close(), p.stats.Close(), p.refused[0].Close(), p.refused[1].Close(), p.freshSince[0].Close(), p.freshSince[1].Close(), p.freshRate.Close())
	return errors.Join(errs...)
}
