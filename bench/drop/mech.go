package main

import (
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// mech is one drop mechanism: set up with a set of banned sources, measured,
// torn down. Teardown must leave the DUT as it found it, because the next
// mechanism is measured on the same veth.
type mech struct {
	Name string // as the table shows it
	Mode string // "native", "generic", or "" for non-XDP mechanisms
	// Filter says whether it filters by source at all; the floor and "no
	// filter" do not, and have no ratio targets of their own.
	Filter   bool
	setup    func(h *harness, srcs []uint32) (note string, err error)
	teardown func(h *harness) error
}

func mechanisms() []mech {
	var ms []mech
	for _, mode := range []string{"native", "generic"} {
		ms = append(ms, floorMech(mode))
		if mode == "native" {
			ms = append(ms, parseMech(mode), lookupMech(mode), oaMech(mode))
		}
		ms = append(ms, xdpguardMech(mode), xdpFilterMech(mode))
	}
	return append(ms,
		nftMech("nftables ingress set", "netdev", `type filter hook ingress device "`+dutIf+`" priority -500;`),
		nftMech("nftables prerouting raw set", "ip", "type filter hook prerouting priority raw;"),
		ipsetMech(),
		mech{Name: "no filter (TCP stack)", setup: func(*harness, []uint32) (string, error) { return "", nil },
			teardown: func(*harness) error { return nil }},
	)
}

func xdpFlags(mode string) link.XDPAttachFlags {
	if mode == "generic" {
		return link.XDPGenericMode
	}
	return link.XDPDriverMode
}

// attachDUT attaches prog (name is for errors) to the DUT's veth in mode.
func (h *harness) attachDUT(name string, prog *ebpf.Program, mode string) (link.Link, error) {
	var l link.Link
	err := doIn(h.env.dut, func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: h.env.dutIdx, Flags: xdpFlags(mode)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach %s to %s (%s): %w", name, dutIf, mode, err)
	}
	return l, nil
}

// detachDUT closes *l, if attached, and leaves it nil, then closes the
// programs and maps that went with it (nil ones are skipped); it returns
// the link's error.
func detachDUT(l *link.Link, objs ...io.Closer) error {
	var err error
	if *l != nil {
		err = (*l).Close()
		*l = nil
	}
	for _, o := range objs {
		o.Close()
	}
	return err
}

// genMech attaches one of gen.c's stateless programs: the floor
// (xdp_drop) or the floor plus reading the source (xdp_parse).
func genMech(name, what string, prog func(*harness) *ebpf.Program, mode string) mech {
	var l link.Link
	return mech{
		Name: name, Mode: mode,
		setup: func(h *harness, _ []uint32) (string, error) {
			var err error
			l, err = h.attachDUT(what, prog(h), mode)
			return "", err
		},
		teardown: func(*harness) error { return l.Close() },
	}
}

func floorMech(mode string) mech {
	return genMech("XDP_DROP (floor)", "XDP_DROP", func(h *harness) *ebpf.Program { return h.gen.objs.XdpDrop }, mode)
}

func parseMech(mode string) mech {
	return genMech("parse + XDP_DROP", "xdp_parse", func(h *harness) *ebpf.Program { return h.gen.objs.XdpParse }, mode)
}

func xdpguardMech(mode string) mech {
	return mech{
		Name: "xdpguard", Mode: mode, Filter: true,
		setup: func(h *harness, srcs []uint32) (string, error) {
			root := h.xgRoot()
			if _, err := h.xg("attach", "--iface", dutIf, "--mode", mode, "--pin-root", root); err != nil {
				return "", err
			}
			if err := h.xdpguardSettings(func(s *datapath.Settings) {
				// The limiter stays on, but the legitimate client's
				// 50 connections a second must not trip it: this
				// scenario measures bans. Banned sources are dropped
				// before the limiter is consulted.
				s.RateThreshold, s.RateWindow = 1_000_000, 10*time.Second
			}); err != nil {
				return "", err
			}
			list := filepath.Join(h.env.tmp, "bans.txt")
			if err := writeLines(list, "", "", srcs, func(a netip.Addr) string { return a.String() + "\n" }); err != nil {
				return "", err
			}
			t0 := time.Now()
			out, err := h.xg("ban", "--from", list, "--for", "1h", "--pin-root", root)
			if err != nil {
				return "", err
			}
			note := fmt.Sprintf("`xdpguard ban --from` %s lines: %.2f s wall", count(len(srcs)), time.Since(t0).Seconds())
			// The CLI's own figure leaves out start-up and parsing the
			// file, and covers the map updates and the state file.
			if _, own, ok := strings.Cut(strings.TrimSpace(out), " in "); ok {
				note += ", " + own + " by its own count"
			}
			return note, nil
		},
		teardown: func(h *harness) error {
			_, err := h.xg("detach", "--pin-root", h.xgRoot())
			return err
		},
	}
}

// xg runs the xdpguard CLI in the DUT namespace, with its state file (which
// `ban` keeps for reboots) in the scratch directory, not the host's.
func (h *harness) xg(args ...string) (string, error) {
	return inEnv(h.env.dut, []string{"XDPGUARD_STATE_DIR=" + filepath.Join(h.env.tmp, "state")}, h.xdpguard, args...)
}

func (h *harness) xgRoot() string { return filepath.Join(h.env.pinRoot, "xdpguard") }

// xdpguardSettings edits the pinned settings in place, through the loader,
// since the CLI has no command for them.
func (h *harness) xdpguardSettings(edit func(*datapath.Settings)) error {
	g, err := datapath.Open(h.xgRoot())
	if err != nil {
		return fmt.Errorf("open xdpguard pins: %w", err)
	}
	defer g.Close()
	s, err := g.Settings()
	if err != nil {
		return err
	}
	edit(&s)
	return g.SetSettings(s)
}

func nftMech(name, family, hook string) mech {
	return mech{
		Name: name, Filter: true,
		setup: func(h *harness, srcs []uint32) (string, error) {
			script := filepath.Join(h.env.tmp, "bans.nft")
			head := fmt.Sprintf("table %s xgbench {\n set banned { type ipv4_addr; size %d; elements = {\n", family, len(srcs))
			tail := fmt.Sprintf(" } }\n chain filter { %s policy accept; ip saddr @banned drop; }\n}\n", hook)
			if err := writeLines(script, head, tail, srcs, func(a netip.Addr) string { return a.String() + ",\n" }); err != nil {
				return "", err
			}
			t0 := time.Now()
			if _, err := in(h.env.dut, "nft", "-f", script); err != nil {
				return "", err
			}
			return fmt.Sprintf("`nft -f` %s elements: %.2f s", count(len(srcs)), time.Since(t0).Seconds()), nil
		},
		teardown: func(h *harness) error {
			_, err := in(h.env.dut, "nft", "delete", "table", family, "xgbench")
			return err
		},
	}
}

func ipsetMech() mech {
	return mech{
		Name: "iptables raw + ipset hash:ip", Filter: true,
		setup: func(h *harness, srcs []uint32) (string, error) {
			file := filepath.Join(h.env.tmp, "bans.ipset")
			head := fmt.Sprintf("create xgbench hash:ip family inet hashsize %d maxelem %d\n", max(1024, len(srcs)/2), max(65536, len(srcs)))
			if err := writeLines(file, head, "", srcs, func(a netip.Addr) string { return "add xgbench " + a.String() + "\n" }); err != nil {
				return "", err
			}
			t0 := time.Now()
			if _, err := in(h.env.dut, "ipset", "restore", "-f", file); err != nil {
				return "", err
			}
			el := time.Since(t0)
			if _, err := in(h.env.dut, "iptables", "-w", "-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "xgbench", "src", "-j", "DROP"); err != nil {
				return "", err
			}
			return fmt.Sprintf("`ipset restore` %s entries: %.2f s", count(len(srcs)), el.Seconds()), nil
		},
		teardown: func(h *harness) error {
			if _, err := in(h.env.dut, "iptables", "-w", "-t", "raw", "-F", "PREROUTING"); err != nil {
				return err
			}
			_, err := in(h.env.dut, "ipset", "destroy", "xgbench")
			return err
		},
	}
}

// count formats 1000000 as 1,000,000.
func count(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
