package datapath

import "net/netip"

// Granularity is how much of a source address one ban covers: the prefix
// length an address is masked to, per family (default /32 and /64: one
// IPv6 customer gets a /64). Every layer masks through it, so that a log
// ban, a kernel ban, a slot-holder ban, an offence record and a known-good
// entry of one source are the same prefix.
type Granularity struct{ V4, V6 int }

// Bits is the prefix length for a's family.
func (g Granularity) Bits(a netip.Addr) int {
	if a.Unmap().Is4() {
		return g.V4
	}
	return g.V6
}

// Mask returns the prefix a source is known by; IPv4-mapped IPv6 addresses
// are masked as the IPv4 address they carry.
func (g Granularity) Mask(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, g.Bits(a)).Masked()
}

// Granularity is the ban granularity of these settings.
func (s Settings) Granularity() Granularity { return Granularity{V4: s.PrefixV4, V6: s.PrefixV6} }
