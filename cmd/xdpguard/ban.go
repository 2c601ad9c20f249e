package main

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/banlist"
	"github.com/xdpguard/xdpguard/loader"
	"github.com/xdpguard/xdpguard/state"
)

// defaultManualBan is what `ban` without --for means: long enough to outlast
// a campaign, short enough that a typo does not lock someone out for good.
const defaultManualBan = 24 * time.Hour

func banCommand() *cli.Command {
	return &cli.Command{
		Name:      "ban",
		Usage:     "ban an address or prefix in the kernel now",
		ArgsUsage: "ADDR|CIDR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "for", Value: defaultManualBan.String(), Usage: "ban `DURATION` (0 = until unbanned)"},
			&cli.StringFlag{Name: "reason", Value: loader.ReasonManual.String(), Usage: "reason: " + loader.ReasonNames()},
			&cli.StringFlag{Name: "from", Usage: "read addresses and prefixes from `FILE` (- for stdin); the file is applied whole or not at all"},
			pinRootFlag, stateDirFlag,
		},
		Action: func(c *cli.Context) error {
			ttl, err := time.ParseDuration(c.String("for"))
			if err != nil || ttl < 0 {
				return fail("--for %q: not a duration like 1h or 30m", c.String("for"))
			}
			reason, err := loader.ParseReason(c.String("reason"))
			if err != nil {
				return fail("--reason: %v", err)
			}
			ps, err := targets(c)
			if err != nil {
				return err
			}
			g, err := openPinned(c, "ban")
			if err != nil {
				return err
			}
			defer g.Close()
			start := time.Now()
			if err := g.BanMany(ps, ttl, loader.OriginManual, reason); err != nil {
				return fail("%v", err)
			}
			eff, err := g.Effective(ps)
			if err != nil {
				return fail("%v", err)
			}
			now := time.Now()
			records := make(map[netip.Prefix]loader.Ban, len(eff))
			for _, p := range eff {
				records[p] = loader.Ban{Prefix: p, Origin: loader.OriginManual, Reason: reason,
					Detector: loader.DetectorManual, Events: 1, First: now, Last: now}
			}
			if err := record(c, g, records); err != nil {
				return err
			}
			until := "until unbanned"
			if ttl > 0 {
				until = "for " + ttl.String()
			}
			if len(ps) == 1 {
				fmt.Fprintf(c.App.Writer, "banned %s %s\n", ps[0], until)
			} else {
				fmt.Fprintf(c.App.Writer, "banned %d prefixes %s in %v\n", len(ps), until, time.Since(start).Round(time.Millisecond))
			}
			return nil
		},
	}
}

func unbanCommand() *cli.Command {
	return &cli.Command{
		Name:      "unban",
		Usage:     "lift a ban now",
		ArgsUsage: "ADDR|CIDR",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "lift every ban"},
			&cli.StringFlag{Name: "from", Usage: "read addresses and prefixes from `FILE` (- for stdin)"},
			pinRootFlag, stateDirFlag,
		},
		Action: func(c *cli.Context) error {
			all := c.Bool("all")
			var ps []netip.Prefix
			var err error
			if all {
				if c.Args().Present() || c.IsSet("from") {
					return fail("unban --all takes no addresses")
				}
			} else if ps, err = targets(c); err != nil {
				return err
			}
			g, err := openPinned(c, "unban")
			if err != nil {
				return err
			}
			defer g.Close()
			lifted := 1
			switch {
			case all:
				lifted, err = g.UnbanAll()
			case len(ps) == 1:
				err = g.Unban(ps[0]) // a single address must be banned
			default:
				lifted, err = g.UnbanMany(ps) // a list may name some that are not
			}
			if err != nil {
				return fail("%v", err)
			}
			if err := record(c, g, nil); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "lifted %d bans\n", lifted)
			return nil
		},
	}
}

func allowCommand() *cli.Command {
	return &cli.Command{
		Name:      "allow",
		Usage:     "always pass a prefix: never counted, never banned",
		ArgsUsage: "CIDR",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "remove", Usage: "remove the allow rule instead"},
			&cli.StringFlag{Name: "for", Value: "0", Usage: "rule `DURATION` (0 = permanent)"},
			pinRootFlag,
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return fail("allow takes exactly one ADDR or CIDR")
			}
			p, err := banlist.ParsePrefix(c.Args().First())
			if err != nil {
				return fail("%q: %v", c.Args().First(), err)
			}
			ttl, err := time.ParseDuration(c.String("for"))
			if err != nil || ttl < 0 {
				return fail("--for %q: not a duration like 1h or 30m", c.String("for"))
			}
			g, err := openPinned(c, "allow")
			if err != nil {
				return err
			}
			defer g.Close()
			if c.Bool("remove") {
				if err := g.RemoveAllow(p); err != nil {
					return fail("%v", err)
				}
				fmt.Fprintf(c.App.Writer, "removed allow rule %s\n", p)
				return nil
			}
			if err := g.Allow(p, ttl); err != nil {
				return fail("%v", err)
			}
			fmt.Fprintf(c.App.Writer, "allowed %s\n", p)
			return nil
		},
	}
}

// targets reads the one ADDR|CIDR argument or the --from list, refusing
// the whole input on any bad entry.
func targets(c *cli.Context) ([]netip.Prefix, error) {
	if from := c.String("from"); from != "" {
		if c.Args().Present() {
			return nil, fail("give either ADDR|CIDR or --from, not both")
		}
		ps, err := banlist.ReadFile(from, os.Stdin)
		if err != nil {
			return nil, fail("%v", err)
		}
		if len(ps) == 0 {
			return nil, fail("%s: no addresses", from)
		}
		return ps, nil
	}
	if c.Args().Len() != 1 {
		return nil, fail("%s takes exactly one ADDR or CIDR (or --from FILE)", c.Command.Name)
	}
	p, err := banlist.ParsePrefix(c.Args().First())
	if err != nil {
		return nil, fail("%q: %v", c.Args().First(), err)
	}
	return []netip.Prefix{p}, nil
}

var stateDirFlag = &cli.StringFlag{
	Name:    "state-dir",
	Usage:   "`DIR` of the state file that carries bans across reboots",
	Value:   "/var/lib/xdpguard",
	EnvVars: []string{"XDPGUARD_STATE_DIR"},
}

// record writes the kernel's bans into the state file, so that a manual ban
// survives a reboot even when the daemon is not running.
func record(c *cli.Context, g *loader.Guard, records map[netip.Prefix]loader.Ban) error {
	if _, err := state.Mirror(g, state.Store{Dir: c.String("state-dir")}, records, nil); err != nil {
		return fail("the kernel has the change, but the state file does not: %v", err)
	}
	return nil
}
