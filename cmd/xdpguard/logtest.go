package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/logwatch"
)

// logtestCommand is `xdpguard logtest`, the fail2ban-regex of this project:
// it runs the log rules over whole files using the lines' own timestamps.
// Exit status: 0 when it ran, 2 for an unreadable file or a bad config.
func logtestCommand() *cli.Command {
	return &cli.Command{
		Name:      "logtest",
		Usage:     "run the log rules over files and report matches and would-be bans",
		ArgsUsage: "FILE... | --explain LINE",
		Description: "Reads each FILE from its start, classifies every line, scores it at its own timestamp,\n" +
			"and prints, per rule and event kind, the lines matched, the lines missed, the sources\n" +
			"that would be banned and the throughput. With --json it writes one object per matched\n" +
			`line, {"file","line","rule","event","ip"}, then {"summary":{...,"would_ban":[...]}}.` + "\n" +
			"With --explain LINE it reads no file and shows, for that one line, the header form, the\n" +
			"rule, the event, the address, and why the line is or is not counted.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (YAML); defaults when absent"},
			&cli.BoolFlag{Name: "json", Usage: "write JSON objects, one per line"},
			&cli.StringFlag{Name: "explain", Usage: "explain how one log `LINE` is read and scored, instead of reading files"},
		},
		Action: func(c *cli.Context) error {
			files := c.Args().Slice()
			explain := c.IsSet("explain")
			if explain && len(files) > 0 {
				return cli.Exit("logtest: --explain takes one LINE and no FILE", 2)
			}
			if !explain && len(files) == 0 {
				return cli.Exit("logtest: no FILE given", 2)
			}
			cfg := logwatch.DefaultConfig()
			if path := c.String("config"); path != "" {
				var err error
				if cfg, err = logwatch.LoadConfig(path); err != nil {
					return cli.Exit(fmt.Sprintf("logtest: %v", err), 2)
				}
			}
			if explain {
				return explainLine(c, cfg, c.String("explain"))
			}
			_, err := logwatch.Replay(cfg, files, c.App.Writer, logwatch.ReplayOptions{JSON: c.Bool("json")})
			switch {
			case err == nil:
				return nil
			case errors.Is(err, logwatch.ErrUnreadable):
				return cli.Exit(fmt.Sprintf("logtest: %v", err), 2)
			default:
				return cli.Exit(fmt.Sprintf("logtest: %v", err), 1)
			}
		},
	}
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
