package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/banlist"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
	"github.com/xdpguard/xdpguard/internal/state"
)

func whyCommand() *cli.Command {
	return command(&cli.Command{
		Name:      "why",
		Usage:     "show every ban, rule, offence and log score that concerns an address",
		ArgsUsage: "ADDR",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object"},
			&cli.BoolFlag{Name: "from-file", Usage: "read only the daemon's status file (no CAP_BPF needed)"},
		},
	}, exactly(1, "why takes exactly one ADDR"), func(c *cli.Context) error {
		return why(c, c.Args().First())
	})
}

// whyReport is everything xdpguard knows about one address.
type whyReport struct {
	Address netip.Addr `json:"address"`
	// Source is "maps" or, read-only, "status file" (which holds only
	// the daemon's latest bans).
	Source string `json:"source"`
	// Bans are the exact ban and the CIDR bans that cover the address,
	// with their evidence.
	Bans []banJSON `json:"bans"`
	// Allow are the allow rules that cover it: never counted, never banned.
	Allow []datapath.Rule `json:"allow"`
	// Offender is its repeat-offence history, from the state file.
	Offender *offence.Offender `json:"offender"`
	// Score is its current log score, from the daemon's status file.
	Score *state.Score `json:"score"`
	// A known-good list (issue 14) adds its entries for the address here.
	Daemon *daemonJSON `json:"daemon"`
}

func why(c *cli.Context, arg string) error {
	p, err := banlist.ParsePrefix(arg)
	if err != nil || !p.IsSingleIP() {
		return fail("%q: not an IP address", arg)
	}
	a := p.Addr()
	cfg, err := settings(c)
	if err != nil {
		return fail("%v", err)
	}
	store := store(cfg)
	dj := readDaemon(store, time.Now())
	r := whyReport{Address: a, Source: "maps", Bans: []banJSON{}, Allow: []datapath.Rule{}, Daemon: dj}
	g, err := openStatusMaps(c, dj)
	if err != nil {
		return err
	}
	if g != nil {
		defer g.Close()
		if err := kernelWhy(g, a, &r); err != nil {
			return fail("%v", err)
		}
		addEvidence(r.Bans, store)
	} else {
		r.Source = "status file"
		for _, b := range dj.Recent {
			if b.Prefix.Contains(a) {
				r.Bans = append(r.Bans, banJSON{Ban: b})
			}
		}
	}
	if st, err := readState(store); err == nil {
		for _, o := range st.Offenders {
			if o.Prefix.Contains(a) {
				r.Offender = &o
				break
			}
		}
	}
	if dj.Status != nil && dj.Running {
		for _, s := range dj.Scores {
			if s.Prefix.Contains(a) {
				r.Score = &s
				break
			}
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printWhy(c, r)
	return nil
}

// kernelWhy fills in what the maps hold about a: one lookup for the exact
// ban, and the rule table, which is small.
func kernelWhy(g *datapath.Guard, a netip.Addr, r *whyReport) error {
	b, ok, err := g.BanOf(a)
	if err != nil {
		return err
	}
	if ok {
		r.Bans = append(r.Bans, withRemaining(b))
	}
	rules, err := g.Rules()
	if err != nil {
		return err
	}
	for _, rule := range rules {
		if !rule.Prefix.Contains(a.Unmap()) {
			continue
		}
		switch rule.Action {
		case datapath.ActionDeny:
			r.Bans = append(r.Bans, withRemaining(datapath.Ban{Prefix: rule.Prefix, Expires: rule.Expires, Origin: rule.Origin, Reason: rule.Reason, CIDR: true}))
		case datapath.ActionAllow:
			r.Allow = append(r.Allow, rule)
		}
	}
	return nil
}

func withRemaining(b datapath.Ban) banJSON {
	bj := banJSON{Ban: b}
	if !b.Expires.IsZero() {
		left := time.Until(b.Expires).Seconds()
		bj.RemainingSeconds = &left
	}
	return bj
}

func printWhy(c *cli.Context, r whyReport) {
	w := c.App.Writer
	fmt.Fprintf(w, "%s:\n", r.Address)
	said := false
	for _, b := range r.Bans {
		said = true
		kind := "banned"
		if b.CIDR {
			kind = "inside the CIDR ban"
		}
		left := "until unbanned"
		if b.RemainingSeconds != nil {
			left = (time.Duration(*b.RemainingSeconds) * time.Second).Round(time.Second).String() + " left"
		} else if !b.Expires.IsZero() {
			left = "until " + when(b.Expires)
		}
		fmt.Fprintf(w, "  %s %s: origin %s, reason %s; %s\n", kind, b.Prefix, b.Origin, b.Reason, left)
		if ev := evidence(b.Ban); ev != "" {
			fmt.Fprintf(w, "    %s\n", ev)
		}
	}
	if r.Source == "status file" {
		fmt.Fprintf(w, "  (read-only: bans from the daemon's latest %d only)\n", state.MaxRecent)
	}
	for _, a := range r.Allow {
		said = true
		fmt.Fprintf(w, "  allowed by %s: never counted, never banned\n", a.Prefix)
	}
	if o := r.Offender; o != nil {
		said = true
		last := "-"
		if n := len(o.Bans); n > 0 {
			last = when(o.Bans[n-1])
		}
		fmt.Fprintf(w, "  offence history of %s: %s within the retention, the last at %s (%s, %s); a next ban lasts longer\n",
			o.Prefix, plural(len(o.Bans), "ban"), last, o.Reason, dash(o.Detector))
	}
	switch {
	case r.Score != nil:
		said = true
		fmt.Fprintf(w, "  log score of %s: %d from %d events in the current window\n", r.Score.Prefix, r.Score.Score, r.Score.Events)
	case r.Daemon == nil || !r.Daemon.Running:
		fmt.Fprintf(w, "  log score: unknown, the daemon is not running\n")
	}
	if !said {
		fmt.Fprintf(w, "  nothing concerns this address: not banned, not allowed, no offence, no log score\n")
	}
}

// evidence says what led to a ban, as far as it was recorded.
func evidence(b datapath.Ban) string {
	var parts []string
	switch {
	case b.Detector == "":
		return ""
	case b.Origin == datapath.OriginLog && b.Detector != datapath.DetectorSlotHolders:
		parts = append(parts, "by log rule "+b.Detector)
	default:
		parts = append(parts, "by "+b.Detector)
	}
	if b.Events > 0 {
		s := fmt.Sprintf("%d events", b.Events)
		switch {
		case !b.First.IsZero() && !b.Last.IsZero():
			s += fmt.Sprintf(" from %s to %s", when(b.First), when(b.Last))
		case !b.Last.IsZero():
			s += " until " + when(b.Last)
		}
		parts = append(parts, s)
	}
	if b.Offence > 0 {
		parts = append(parts, fmt.Sprintf("offence %d", b.Offence))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
