package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/daemon"
	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// logtestCommand is `xdpguard logtest`, the fail2ban-regex of this project:
// it runs the log rules over whole files using the lines' own timestamps.
// It reads the daemon's own configuration file, so what it reports is what
// `xdpguard run` would do with those lines.
// Exit status: 0 when it ran, 2 for an unreadable file or a bad config.
func logtestCommand() *cli.Command {
	return command(&cli.Command{
		Name:      "logtest",
		Usage:     "run the log rules over files and report matches and would-be bans",
		ArgsUsage: "FILE... | --explain LINE",
		Description: "Reads each FILE from its start, classifies every line, scores it at its own timestamp,\n" +
			"and prints, per rule and event kind, the lines matched, the lines missed, the sources\n" +
			"that would be banned and the throughput. The rules and thresholds are the daemon's: its\n" +
			"configuration file's detect, allow and kernel.prefix_v4/v6 keys. With --json it writes one\n" +
			`object per matched line, {"file","line","rule","event","ip"}, then {"summary":{...,"would_ban":[...]}}.` + "\n" +
			"With --explain LINE it reads no file and shows, for that one line, the header form, the\n" +
			"rule, the event, the address, and why the line is or is not counted.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "write JSON objects, one per line"},
			&cli.StringFlag{Name: "explain", Usage: "explain how one log `LINE` is read and scored, instead of reading files"},
		},
	}, anyArgs, func(c *cli.Context) error {
		files := c.Args().Slice()
		explain := c.IsSet("explain")
		if explain && len(files) > 0 {
			return fail("logtest: --explain takes one LINE and no FILE")
		}
		if !explain && len(files) == 0 {
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
		if explain {
			return explainLine(c, det, c.String("explain"))
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
	})
}

func explainLine(c *cli.Context, cfg logwatch.Config, line string) error {
	x, err := logwatch.Explain(cfg, []byte(line))
	if err != nil {
		return cli.Exit(fmt.Sprintf("logtest: %v", err), 2)
	}
	if c.Bool("json") {
		if err := json.NewEncoder(c.App.Writer).Encode(x); err != nil {
			return cli.Exit(fmt.Sprintf("logtest: %v", err), 1)
		}
		return nil
	}
	if err := x.WriteText(c.App.Writer); err != nil {
		return cli.Exit(fmt.Sprintf("logtest: %v", err), 1)
	}
	return nil
}
