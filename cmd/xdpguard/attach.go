package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/datapath"
)

func attachCommand() *cli.Command {
	return command(&cli.Command{
		Name:      "attach",
		Usage:     "load the XDP program and attach it to interfaces; protection stays after exit",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			// Not Required: urfave/cli answers a missing required flag
			// with the help text; the Action says it in one line.
			&cli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}, Usage: "`INTERFACE` to protect (repeatable; required)"},
			&cli.StringFlag{Name: "mode", Usage: "XDP `MODE`: auto, native or generic (default: the file's xdp_mode, else auto)"},
			&cli.BoolFlag{Name: "monitor", Usage: "dry run: count what would be dropped, drop nothing"},
		},
	}, exactly(0, "attach takes no arguments (interfaces go with --iface)"), func(c *cli.Context) error {
		if len(c.StringSlice("iface")) == 0 {
			return fail("attach needs --iface INTERFACE")
		}
		cfg, err := settings(c)
		if err != nil {
			return fail("%v", err)
		}
		mode := cfg.XDPMode
		if c.IsSet("mode") {
			if mode, err = datapath.ParseMode(c.String("mode")); err != nil {
				return fail("--mode: %v", err)
			}
		}
		if err := checkPrivileges("attach"); err != nil {
			return err
		}
		// The file's map sizes, so that a later `run` adopts these maps
		// instead of failing on other sizes.
		k := cfg.Kernel
		g, err := datapath.New(datapath.Options{PinRoot: cfg.PinRoot, MaxBans: uint32(k.MaxBans),
			MaxTracked: uint32(k.MaxTracked), MaxCIDR: uint32(k.MaxCIDRRules)})
		if err != nil {
			return fail("%v", err)
		}
		if c.IsSet("monitor") {
			s, err := g.Settings()
			if err == nil {
				s.Monitor = c.Bool("monitor")
				err = g.SetSettings(s)
			}
			if err != nil {
				g.Discard()
				return fail("%v", err)
			}
		}
		for _, ifname := range c.StringSlice("iface") {
			used, err := g.Attach(ifname, mode)
			if err != nil {
				g.Discard() // a failed attach leaves nothing it created
				return fail("%v", err)
			}
			fmt.Fprintf(c.App.Writer, "attached to %s (%s mode), pinned under %s\n", ifname, used, g.PinRoot())
		}
		return g.Close()
	})
}

func detachCommand() *cli.Command {
	return command(&cli.Command{
		Name:  "detach",
		Usage: "remove the program from every interface, delete its pinned maps and clear the state file",
		Description: "Bans and allow rules are removed from the kernel and from the state file, so the next\n" +
			"`xdpguard run` starts without them. --keep-state leaves the state file for the next run to restore.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep-state", Usage: "keep the state file: the next run restores its bans and allow rules"},
		},
	}, exactly(0, "detach takes no arguments: it removes xdpguard from every interface"), func(c *cli.Context) error {
		cfg, err := settings(c)
		if err != nil {
			return fail("%v", err)
		}
		if err := checkPrivileges("detach"); err != nil {
			return err
		}
		g, err := datapath.Open(cfg.PinRoot)
		switch {
		case errors.Is(err, datapath.ErrNotPinned):
			fmt.Fprintln(c.App.Writer, "xdpguard is not attached; nothing to detach")
		case err != nil:
			return fail("%v", err)
		default:
			defer g.Close()
			ifs, _ := g.Interfaces()
			if err := g.DetachAll(); err != nil {
				return fail("%v", err)
			}
			for _, it := range ifs {
				fmt.Fprintf(c.App.Writer, "detached from %s\n", it.Name)
			}
			fmt.Fprintf(c.App.Writer, "removed %s\n", cfg.PinRoot)
		}
		return settleState(c, cfg)
	})
}

// openPinned reads the configuration and opens the pinned maps, for the
// commands that change or read them.
func openPinned(c *cli.Context, what string) (config.Config, *datapath.Guard, error) {
	cfg, err := settings(c)
	if err != nil {
		return config.Config{}, nil, fail("%v", err)
	}
	if err := checkPrivileges(what); err != nil {
		return config.Config{}, nil, err
	}
	g, err := datapath.Open(cfg.PinRoot)
	if err != nil {
		return config.Config{}, nil, fail("%v", err)
	}
	return cfg, g, nil
}
