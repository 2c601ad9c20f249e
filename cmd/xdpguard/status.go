package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/loader"
)

// statusReport is the stable JSON shape of `status --json`.
type statusReport struct {
	PinRoot    string             `json:"pin_root"`
	Interfaces []loader.Interface `json:"interfaces"`
	Settings   settingsJSON       `json:"settings"`
	Counters   countersJSON       `json:"counters"`
	Bans       []banJSON          `json:"bans"`
	Allow      []loader.Rule      `json:"allow"`
	Top        []loader.Source    `json:"top_sources"`
}

type settingsJSON struct {
	Ports         []uint16 `json:"ports"`
	RateThreshold uint32   `json:"rate_threshold"`
	RateWindow    string   `json:"rate_window"`
	BanDuration   string   `json:"ban_duration"`
	Scope         string   `json:"scope"`
	Monitor       bool     `json:"monitor"`
	PrefixV4      int      `json:"prefix_v4"`
	PrefixV6      int      `json:"prefix_v6"`
}

type countersJSON struct {
	loader.Stats
	Seen uint64 `json:"seen"`
}

type banJSON struct {
	loader.Ban
	RemainingSeconds *float64 `json:"remaining_seconds"` // null: until unbanned
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show interfaces, counters, bans and the top SYN sources",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.IntFlag{Name: "top", Value: 10, Usage: "show the `N` busiest SYN sources"},
			&cli.IntFlag{Name: "bans", Value: 100, Usage: "list at most `N` bans in the table (--json lists all)"},
			pinRootFlag,
		},
		Action: func(c *cli.Context) error {
			if c.Int("top") < 0 {
				return fail("--top must be >= 0")
			}
			g, err := openPinned(c, "status")
			if err != nil {
				return err
			}
			defer g.Close()
			r, err := collect(g, c.String("pin-root"), c.Int("top"))
			if err != nil {
				return fail("%v", err)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printStatus(c.App.Writer, r, c.Int("bans"))
			return nil
		},
	}
}

func collect(g *loader.Guard, root string, top int) (*statusReport, error) {
	r := &statusReport{PinRoot: root}
	var err error
	if r.Interfaces, err = g.Interfaces(); err != nil {
		return nil, err
	}
	s, err := g.Settings()
	if err != nil {
		return nil, err
	}
	r.Settings = settingsJSON{Ports: s.Ports, RateThreshold: s.RateThreshold, RateWindow: s.RateWindow.String(),
		BanDuration: s.BanDuration.String(), Scope: s.Scope.String(), Monitor: s.Monitor, PrefixV4: s.PrefixV4, PrefixV6: s.PrefixV6}
	st, err := g.Stats()
	if err != nil {
		return nil, err
	}
	r.Counters = countersJSON{Stats: st, Seen: st.Seen()}
	bans, err := g.Bans()
	if err != nil {
		return nil, err
	}
	r.Bans = []banJSON{}
	for _, b := range bans {
		bj := banJSON{Ban: b}
		if !b.Expires.IsZero() {
			left := time.Until(b.Expires).Seconds()
			bj.RemainingSeconds = &left
		}
		r.Bans = append(r.Bans, bj)
	}
	rules, err := g.Rules()
	if err != nil {
		return nil, err
	}
	r.Allow = []loader.Rule{}
	for _, rule := range rules {
		if rule.Action == loader.ActionAllow {
			r.Allow = append(r.Allow, rule)
		}
	}
	if r.Top, err = g.TopSources(top); err != nil {
		return nil, err
	}
	if r.Top == nil {
		r.Top = []loader.Source{}
	}
	return r, nil
}

func printStatus(w io.Writer, r *statusReport, maxBans int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "Interfaces (pins under %s):\n", r.PinRoot)
	if len(r.Interfaces) == 0 {
		fmt.Fprintln(tw, "  none attached")
	}
	for _, it := range r.Interfaces {
		if it.Missing {
			fmt.Fprintf(tw, "  %s\t(interface gone; its pin remains)\n", it.Name)
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s mode\tprogram id %d\n", it.Name, it.Mode, it.ProgramID)
	}
	s := r.Settings
	mode := "enforcing"
	if s.Monitor {
		mode = "MONITOR (dry run: nothing is dropped)"
	}
	fmt.Fprintf(tw, "\nMode: %s; ports %v; SYN limit %d per %s, auto-ban %s; scope %s; granularity /%d, /%d\n",
		mode, s.Ports, s.RateThreshold, s.RateWindow, s.BanDuration, s.Scope, s.PrefixV4, s.PrefixV6)

	c := r.Counters
	fmt.Fprintf(tw, "\nCounters:\n")
	for _, row := range []struct {
		name string
		v    uint64
	}{
		{"seen", c.Seen}, {"passed", c.Passed}, {"dropped (ban)", c.DroppedBan}, {"dropped (CIDR deny)", c.DroppedCIDR},
		{"would drop (ban, monitor)", c.WouldDropBan}, {"would drop (CIDR, monitor)", c.WouldDropCIDR},
		{"SYNs counted", c.SYNs}, {"kernel auto-bans", c.AutoBans}, {"allowed", c.Allowed},
		{"malformed", c.Malformed}, {"events lost", c.EventsLost}, {"kernel bans with no free slot", c.BanTableFull},
		{"SYN resends (not counted)", c.SYNRetransmits}, {"known-good over the rate (spared)", c.KnownGoodSpared},
		{"dropped (admission)", c.DroppedAdmission}, {"would drop (admission, monitor)", c.WouldDropAdmission},
	} {
		fmt.Fprintf(tw, "  %s\t%d\n", row.name, row.v)
	}

	fmt.Fprintf(tw, "\nActive bans: %d\n", len(r.Bans))
	if len(r.Bans) > 0 {
		fmt.Fprintf(tw, "  PREFIX\tORIGIN\tREASON\tREMAINING\n")
	}
	for i, b := range r.Bans {
		if i == maxBans {
			fmt.Fprintf(tw, "  ... and %d more (--bans N, or --json for all)\n", len(r.Bans)-maxBans)
			break
		}
		left := "until unbanned"
		if b.RemainingSeconds != nil {
			left = (time.Duration(*b.RemainingSeconds) * time.Second).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", b.Prefix, b.Origin, b.Reason, left)
	}
	if len(r.Allow) > 0 {
		fmt.Fprintf(tw, "\nAllowed prefixes: %d\n", len(r.Allow))
		for _, a := range r.Allow {
			fmt.Fprintf(tw, "  %s\n", a.Prefix)
		}
	}
	fmt.Fprintf(tw, "\nTop SYN sources (SYNs held in the current %s window):\n", s.RateWindow)
	if len(r.Top) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		fmt.Fprintf(tw, "  SOURCE\tIN WINDOW\tSYNS\n")
	}
	for _, t := range r.Top {
		fmt.Fprintf(tw, "  %s\t%d/%d\t%d\n", t.Prefix, t.InWindow, s.RateThreshold, t.SYNs)
	}
}
