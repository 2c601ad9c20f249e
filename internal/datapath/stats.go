package datapath

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// Stats are the program's counters, summed over CPUs. Every packet ends in
// exactly one of Passed, DroppedBan, DroppedCIDR and DroppedAdmission.
type Stats struct {
	Passed        uint64 `json:"passed"`
	DroppedBan    uint64 `json:"dropped_ban"`
	DroppedCIDR   uint64 `json:"dropped_cidr"`
	WouldDropBan  uint64 `json:"would_drop_ban"`  // monitor mode, counted in Passed too
	WouldDropCIDR uint64 `json:"would_drop_cidr"` // monitor mode, counted in Passed too
	SYNs          uint64 `json:"syns"`            // SYNs to protected ports fed to the rate limiter
	AutoBans      uint64 `json:"auto_bans"`
	Malformed     uint64 `json:"malformed"`
	Allowed       uint64 `json:"allowed"`
	EventsLost    uint64 `json:"events_lost"`
	// BanTableFull counts kernel auto-bans that found no free slot in the
	// IPv4 ban table, and BanDeferred those whose bucket a userspace writer
	// held (preempted mid-write). The daemon bans both sources when it
	// hears of them (EnsureBan); the table grows for the first.
	BanTableFull uint64 `json:"ban_table_full"`
	BanDeferred  uint64 `json:"ban_deferred"`
	// SYNRetransmits counts SYNs (within SYNs) that resent one already
	// counted: the limiter does not count them again.
	SYNRetransmits uint64 `json:"syn_retransmits"`
	// KnownGoodSpared counts SYNs of known-good sources over the rate,
	// which passed instead of banning their source.
	KnownGoodSpared uint64 `json:"known_good_spared"`
	// DroppedAdmission counts new connections of sources that are not
	// known-good, dropped by the admission limit (not a ban).
	DroppedAdmission   uint64 `json:"dropped_admission"`
	WouldDropAdmission uint64 `json:"would_drop_admission"` // monitor mode, counted in Passed too
	// SYNUntracked counts SYNs (within SYNs) whose source found both its
	// slots in the SYN tracker held by sources with more SYNs: they pass
	// uncounted. Growing means kernel.max_tracked is too small.
	SYNUntracked uint64 `json:"syn_untracked"`
}

// Seen is the number of packets the program looked at.
func (s Stats) Seen() uint64 { return s.Passed + s.DroppedBan + s.DroppedCIDR + s.DroppedAdmission }

// Stats reads and sums the per-CPU counters.
func (g *Guard) Stats() (Stats, error) {
	var sum [bpf.XdpguardStatSTAT_MAX]uint64
	var percpu []bpf.XdpguardCounters
	if err := g.maps.Stats.Lookup(uint32(0), &percpu); err != nil {
		return Stats{}, fmt.Errorf("read counters: %w", err)
	}
	for _, c := range percpu {
		for i, v := range c.N {
			sum[i] += v
		}
	}
	return Stats{
		Passed:        sum[bpf.XdpguardStatSTAT_PASS],
		DroppedBan:    sum[bpf.XdpguardStatSTAT_DROP_BAN],
		DroppedCIDR:   sum[bpf.XdpguardStatSTAT_DROP_CIDR],
		WouldDropBan:  sum[bpf.XdpguardStatSTAT_WOULD_DROP_BAN],
		WouldDropCIDR: sum[bpf.XdpguardStatSTAT_WOULD_DROP_CIDR],
		SYNs:          sum[bpf.XdpguardStatSTAT_SYN],
		AutoBans:      sum[bpf.XdpguardStatSTAT_AUTOBAN],
		Malformed:     sum[bpf.XdpguardStatSTAT_MALFORMED],
		Allowed:       sum[bpf.XdpguardStatSTAT_ALLOW],
		EventsLost:    sum[bpf.XdpguardStatSTAT_EVENT_LOST],
		BanTableFull:  sum[bpf.XdpguardStatSTAT_BAN_TABLE_FULL],
		BanDeferred:   sum[bpf.XdpguardStatSTAT_BAN_DEFERRED],

		SYNRetransmits:     sum[bpf.XdpguardStatSTAT_SYN_RETRANS],
		KnownGoodSpared:    sum[bpf.XdpguardStatSTAT_KNOWN_GOOD],
		DroppedAdmission:   sum[bpf.XdpguardStatSTAT_DROP_ADMISSION],
		WouldDropAdmission: sum[bpf.XdpguardStatSTAT_WOULD_DROP_ADMISSION],
		SYNUntracked:       sum[bpf.XdpguardStatSTAT_SYN_UNTRACKED],
	}, nil
}

// Source is one entry of the SYN tracker.
type Source struct {
	Prefix netip.Prefix `json:"prefix"`
	// InWindow is how many SYNs the limiter holds against the source now:
	// at RateThreshold it is banned on the next one.
	InWindow uint64 `json:"in_window"`
	// SYNs counts all SYNs since the tracker last (re)created the entry.
	SYNs uint64 `json:"syns"`
}

// TopSources returns the n sources with the most SYNs in the current window.
func (g *Guard) TopSources(n int) ([]Source, error) {
	s, err := g.Settings()
	if err != nil {
		return nil, err
	}
	interval := uint64(0)
	if s.RateThreshold > 0 {
		interval = uint64(s.RateWindow) / uint64(s.RateThreshold)
	}
	now := monoNow()
	inWindow := func(st bpf.XdpguardSynState) uint64 {
		if interval == 0 || st.Tat <= now {
			return 0
		}
		return (st.Tat - now + interval - 1) / interval
	}
	var out []Source
	add := func(p netip.Prefix, st bpf.XdpguardSynState) {
		// A slot never taken, or given up by a source that was banned.
		if st.Syns == 0 && st.Tat == 0 && st.AdmitNs == 0 {
			return
		}
		out = append(out, Source{Prefix: p, InWindow: inWindow(st), SYNs: uint64(st.Syns)})
	}
	if err := dump(g.maps.SynV4, func(_ uint32, v bpf.XdpguardSynPairV4) {
		for _, sl := range v.Slot {
			add(netip.PrefixFrom(addr4(uint32(sl.Key)), s.PrefixV4), sl.S)
		}
	}); err != nil {
		return nil, fmt.Errorf("read IPv4 SYN tracker: %w", err)
	}
	if err := dump(g.maps.SynV6, func(_ uint32, v bpf.XdpguardSynPairV6) {
		for _, sl := range v.Slot {
			var a [16]byte
			binary.NativeEndian.PutUint64(a[:8], sl.Key.Hi)
			binary.NativeEndian.PutUint64(a[8:], sl.Key.Lo)
			add(netip.PrefixFrom(netip.AddrFrom16(a), s.PrefixV6), sl.S)
		}
	}); err != nil {
		return nil, fmt.Errorf("read IPv6 SYN tracker: %w", err)
	}
	slices.SortFunc(out, func(a, b Source) int {
		if c := cmp.Compare(b.InWindow, a.InWindow); c != 0 {
			return c
		}
		if c := cmp.Compare(b.SYNs, a.SYNs); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out, nil
}

func native32(b []byte) uint32       { return binary.NativeEndian.Uint32(b) }
func putNative32(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }
