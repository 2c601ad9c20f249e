package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/loader"
)

func attachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "load the XDP program and attach it to interfaces; protection stays after exit",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}, Usage: "`INTERFACE` to protect (repeatable)", Required: true},
			&cli.StringFlag{Name: "mode", Value: "auto", Usage: "XDP `MODE`: auto, native or generic"},
			&cli.BoolFlag{Name: "monitor", Usage: "dry run: count what would be dropped, drop nothing"},
			pinRootFlag,
		},
		Action: func(c *cli.Context) error {
			mode, err := loader.ParseMode(c.String("mode"))
			if err != nil {
				return fail("%v", err)
			}
			if err := checkPrivileges("attach"); err != nil {
				return err
			}
			g, err := loader.New(loader.Options{PinRoot: c.String("pin-root")})
			if err != nil {
				return fail("%v", err)
			}
			defer g.Close()
			if c.IsSet("monitor") {
				s, err := g.Settings()
				if err != nil {
					return fail("%v", err)
				}
				s.Monitor = c.Bool("monitor")
				if err := g.SetSettings(s); err != nil {
					return fail("%v", err)
				}
			}
			for _, ifname := range c.StringSlice("iface") {
				used, err := g.Attach(ifname, mode)
				if err != nil {
					return fail("%v", err)
				}
				fmt.Fprintf(c.App.Writer, "attached to %s (%s mode), pinned under %s\n", ifname, used, g.PinRoot())
			}
			return nil
		},
	}
}

func detachCommand() *cli.Command {
	return &cli.Command{
		Name:  "detach",
		Usage: "remove the program from every interface and delete its pinned state, bans included",
		Flags: []cli.Flag{pinRootFlag},
		Action: func(c *cli.Context) error {
			if err := checkPrivileges("detach"); err != nil {
				return err
			}
			g, err := loader.Open(c.String("pin-root"))
			if errors.Is(err, loader.ErrNotPinned) {
				fmt.Fprintln(c.App.Writer, "xdpguard is not attached; nothing to do")
				return nil
			}
			if err != nil {
				return fail("%v", err)
			}
			defer g.Close()
			ifs, _ := g.Interfaces()
			if err := g.DetachAll(); err != nil {
				return fail("%v", err)
			}
			for _, it := range ifs {
				fmt.Fprintf(c.App.Writer, "detached from %s\n", it.Name)
			}
			fmt.Fprintf(c.App.Writer, "removed %s\n", c.String("pin-root"))
			return nil
		},
	}
}

func openPinned(c *cli.Context, what string) (*loader.Guard, error) {
	if err := checkPrivileges(what); err != nil {
		return nil, err
	}
	g, err := loader.Open(c.String("pin-root"))
	if err != nil {
		return nil, fail("%v", err)
	}
	return g, nil
}
