package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/daemon"
	"github.com/xdpguard/xdpguard/logwatch"
)

// logtestCommand is `xdpguard logtest`, the fail2ban-regex of this project:
// it runs the log rules over whole files using the lines' own timestamps.
// It reads the daemon's own configuration file, so what it reports is what
// `xdpguard run` would do with those lines.
// Exit status: 0 when it ran, 2 for an unreadable file or a bad config.
func logtestCommand() *cli.Command {
	return &cli.Command{
		Name:      "logtest",
		Usage:     "run the log rules over files and report matches and would-be bans",
		ArgsUsage: "FILE...",
		Description: "Reads each FILE from its start, classifies every line, scores it at its own timestamp,\n" +
			"and prints, per rule and event kind, the lines matched, the lines missed, the sources\n" +
			"that would be banned and the throughput. The rules and thresholds are the daemon's: its\n" +
			"configuration file's detect, allow and kernel.prefix_v4/v6 keys. With --json it writes one\n" +
			`object per matched line, {"file","line","rule","event","ip"}, then {"summary":{...,"would_ban":[...]}}.`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "write JSON objects, one per line"},
		}, commonFlags()...),
		Action: func(c *cli.Context) error {
			files := c.Args().Slice()
			if len(files) == 0 {
				return fail("logtest: no FILE given")
			}
			cfg, err := settings(c)
			if err != nil {
				return fail("logtest: %v", err)
			}
			det, err := daemon.DetectConfig(cfg)
			if err != nil {
				return fail("logtest: %s: %v", configPath(c), err)
			}
			_, err = logwatch.Replay(det, files, c.App.Writer, logwatch.ReplayOptions{JSON: c.Bool("json")})
			switch {
			case err == nil:
				return nil
			case errors.Is(err, logwatch.ErrUnreadable):
				return fail("logtest: %v", err)
			default:
				return cli.Exit(fmt.Sprintf("xdpguard: logtest: %v", err), 1)
			}
		},
	}
}
