package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// MaxKnownGood is how many known-good sources the kernel holds per address
// family. The maps are not preallocated: an entry costs memory only while
// it exists, and the bound only sizes their bucket arrays (2 MiB each).
// Expiry and the choice of which sources to keep are the caller's.
const MaxKnownGood = 1 << 17

// PutKnownGood marks sources as known-good in the XDP program. Each prefix
// is masked to the ban granularity (IPv4 /32, IPv6 /64 by default, from
// Settings); one wider than that is refused, since the kernel matches
// exactly. Known-good sources are never auto-banned by the kernel SYN
// limiter and pass the kernel's admission limit. Either every prefix is
// stored when it returns nil, or none of those that were new.
func (g *Guard) PutKnownGood(ps []netip.Prefix) error {
	return g.writeKnownGood(ps, func(k4 [][4]byte, k6 [][16]byte) error {
		fresh4, err := putGood(g.maps.GoodV4, k4)
		if err != nil {
			return fmt.Errorf("mark %d IPv4 sources known-good: %w", len(k4), privilegeHint(err))
		}
		if _, err := putGood(g.maps.GoodV6, k6); err != nil {
			deleteGood(g.maps.GoodV4, fresh4)
			return fmt.Errorf("mark %d IPv6 sources known-good: %w", len(k6), privilegeHint(err))
		}
		return nil
	})
}

// DeleteKnownGood forgets sources, masked like PutKnownGood. Sources that
// are not known-good are ignored.
func (g *Guard) DeleteKnownGood(ps []netip.Prefix) error {
	return g.writeKnownGood(ps, func(k4 [][4]byte, k6 [][16]byte) error {
		if err := deleteGood(g.maps.GoodV4, k4); err != nil {
			return fmt.Errorf("forget known-good IPv4 sources: %w", privilegeHint(err))
		}
		if err := deleteGood(g.maps.GoodV6, k6); err != nil {
			return fmt.Errorf("forget known-good IPv6 sources: %w", privilegeHint(err))
		}
		return nil
	})
}

// writeKnownGood masks ps to map keys and runs fn on them under the pin
// directory's write lock, like every userspace writer.
func (g *Guard) writeKnownGood(ps []netip.Prefix, fn func(k4 [][4]byte, k6 [][16]byte) error) error {
	k4, k6, err := g.knownGoodKeys(ps)
	if err != nil {
		return err
	}
	unlock, err := g.lockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	return fn(k4, k6)
}

// KnownGood lists the known-good sources the kernel holds, at the ban
// granularity, sorted.
func (g *Guard) KnownGood() ([]netip.Prefix, error) {
	s, err := g.Settings()
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	if err := dump(g.maps.GoodV4, func(k [4]byte, _ uint8) {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(k), s.PrefixV4))
	}); err != nil {
		return nil, fmt.Errorf("read known-good IPv4 sources: %w", err)
	}
	if err := dump(g.maps.GoodV6, func(k [16]byte, _ uint8) {
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(k), s.PrefixV6))
	}); err != nil {
		return nil, fmt.Errorf("read known-good IPv6 sources: %w", err)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out, nil
}

// SetAdmission turns on or off the kernel's admission limit on new SYNs to
// protected ports from sources that are not known-good: one new connection
// per source per Settings.AdmissionInterval. The daemon turns it on while
// the login slots run out, and off when pressure ends. SetSettings keeps it
// as it is.
func (g *Guard) SetAdmission(on bool) error {
	return g.updateConfig(func(c bpf.XdpguardConfig) (bpf.XdpguardConfig, error) {
		if c.PrefixV4 == 0 {
			return c, errors.New("set admission: settings never written")
		}
		flag := uint32(bpf.XdpguardConfigFlagsFLAG_ADMISSION)
		if on {
			c.Flags |= flag
		} else {
			c.Flags &^= flag
		}
		return c, nil
	})
}

// Admission reports whether the admission limit is on.
func (g *Guard) Admission() (bool, error) {
	c, err := g.readConfig()
	if err != nil {
		return false, err
	}
	return c.Flags&uint32(bpf.XdpguardConfigFlagsFLAG_ADMISSION) != 0, nil
}

// knownGoodKeys masks the prefixes to the ban granularity, as map keys.
func (g *Guard) knownGoodKeys(ps []netip.Prefix) (k4 [][4]byte, k6 [][16]byte, err error) {
	s, err := g.Settings()
	if err != nil {
		return nil, nil, err
	}
	for _, p := range ps {
		p, err := normalize(p)
		if err != nil {
			return nil, nil, fmt.Errorf("known-good source %v: %w", p, err)
		}
		gran := s.Granularity().Bits(p.Addr())
		if p.Bits() < gran {
			return nil, nil, fmt.Errorf("known-good source %s: wider than the ban granularity /%d", p, gran)
		}
		a := netip.PrefixFrom(p.Addr(), gran).Masked().Addr()
		if a.Is4() {
			k4 = append(k4, a.As4())
		} else {
			k6 = append(k6, a.As16())
		}
	}
	return k4, k6, nil
}

// putGood stores keys and returns those that were new. On an error it
// removes the new ones it stored.
func putGood[K comparable](m *ebpf.Map, keys []K) ([]K, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	have := map[K]bool{}
	exists := func(k K) bool {
		var v uint8
		return m.Lookup(&k, &v) == nil
	}
	if len(keys) > 1024 {
		// One batch dump beats a lookup syscall per key; for a login or
		// two, the other way round (the map may hold 100,000).
		if err := dump(m, func(k K, _ uint8) { have[k] = true }); err != nil {
			return nil, err
		}
		exists = func(K) bool { return false }
	}
	var fresh []K
	for _, k := range keys {
		if !have[k] && !exists(k) {
			fresh = append(fresh, k)
		}
		have[k] = true // duplicates in keys
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	vals := make([]uint8, len(fresh))
	if _, err := m.BatchUpdate(fresh, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			// A batch update stops at the first failure (the map is full):
			// undo the part that went in.
			deleteGood(m, fresh)
			return nil, err
		}
		for i := range fresh {
			if err := m.Put(&fresh[i], &vals[i]); err != nil {
				deleteGood(m, fresh[:i])
				return nil, err
			}
		}
	}
	return fresh, nil
}

// deleteGood deletes the keys that exist.
func deleteGood[K comparable](m *ebpf.Map, keys []K) error {
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}
