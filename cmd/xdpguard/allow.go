package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/banlist"
	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/state"
)

func allowCommand() *cli.Command {
	return &cli.Command{
		Name:      "allow",
		Usage:     "always pass a prefix: never counted, never banned (kept in the state file like bans)",
		ArgsUsage: "CIDR",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "remove", Usage: "remove the allow rule instead"},
			&cli.StringFlag{Name: "for", Value: "0", Usage: "rule `DURATION` (0 = permanent)"},
		}, commonFlags()...),
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
			cfg, g, err := openPinned(c, "allow")
			if err != nil {
				return err
			}
			defer g.Close()
			if c.Bool("remove") {
				err = g.RemoveAllow(p)
			} else {
				err = g.Allow(p, ttl)
			}
			if err != nil {
				return fail("%v", err)
			}
			if err := state.MirrorAllow(g, store(cfg), cfg.Allow); err != nil {
				return fail("the kernel has the change, but the state file does not: %v", err)
			}
			if c.Bool("remove") {
				fmt.Fprintf(c.App.Writer, "removed allow rule %s\n", p)
				return nil
			}
			fmt.Fprintf(c.App.Writer, "allowed %s\n", p)
			if bans, err := g.Bans(); err == nil {
				n := 0
				for _, b := range bans {
					if p.Bits() <= b.Prefix.Bits() && p.Contains(b.Prefix.Addr()) {
						n++
					}
				}
				if n > 0 {
					warn(c, "%d bans inside %s drop nothing while this allow rule stands (xdpguard unban lifts them)", n, p)
				}
			}
			return nil
		},
	}
}

// settleState does what detach promises for the state file: clear it, so
// the next run does not bring the bans and allow rules back, or with
// --keep-state say what the next run will restore.
func settleState(c *cli.Context, cfg config.Config) error {
	s := store(cfg)
	if _, err := os.Stat(s.Path()); errors.Is(err, fs.ErrNotExist) {
		// Nothing to clear or keep; and no state directory made for it.
		if c.Bool("keep-state") {
			fmt.Fprintf(c.App.Writer, "no state file %s: the next run starts empty\n", s.Path())
		}
		return nil
	}
	return state.WithLock(s.Dir, func() error {
		st, err := s.Load()
		if err != nil && !errors.Is(err, state.ErrCorrupt) {
			return fail("%v", err)
		}
		if c.Bool("keep-state") {
			fmt.Fprintf(c.App.Writer, "kept %s: the next run restores %d bans and %d allow rules\n", s.Path(), len(st.Bans), len(st.Allow))
			return nil
		}
		switch err := os.Remove(s.Path()); {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return fail("clear the state file: %v", err)
		}
		fmt.Fprintf(c.App.Writer, "cleared %s (%d bans, %d allow rules, %d offender records); --keep-state keeps it\n",
			s.Path(), len(st.Bans), len(st.Allow), len(st.Offenders))
		return nil
	})
}
