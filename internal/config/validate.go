package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// Bounds that are policy rather than kernel limits.
const (
	minPrefixV4, minPrefixV6 = datapath.MinPrefixV4, datapath.MinPrefixV6
	maxRetransmitWindow      = datapath.MaxRetransmitWindow
	// A ban map sized beyond this is a typo: 64 Mi entries is several GiB
	// of kernel memory.
	maxMapEntries = 1 << 26
	// A connection scan walks every TCP socket of the host; more often
	// than this costs CPU and buys nothing a login timeout would notice.
	minScanInterval = 100 * time.Millisecond
	// Silence under slot pressure is counted from the client's
	// acknowledgement; half a second still leaves a slow phone time to
	// answer the banner.
	minPressureIdle = 500 * time.Millisecond
)

type problems []Problem

func (ps *problems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate() []Problem {
	var ps problems

	seenIf := map[string]bool{}
	for i, name := range c.Interfaces {
		key := fmt.Sprintf("interfaces[%d]", i)
		if msg := checkIfName(name); msg != "" {
			ps.add(key, "%q: %s", name, msg)
		} else if seenIf[name] {
			ps.add(key, "%q: listed twice", name)
		}
		seenIf[name] = true
	}
	if h := c.SlotHolders; h.Enabled {
		if h.MinConnections < 1 {
			ps.add("slot_holders.min_connections", "must be >= 1, got %d", h.MinConnections)
		}
		if h.Idle < time.Second {
			ps.add("slot_holders.idle", "must be >= 1s, got %q", h.Idle.String())
		}
		if h.MaxBytes < 0 {
			ps.add("slot_holders.max_bytes", "must be >= 0, got %d", h.MaxBytes)
		}
		if h.ScanInterval < minScanInterval || h.ScanInterval > time.Minute {
			ps.add("slot_holders.scan_interval", "must be %s-1m, got %q", minScanInterval, h.ScanInterval.String())
		}
		p := h.Pressure
		if p.Connections < 0 {
			ps.add("slot_holders.pressure.connections", "must be >= 0 (0 turns pressure off), got %d", p.Connections)
		}
		if p.Connections > 0 {
			// Longer than idle or scan_interval is allowed: those cap them.
			if p.Idle < minPressureIdle {
				ps.add("slot_holders.pressure.idle", "must be >= %s, got %q", minPressureIdle, p.Idle.String())
			}
			if p.ScanInterval < minScanInterval || p.ScanInterval > time.Minute {
				ps.add("slot_holders.pressure.scan_interval", "must be %s-1m, got %q", minScanInterval, p.ScanInterval.String())
			}
			if p.Hold < 0 || p.Hold > 24*time.Hour {
				ps.add("slot_holders.pressure.hold", "must be 0-24h, got %q", p.Hold.String())
			}
		}
	}
	c.validateLoginSlots(&ps)

	k := &c.Kernel
	before := len(ps)
	switch {
	case len(k.Ports) == 0:
		ps.add("kernel.ports", "at least one protected port is needed")
	case len(k.Ports) > datapath.MaxPorts:
		ps.add("kernel.ports", "%d ports given, at most %d", len(k.Ports), datapath.MaxPorts)
	}
	seenPort := map[uint16]bool{}
	for i, p := range k.Ports {
		key := fmt.Sprintf("kernel.ports[%d]", i)
		if p == 0 {
			ps.add(key, "must be 1-65535, got 0")
		} else if seenPort[p] {
			ps.add(key, "port %d listed twice", p)
		}
		seenPort[p] = true
	}
	if k.SYNRate.Threshold < 0 {
		ps.add("kernel.syn_rate.threshold", "must be >= 0 (0 disables kernel auto-bans), got %d", k.SYNRate.Threshold)
	}
	if k.SYNRate.Threshold > 0 {
		switch w := k.SYNRate.Window; {
		case w <= 0:
			ps.add("kernel.syn_rate.window", "must be > 0, got %q", w.String())
		case w < time.Millisecond:
			ps.add("kernel.syn_rate.window", "must be at least 1ms, got %q", w.String())
		case w > 24*time.Hour:
			ps.add("kernel.syn_rate.window", "must be at most 24h, got %q", w.String())
		}
	}
	if w := k.SYNRate.RetransmitWindow; w < 0 || w > maxRetransmitWindow {
		ps.add("kernel.syn_rate.retransmit_window", "must be 0-%v, got %q", maxRetransmitWindow, w.String())
	}
	if iv := k.Admission.Interval; iv < 0 || iv > time.Hour {
		ps.add("kernel.admission.interval", "must be 0-1h (0: no limit), got %q", iv.String())
	}
	if k.BanDuration <= 0 {
		ps.add("kernel.ban_duration", "must be > 0, got %q", k.BanDuration.String())
	}
	if k.PrefixV4 < minPrefixV4 || k.PrefixV4 > 32 {
		ps.add("kernel.prefix_v4", "must be %d-32, got %d", minPrefixV4, k.PrefixV4)
	}
	if k.PrefixV6 < minPrefixV6 || k.PrefixV6 > 128 {
		ps.add("kernel.prefix_v6", "must be %d-128, got %d", minPrefixV6, k.PrefixV6)
	}
	if len(ps) == before {
		// What the keys above cannot see (a rate finer than the kernel's
		// clock): a file that validates can always be applied.
		if err := k.Settings().Validate(); err != nil {
			ps.add("kernel", "%v", err)
		}
	}
	mapSize(&ps, "kernel.max_bans", k.MaxBans)
	mapSize(&ps, "kernel.max_tracked", k.MaxTracked)
	mapSize(&ps, "kernel.max_cidr_rules", k.MaxCIDRRules)

	seenFile := map[string]bool{}
	for i, f := range c.Logs.Files {
		key := fmt.Sprintf("logs.files[%d]", i)
		if msg := checkAbs(f); msg != "" {
			ps.add(key, "%q: %s", f, msg)
		} else if seenFile[filepath.Clean(f)] {
			ps.add(key, "%q: listed twice", f)
		}
		seenFile[filepath.Clean(f)] = true
	}
	if c.Logs.ReadBack < 0 {
		ps.add("logs.read_back", "must be >= 0, got %q", c.Logs.ReadBack.String())
	}
	checkJournal(&ps, c.Logs.Journal)

	for i, p := range c.Allow {
		key := fmt.Sprintf("allow[%d]", i)
		switch {
		case !p.IsValid():
			ps.add(key, "invalid prefix")
		case p.Addr().Is4In6() || p.Addr().Zone() != "":
			ps.add(key, "%s: IPv4-mapped or zoned prefixes are not allowed", p)
		case p.Masked() != p:
			ps.add(key, "%s: host bits set (the network is %s)", p, p.Masked())
		}
	}

	if g := c.GuardRails.WidestBanV4; g < 0 || g > 32 {
		ps.add("guard_rails.widest_ban_v4", "must be 0-32, got %d", g)
	}
	if g := c.GuardRails.WidestBanV6; g < 0 || g > 128 {
		ps.add("guard_rails.widest_ban_v6", "must be 0-128, got %d", g)
	}
	if msg := checkAbs(c.PinRoot); msg != "" {
		ps.add("pin_root", "%q: %s", c.PinRoot, msg)
	}
	if msg := checkAbs(c.StateDir); msg != "" {
		ps.add("state_dir", "%q: %s", c.StateDir, msg)
	}
	oneOf(&ps, "log.format", c.Log.Format, "text", "json")
	oneOf(&ps, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	if c.Metrics.Listen != "" {
		if msg := checkListen(c.Metrics.Listen); msg != "" {
			ps.add("metrics.listen", "%q: %s", c.Metrics.Listen, msg)
		}
	}
	c.CrowdSec.validate(&ps)
	return ps
}

func oneOf(ps *problems, key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	ps.add(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
}

func mapSize(ps *problems, key string, n int) {
	if n < 1 || n > maxMapEntries {
		ps.add(key, "must be 1-%d, got %d", maxMapEntries, n)
	}
}

// checkIfName applies the kernel's rules for interface names
// (dev_valid_name), so a typo is caught before anything attaches.
func checkIfName(s string) string {
	switch {
	case s == "":
		return "empty interface name"
	case len(s) > 15:
		return "interface names are at most 15 bytes"
	case s == "." || s == "..", strings.ContainsAny(s, "/: \t\n\v\f\r"):
		return "not a valid interface name"
	}
	return ""
}

func checkAbs(p string) string {
	switch {
	case p == "":
		return "empty path"
	case !filepath.IsAbs(p):
		return "must be an absolute path"
	case strings.ContainsRune(p, 0):
		return "contains a NUL byte"
	}
	return ""
}

// checkListen wants host:port with a numeric port and, when a host is
// given, an IP address or "localhost": a name that resolves differently
// later would move the endpoint without a config change.
func checkListen(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "want host:port, e.g. 127.0.0.1:9931 or [::1]:9931"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("port %q: must be 1-65535", port)
	}
	if host == "" || host == "localhost" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Sprintf("host %q: must be an IP address or localhost", host)
	}
	return ""
}
