package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/state"
)

// stateCommand inspects and maintains the state journal, which is binary:
// export is how a person, a script or an older xdpguard reads it. The
// action is an argument, not a subcommand, so that flags go anywhere on
// the line as with every other command (interspersed).
func stateCommand() *cli.Command {
	return command(&cli.Command{
		Name:      "state",
		Usage:     "export (print as JSON) or compact the state journal: bans, allow rules, offenders, known-good sources",
		ArgsUsage: "export|compact",
		Description: "export prints the state in the state.json format (version 2) and changes nothing: a legacy\n" +
			"state.json is not imported, bans that have expired are listed, torn records are left out with a\n" +
			"warning. compact rewrites the journal from the state it holds; the daemon does this by itself.",
	}, exactly(1, "state takes one action: export or compact"), func(c *cli.Context) error {
		cfg, err := settings(c)
		if err != nil {
			return fail("%v", err)
		}
		s := store(cfg)
		switch c.Args().First() {
		case "export":
			st, err := s.Read()
			if errors.Is(err, state.ErrDropped) {
				warn(c, "%v", err)
			} else if err != nil {
				return fail("%v", err)
			}
			_, err = c.App.Writer.Write(state.Export(st))
			return err
		case "compact":
			before := s.Size()
			after, err := s.Compact(nil)
			if err != nil {
				return fail("%v", err)
			}
			fmt.Fprintf(c.App.Writer, "compacted %s: %d -> %d bytes\n", s.Path(), before, after)
			return nil
		}
		return fail("state %q: the actions are export and compact", c.Args().First())
	})
}
