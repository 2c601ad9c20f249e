package datapath

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// Scope says which packets of a banned source are dropped.
type Scope uint8

const (
	// ScopeAll drops every packet from a banned source.
	ScopeAll Scope = iota
	// ScopePorts drops only its TCP packets to protected ports.
	ScopePorts
)

var scopeNames = [...]string{ScopeAll: "all", ScopePorts: "ports"}

func (s Scope) String() string { return listName(scopeNames[:], "scope", s) }

// ParseScope parses "all" or "ports".
func ParseScope(s string) (Scope, error) { return parseListed[Scope](scopeNames[:], s) }

// MarshalText and UnmarshalText let the configuration hold a Scope.
func (s Scope) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Scope) UnmarshalText(b []byte) (err error) {
	*s, err = ParseScope(string(b))
	return err
}

// MaxPorts bounds the protected port set; the bitmap could hold all 65536,
// but a mail host protecting more than a handful is misconfigured.
const MaxPorts = 64

// Settings are the knobs the program reads on every packet. They change at
// run time with SetSettings, without reattaching.
type Settings struct {
	// Ports are the protected TCP destination ports.
	Ports []uint16
	// RateThreshold SYNs to protected ports per RateWindow pass; the next
	// one bans its source for BanDuration. Zero disables the limiter.
	RateThreshold uint32
	RateWindow    time.Duration
	BanDuration   time.Duration
	Scope         Scope
	// Monitor counts what would be dropped and drops nothing. Kernel
	// auto-bans are still recorded, so the operator sees who would go.
	Monitor bool
	// Ban granularity: sources are masked to these prefix lengths before
	// every lookup, so that a ban covers an attacker's whole /64.
	PrefixV4 int
	PrefixV6 int
	// RetransmitWindow: a SYN with the source port and sequence number of
	// one of the source's last 4 counted SYNs, within this long of it, is a
	// retransmission and not counted again (5 at most per SYN). Zero
	// counts every SYN.
	RetransmitWindow time.Duration
	// AdmissionInterval: while admission is on (SetAdmission), a source
	// that is not known-good opens one new connection per interval.
	AdmissionInterval time.Duration
}

// DefaultSettings protects POP3, IMAP and their TLS ports, and bans a source
// that opens more than 20 connections in 10 seconds for 10 minutes. A mail
// client opens a handful at a time; the bots in question open hundreds.
func DefaultSettings() Settings {
	return Settings{
		Ports:         []uint16{110, 143, 993, 995},
		RateThreshold: 20,
		RateWindow:    10 * time.Second,
		BanDuration:   10 * time.Minute,
		Scope:         ScopeAll,
		PrefixV4:      32,
		PrefixV6:      64,
		// Linux resends an unanswered SYN 1, 2, 3, 4 and 6 s after it
		// (6.5 and later; 1, 3 and 7 s before), Windows after 3 and 9 s.
		RetransmitWindow: 10 * time.Second,
		// See DefaultAdmissionInterval.
		AdmissionInterval: DefaultAdmissionInterval,
	}
}

// DefaultAdmissionInterval is 0: the admission limit is off unless
// configured, because it trades one attack for another. Measured in the
// issue-11 end-to-end test on a 2-core host (Dovecot took about 25
// connections a second there): against 600 trawler sources, one
// connection each, an interval must outlast a source's turn through the
// full accept queues or it never bites; 15 s changed nothing, 2 minutes
// cut the queues' median from ~450 to 168-376 and tripled the returning
// users' logins. Against the seed's attack (96 sources, 400 connections)
// the same 2 minutes held each bot to one connection, so fewer gave the
// slot-holder detector or the log their evidence: 43 of 96 banned instead
// of all 96, and the queues held a median of 161 instead of 1. See issue
// 11 and the README's issue-11 section.
const DefaultAdmissionInterval = 0

// A ban granularity wider than these would ban a whole provider for one
// attacker.
const MinPrefixV4, MinPrefixV6 = 8, 32

// MaxRetransmitWindow keeps the window within the kernel's 8-bit ticks of
// 1.07 s, half their wrap.
const MaxRetransmitWindow = 2 * time.Minute

// fpTick is the kernel's unit of SYN fingerprint time (FP_TICK_SHIFT).
const fpTick = time.Duration(1) << bpf.XdpguardSynFpFP_TICK_SHIFT

// Validate names the first setting that is out of range.
func (s Settings) Validate() error {
	if len(s.Ports) == 0 {
		return errors.New("ports: at least one protected port is needed")
	}
	if len(s.Ports) > MaxPorts {
		return fmt.Errorf("ports: %d given, at most %d", len(s.Ports), MaxPorts)
	}
	for _, p := range s.Ports {
		if p == 0 {
			return errors.New("ports: 0 is not a port")
		}
	}
	if s.RateThreshold > 0 {
		if s.RateWindow < time.Millisecond {
			return fmt.Errorf("rate window: %v is too short (at least 1ms)", s.RateWindow)
		}
		if s.RateWindow/time.Duration(s.RateThreshold) == 0 {
			return fmt.Errorf("rate: %d SYNs per %v is finer than 1ns per SYN", s.RateThreshold, s.RateWindow)
		}
	}
	if s.BanDuration <= 0 {
		return fmt.Errorf("ban duration: must be > 0, got %v", s.BanDuration)
	}
	if s.Scope != ScopeAll && s.Scope != ScopePorts {
		return fmt.Errorf("scope: unknown value %d", s.Scope)
	}
	if s.PrefixV4 < MinPrefixV4 || s.PrefixV4 > 32 {
		return fmt.Errorf("IPv4 ban prefix: /%d is outside /8../32", s.PrefixV4)
	}
	if s.PrefixV6 < MinPrefixV6 || s.PrefixV6 > 128 {
		return fmt.Errorf("IPv6 ban prefix: /%d is outside /32../128", s.PrefixV6)
	}
	if s.RetransmitWindow < 0 || s.RetransmitWindow > MaxRetransmitWindow {
		return fmt.Errorf("SYN retransmit window: %v is outside 0..%v", s.RetransmitWindow, MaxRetransmitWindow)
	}
	if s.AdmissionInterval < 0 {
		return fmt.Errorf("admission interval: %v is negative", s.AdmissionInterval)
	}
	return nil
}

// SetSettings validates s and writes it in one map update, so the program
// never sees half of it. The ban granularity can only change while no bans
// exist: existing keys were masked with the old one and would stop matching.
func (g *Guard) SetSettings(s Settings) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("invalid settings: %w", err)
	}
	return g.updateConfig(func(cur bpf.XdpguardConfig) (bpf.XdpguardConfig, error) {
		return g.settingsConfig(cur, s)
	})
}

// settingsConfig is the settings map's entry for s, replacing cur: the
// table's and the SYN tracker's state and the admission flag carry over.
func (g *Guard) settingsConfig(cur bpf.XdpguardConfig, s Settings) (bpf.XdpguardConfig, error) {
	if cur.PrefixV4 != 0 && (int(cur.PrefixV4) != s.PrefixV4 || int(cur.PrefixV6) != s.PrefixV6) {
		n, err := g.banCount()
		if err != nil {
			return cur, err
		}
		if n > 0 {
			return cur, fmt.Errorf("ban granularity /%d,/%d -> /%d,/%d: can only change with no active bans (%d exist; unban --all first)",
				cur.PrefixV4, cur.PrefixV6, s.PrefixV4, s.PrefixV6, n)
		}
	}
	c := encodeSettings(s)
	c.V4Mask, c.V4Seed, c.V4Active, c.V4Side = cur.V4Mask, cur.V4Seed, cur.V4Active, cur.V4Side
	c.SynMul, c.SynAdd = cur.SynMul, cur.SynAdd
	// Both trackers have the same power-of-two size (trackerPairs).
	c.SynMask = g.maps.SynV4.MaxEntries() - 1
	// Admission is the daemon's run-time state (SetAdmission), not a setting.
	c.Flags |= cur.Flags & uint32(bpf.XdpguardConfigFlagsFLAG_ADMISSION)
	if cur.PrefixV4 == 0 {
		// The first write, on a table nobody has used: start it small,
		// and draw its hash seed and the SYN tracker's.
		c.V4Side = g.maps.BansV4.MaxEntries() / 2
		n := min(uint32(initialBuckets), c.V4Side)
		c.V4Mask = [2]uint32{n - 1, n - 1}
		var seed [4 + 5*8]byte
		if _, err := rand.Read(seed[:]); err != nil {
			return cur, fmt.Errorf("draw the hash seeds: %w", err)
		}
		c.V4Seed = binary.NativeEndian.Uint32(seed[:4])
		for i := range c.SynMul {
			c.SynMul[i] = binary.NativeEndian.Uint64(seed[4+8*i:])
		}
		c.SynAdd = binary.NativeEndian.Uint64(seed[4+8*4:])
	}
	return c, nil
}

// updateConfig replaces the settings map's entry with what next makes of
// the current one, under lockWrites: a table growing meanwhile would have
// its switch of sides undone by the write. Nothing is written when next
// fails.
func (g *Guard) updateConfig(next func(cur bpf.XdpguardConfig) (bpf.XdpguardConfig, error)) error {
	unlock, err := g.lockWrites()
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := g.readConfig()
	if err != nil {
		return err
	}
	c, err := next(cur)
	if err != nil {
		return err
	}
	if err := g.writeConfig(&c); err != nil {
		return err
	}
	if cur.PrefixV4 == 0 {
		// A new table: its buckets' earliest deadlines start at "none",
		// not at 0, which would send every banned packet to the second
		// array until the first sweep.
		t, err := g.table()
		if err != nil {
			return err
		}
		t.init()
	}
	return nil
}

// readConfig reads the settings map's one entry, as the program sees it.
func (g *Guard) readConfig() (bpf.XdpguardConfig, error) {
	var c bpf.XdpguardConfig
	if err := g.maps.Settings.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("read settings: %w", err)
	}
	return c, nil
}

// writeConfig replaces the settings map's one entry.
func (g *Guard) writeConfig(c *bpf.XdpguardConfig) error {
	if err := g.maps.Settings.Update(uint32(0), c, 0); err != nil {
		return fmt.Errorf("write settings: %w", privilegeHint(err))
	}
	return nil
}

// Settings reads the settings the program is using now.
func (g *Guard) Settings() (Settings, error) {
	c, err := g.readConfig()
	if err != nil {
		return Settings{}, err
	}
	if c.PrefixV4 == 0 {
		return Settings{}, errors.New("read settings: never written (state pinned by a process that did not finish loading?)")
	}
	return decodeSettings(&c), nil
}

func encodeSettings(s Settings) bpf.XdpguardConfig {
	c := bpf.XdpguardConfig{
		RateWindowNs:  uint64(s.RateWindow),
		RateThreshold: s.RateThreshold,
		BanNs:         uint64(s.BanDuration),
		PrefixV4:      uint8(s.PrefixV4),
		PrefixV6:      uint8(s.PrefixV6),
		// Rounded up, so the window is at least what was asked minus a tick.
		RetransTicks:    uint32((s.RetransmitWindow + fpTick - 1) / fpTick),
		RetransWindowNs: uint64(s.RetransmitWindow),
		AdmitIntervalNs: uint64(s.AdmissionInterval),
	}
	if s.RateThreshold > 0 {
		c.RateIntervalNs = uint64(s.RateWindow) / uint64(s.RateThreshold)
		c.RateBurstNs = uint64(s.RateWindow) - c.RateIntervalNs
	}
	if s.Monitor {
		c.Flags |= uint32(bpf.XdpguardConfigFlagsFLAG_MONITOR)
	}
	if s.Scope == ScopePorts {
		c.Flags |= uint32(bpf.XdpguardConfigFlagsFLAG_SCOPE_PORTS)
	}
	// The masks are compared against packet bytes, so they are stored in
	// network order, read as native words like the program reads them.
	m4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), s.PrefixV4).Masked().Addr().As4()
	c.MaskV4 = binary.NativeEndian.Uint32(m4[:])
	ones := [16]byte{}
	for i := range ones {
		ones[i] = 0xff
	}
	m6 := netip.PrefixFrom(netip.AddrFrom16(ones), s.PrefixV6).Masked().Addr().As16()
	c.MaskV6Hi = binary.NativeEndian.Uint64(m6[:8])
	c.MaskV6Lo = binary.NativeEndian.Uint64(m6[8:])
	for _, p := range s.Ports {
		c.Ports[p>>6] |= 1 << (p & 63)
	}
	return c
}

func decodeSettings(c *bpf.XdpguardConfig) Settings {
	s := Settings{
		RateThreshold:     c.RateThreshold,
		RateWindow:        time.Duration(c.RateWindowNs),
		BanDuration:       time.Duration(c.BanNs),
		Monitor:           c.Flags&uint32(bpf.XdpguardConfigFlagsFLAG_MONITOR) != 0,
		PrefixV4:          int(c.PrefixV4),
		PrefixV6:          int(c.PrefixV6),
		RetransmitWindow:  time.Duration(c.RetransWindowNs),
		AdmissionInterval: time.Duration(c.AdmitIntervalNs),
	}
	if c.Flags&uint32(bpf.XdpguardConfigFlagsFLAG_SCOPE_PORTS) != 0 {
		s.Scope = ScopePorts
	}
	for i, w := range c.Ports {
		for ; w != 0; w &= w - 1 {
			s.Ports = append(s.Ports, uint16(i*64+bits.TrailingZeros64(w)))
		}
	}
	return s
}
