package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// The SYN-rate scenario: most frames come from synHot sources, each far
// over the rate; the rest from random addresses in 10.0.0.0/8, almost
// every one new, which churn the per-source state. A good limiter cuts the
// hot sources off and lets the rest (one SYN each) through.
const (
	synHot         = 100
	synHotPermille = 900
	synRate        = 100 // SYNs per second per source, burst as many
)

// synMech is a per-source limiter set up fresh for every run, so that each
// run starts with no source tracked and no source banned.
type synMech struct {
	row      row
	setup    func(h *harness) error
	teardown func(h *harness) error
	dropped  func(h *harness) (uint64, error) // the mechanism's own drop count
}

func synMechs() []synMech {
	return []synMech{
		{
			row: row{Mech: "xdpguard SYN limiter", Mode: "native", Filter: true},
			setup: func(h *harness) error {
				if _, err := h.xg("attach", "--iface", dutIf, "--mode", "native", "--pin-root", h.xgRoot()); err != nil {
					return err
				}
				return h.xdpguardSettings(func(s *datapath.Settings) {
					s.RateThreshold, s.RateWindow, s.BanDuration = synRate, time.Second, time.Minute
				})
			},
			teardown: func(h *harness) error { _, err := h.xg("detach", "--pin-root", h.xgRoot()); return err },
			dropped: func(h *harness) (uint64, error) {
				g, err := datapath.Open(h.xgRoot())
				if err != nil {
					return 0, err
				}
				defer g.Close()
				st, err := g.Stats()
				return st.DroppedBan, err
			},
		},
		{
			row: row{Mech: "nftables ingress, dynamic set + limit rate over", Filter: true},
			setup: func(h *harness) error {
				script := filepath.Join(h.env.tmp, "syn.nft")
				// Sized like xdpguard's SYN tracker (65,536 sources).
				rules := fmt.Sprintf(`table netdev xgbsyn {
 set flood { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 60s; }
 chain filter {
  type filter hook ingress device "%s" priority -500; policy accept;
  ip protocol tcp tcp flags & (fin|syn|rst|ack) == syn tcp dport { 110, 143, 993, 995 } update @flood { ip saddr limit rate over %d/second burst %d packets } counter drop
 }
}
`, dutIf, synRate, synRate)
				if err := os.WriteFile(script, []byte(rules), 0o600); err != nil {
					return err
				}
				_, err := in(h.env.dut, "nft", "-f", script)
				return err
			},
			teardown: func(h *harness) error {
				_, err := in(h.env.dut, "nft", "delete", "table", "netdev", "xgbsyn")
				return err
			},
			dropped: func(h *harness) (uint64, error) {
				out, err := in(h.env.dut, "nft", "list", "chain", "netdev", "xgbsyn", "filter")
				if err != nil {
					return 0, err
				}
				return parseNftCounter(out)
			},
		},
	}
}

var nftCounter = regexp.MustCompile(`counter packets (\d+)`)

func parseNftCounter(out string) (uint64, error) {
	m := nftCounter.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no counter in nft output %q", out)
	}
	return strconv.ParseUint(m[1], 10, 64)
}

func (h *harness) synScenario(ctx context.Context, runs int) ([]synRow, string) {
	desc := fmt.Sprintf("%d%% of frames from %s sources far over the rate, the rest from random sources in 10.0.0.0/8 (almost all new); limit %d SYNs/s per source", synHotPermille/10, count(synHot), synRate)
	if err := h.gen.setSources(synHot, synHotPermille); err != nil {
		return []synRow{{row: row{Mech: "SYN-rate scenario", Err: err.Error()}}}, desc
	}
	var out []synRow
	for _, m := range synMechs() {
		r := synRow{row: m.row}
		var dropped, handled uint64
		for i := 0; i < runs && ctx.Err() == nil; i++ {
			if err := m.setup(h); err != nil {
				r.Err = err.Error()
				m.teardown(h)
				break
			}
			s, err := h.flood(ctx)
			if err == nil {
				var d uint64
				d, err = m.dropped(h)
				dropped += d
				handled += s.Handled
				r.Samples = append(r.Samples, s)
			}
			if terr := m.teardown(h); err == nil {
				err = terr
			}
			if err != nil {
				r.Err = err.Error()
				break
			}
		}
		if handled > 0 {
			r.Dropped = fmt.Sprintf("%.1f%%", 100*float64(dropped)/float64(handled))
		}
		fmt.Fprintln(os.Stderr, r.progress())
		out = append(out, r)
	}
	return out, desc
}
