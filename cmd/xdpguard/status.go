package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/crowdsec"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
)

// statusReport is the stable JSON shape of `status --json`.
type statusReport struct {
	// Daemon is what the daemon's status file says, if there is one.
	Daemon     *daemonJSON          `json:"daemon"`
	PinRoot    string               `json:"pin_root"`
	Interfaces []datapath.Interface `json:"interfaces"`
	Settings   settingsJSON         `json:"settings"`
	Counters   countersJSON         `json:"counters"`
	Bans       []banJSON            `json:"bans"`
	Allow      []datapath.Rule      `json:"allow"`
	Top        []datapath.Source    `json:"top_sources"`
	// CrowdSec is the daemon's last report on its LAPI link (state
	// directory); absent when the daemon has none.
	CrowdSec *crowdsec.Report `json:"crowdsec,omitempty"`
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
	datapath.Stats
	Seen uint64 `json:"seen"`
}

type banJSON struct {
	datapath.Ban
	RemainingSeconds *float64 `json:"remaining_seconds"` // null: until unbanned
}

func statusCommand() *cli.Command {
	return command(&cli.Command{
		Name:  "status",
		Usage: "show the daemon, interfaces, counters, bans and the top SYN sources",
		Description: "Without the capabilities to open the maps (a monitoring user), or with --from-file, it reads\n" +
			"the status file the daemon writes in the state directory every " + state.StatusInterval.String() + ".",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.IntFlag{Name: "top", Value: 10, Usage: "show the `N` busiest SYN sources"},
			&cli.IntFlag{Name: "bans", Value: 100, Usage: "list at most `N` bans in the table (--json lists all)"},
			&cli.StringFlag{Name: "ip", Usage: "show everything that concerns `ADDR` (as `xdpguard why ADDR`)"},
			&cli.BoolFlag{Name: "from-file", Usage: "read only the daemon's status file (no CAP_BPF needed)"},
		},
	}, exactly(0, "status takes no arguments (status --ip ADDR, or why ADDR)"), func(c *cli.Context) error {
		if c.Int("top") < 0 {
			return fail("--top must be >= 0")
		}
		if c.IsSet("ip") {
			return why(c, c.String("ip"))
		}
		cfg, err := settings(c)
		if err != nil {
			return fail("%v", err)
		}
		store := store(cfg)
		dj := readDaemon(store, time.Now())
		g, err := openStatusMaps(c, dj)
		if err != nil {
			return err
		}
		if g == nil {
			return printFromFile(c, dj)
		}
		defer g.Close()
		r, err := collect(g, g.PinRoot(), c.Int("top"))
		if err != nil {
			return fail("%v", err)
		}
		r.Daemon = dj
		addEvidence(r.Bans, store)
		if rep, ok, err := crowdsec.ReadReport(cfg.StateDir); err != nil {
			return fail("crowdsec report: %v", err)
		} else if ok {
			r.CrowdSec = &rep
		}
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		}
		printStatus(c.App.Writer, r, c.Int("bans"))
		return nil
	})
}

func collect(g *datapath.Guard, root string, top int) (*statusReport, error) {
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
	r.Allow = []datapath.Rule{}
	for _, rule := range rules {
		if rule.Action == datapath.ActionAllow {
			r.Allow = append(r.Allow, rule)
		}
	}
	if r.Top, err = g.TopSources(top); err != nil {
		return nil, err
	}
	if r.Top == nil {
		r.Top = []datapath.Source{}
	}
	return r, nil
}

func printStatus(w io.Writer, r *statusReport, maxBans int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	printDaemon(tw, r.Daemon)
	fmt.Fprintf(tw, "\nInterfaces (pins under %s):\n", r.PinRoot)
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
		{"kernel bans left to the daemon (bucket busy)", c.BanDeferred},
		{"SYN resends (not counted)", c.SYNRetransmits}, {"known-good over the rate (spared)", c.KnownGoodSpared},
		{"dropped (admission)", c.DroppedAdmission}, {"would drop (admission, monitor)", c.WouldDropAdmission},
		{"SYNs untracked (SYN tracker full)", c.SYNUntracked},
	} {
		fmt.Fprintf(tw, "  %s\t%d\n", row.name, row.v)
	}

	fmt.Fprintf(tw, "\nActive bans: %d\n", len(r.Bans))
	if len(r.Bans) > 0 {
		fmt.Fprintf(tw, "  PREFIX\tORIGIN\tREASON\tDETECTOR\tEVENTS\tOFFENCE\tREMAINING\n")
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
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Prefix, b.Origin, b.Reason, dash(b.Detector), num(b.Events), num(b.Offence), left)
	}
	if len(r.Allow) > 0 {
		fmt.Fprintf(tw, "\nAllowed prefixes: %d\n", len(r.Allow))
		for _, a := range r.Allow {
			fmt.Fprintf(tw, "  %s\n", a.Prefix)
		}
	}
	if cs := r.CrowdSec; cs != nil {
		printCrowdsec(tw, cs)
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

func printCrowdsec(w io.Writer, cs *crowdsec.Report) {
	age := time.Since(cs.Updated).Round(time.Second)
	fmt.Fprintf(w, "\nCrowdSec LAPI %s (reported %s ago):\n", cs.LAPI, age)
	link := func(name string, h crowdsec.Health) {
		switch {
		case h.Up:
			fmt.Fprintf(w, "  %s\tup, last success %s ago\n", name, time.Since(h.LastSuccess).Round(time.Second))
		case h.Failures > 0:
			fmt.Fprintf(w, "  %s\tDOWN, %d failures: %s\n", name, h.Failures, h.LastError)
		default:
			fmt.Fprintf(w, "  %s\tnot tried yet\n", name)
		}
	}
	if cs.Pull != nil {
		link("decisions (pull)", *cs.Pull)
		fmt.Fprintf(w, "  decisions applied\t%d\n", cs.Decisions)
	}
	if cs.Push != nil {
		link("alerts (push)", cs.Push.Health)
		fmt.Fprintf(w, "  alerts posted\t%d (%d dropped)\n", cs.Push.Posted, cs.Push.Dropped)
	}
}
