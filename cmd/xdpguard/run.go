package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/banlist"
	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/daemon"
)

func runCommand() *cli.Command {
	return command(&cli.Command{
		Name:  "run",
		Usage: "the daemon: attach, follow the mail logs, ban, persist, serve metrics",
		Description: "Reads --config (default " + config.DefaultPath + ", optional); flags override the file.\n" +
			"SIGHUP reloads the configuration; SIGTERM and SIGINT stop the daemon and leave protection in force.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}, Usage: "`INTERFACE` to protect (repeatable; replaces the file's list)"},
			&cli.StringSliceFlag{Name: "log", Usage: "mail log `FILE` to follow (repeatable; replaces the file's list)"},
			&cli.BoolFlag{Name: "journal", Usage: "follow the systemd journal too (logs.journal: units and identifiers from the file or the defaults)"},
			&cli.StringSliceFlag{Name: "allow", Usage: "`CIDR` never to ban (repeatable; added to the file's list)"},
			&cli.BoolFlag{Name: "monitor", Usage: "dry run: count and log what would be dropped, drop nothing"},
			&cli.StringFlag{Name: "crowdsec-url", Usage: "CrowdSec LAPI `URL` to bounce from (crowdsec.lapi_url)"},
			&cli.StringFlag{Name: "crowdsec-key", Usage: "CrowdSec bouncer API `KEY` (crowdsec.api_key)"},
			&cli.BoolFlag{Name: "detach-on-exit", Usage: "remove the program and its bans when the daemon stops"},
		},
	}, exactly(0, "run takes no arguments (interfaces go with --iface)"), func(c *cli.Context) error {
		cfg, err := runConfig(c)
		if err != nil {
			return fail("%v", err)
		}
		if err := checkPrivileges("run"); err != nil {
			return err
		}
		log := newLogger(cfg.Log.Format, cfg.Log.Level)
		slog.SetDefault(log)

		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		reload := make(chan struct{}, 1)
		go func() {
			for range hup {
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}()
		err = daemon.Run(ctx, cfg, daemon.Options{
			Reload:       func() (daemon.Config, error) { return runConfig(c) },
			DetachOnExit: c.Bool("detach-on-exit"),
			ConfigFile:   configFileUsed(c),
			Logger:       log,
		}, reload)
		if err != nil {
			return fail("%v", err)
		}
		return nil
	})
}

// runConfig reads the file as every command does, puts the daemon's flags
// on top and validates the result as a whole.
func runConfig(c *cli.Context) (daemon.Config, error) {
	cfg, err := settings(c)
	if err != nil {
		return daemon.Config{}, err
	}
	if c.IsSet("iface") {
		cfg.Interfaces = c.StringSlice("iface")
	}
	if c.IsSet("log") {
		cfg.Logs.Files = c.StringSlice("log")
	}
	if c.IsSet("journal") {
		cfg.Logs.Journal.Enabled = c.Bool("journal")
	}
	for _, s := range c.StringSlice("allow") {
		p, err := banlist.ParsePrefix(s)
		if err != nil {
			return daemon.Config{}, fmt.Errorf("--allow %q: %v", s, err)
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	if c.IsSet("crowdsec-url") {
		cfg.CrowdSec.LAPIURL = c.String("crowdsec-url")
	}
	if c.IsSet("crowdsec-key") {
		cfg.CrowdSec.APIKey, cfg.CrowdSec.APIKeyFile = c.String("crowdsec-key"), ""
	}
	if c.IsSet("monitor") {
		cfg.Kernel.Monitor = c.Bool("monitor")
	}
	return daemon.Resolve(cfg)
}

// configFileUsed is the configuration file run read, for status; empty
// when there was none.
func configFileUsed(c *cli.Context) string {
	if _, err := os.Stat(c.String("config")); err != nil {
		return ""
	}
	return c.String("config")
}

func newLogger(format, level string) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(level)) // validated by config
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
