package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/banlist"
	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/state"
)

func allowCommand() *cli.Command {
	return command(&cli.Command{
		Name:      "allow",
		Usage:     "always pass a prefix: never counted, never banned (kept in the state file like bans)",
		ArgsUsage: "CIDR",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "remove", Usage: "remove the allow rule instead"},
			&cli.StringFlag{Name: "for", Value: "0", Usage: "rule `DURATION` (0 = permanent)"},
		},
	}, exactly(1, "allow takes exactly one ADDR or CIDR"), func(c *cli.Context) error {
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
		// The configuration file's allow list is its own source: a
		// prefix taken out of the file must not come back from the state.
		if !slices.Contains(cfg.Allow, p.Masked()) {
			var b state.Batch
			if c.Bool("remove") {
				b.RemoveAllow(p.Masked())
			} else {
				exp := time.Time{}
				if ttl > 0 {
					exp = time.Now().Add(ttl)
				}
				b.Allow(exp, p.Masked())
			}
			if err := commit(cfg, &b); err != nil {
				return err
			}
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
	})
}

// settleState does what detach promises for the state: clear it, so the
// next run does not bring the bans and allow rules back, or with
// --keep-state say what the next run will restore.
func settleState(c *cli.Context, cfg config.Config) error {
	s := store(cfg)
	_, jerr := os.Stat(s.Path())
	_, lerr := os.Stat(s.LegacyPath())
	if errors.Is(jerr, fs.ErrNotExist) && errors.Is(lerr, fs.ErrNotExist) {
		// Nothing to clear or keep; and no state directory made for it.
		if c.Bool("keep-state") {
			fmt.Fprintf(c.App.Writer, "no state file %s: the next run starts empty\n", s.Path())
		}
		return nil
	}
	if c.Bool("keep-state") {
		st, err := s.Read()
		if err != nil && !errors.Is(err, state.ErrDropped) {
			return fail("%v", err)
		}
		fmt.Fprintf(c.App.Writer, "kept %s: the next run restores %d bans and %d allow rules\n", s.Path(), len(st.Bans), len(st.Allow))
		return nil
	}
	st, err := s.Clear()
	if err != nil {
		return fail("clear the state: %v", err)
	}
	fmt.Fprintf(c.App.Writer, "cleared %s (%d bans, %d allow rules, %d offender records); --keep-state keeps it\n",
		s.Path(), len(st.Bans), len(st.Allow), len(st.Offenders))
	return nil
}
