// Command xdpguard protects mail hosts from connection-holding bots: an XDP
// program drops banned sources and rate-limits new connections per source,
// and operator commands manage its pinned state.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/loader"
)

// version is set by the Makefile from git describe.
var version = "dev"

func main() {
	app := &cli.App{
		Name:                 "xdpguard",
		Usage:                "drop mail-port attackers in XDP, before the kernel allocates anything for them",
		Version:              version,
		EnableBashCompletion: true,
		Suggest:              true,
		Commands: []*cli.Command{
			runCommand(),
			attachCommand(),
			detachCommand(),
			statusCommand(),
			banCommand(),
			unbanCommand(),
			allowCommand(),
			logtestCommand(),
			versionCommand(),
			docsCommand(),
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(os.Stderr, "xdpguard: no command %q (xdpguard help lists them)\n", name)
			os.Exit(2)
		},
		// One clear line and status 2 for every usage or input error.
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return cli.Exit(fmt.Sprintf("xdpguard: %v", err), 2)
		},
		ExitErrHandler: func(c *cli.Context, err error) {
			if err == nil {
				return
			}
			var ec cli.ExitCoder
			if errors.As(err, &ec) {
				if msg := err.Error(); msg != "" {
					fmt.Fprintln(os.Stderr, msg)
				}
				os.Exit(ec.ExitCode())
			}
			fmt.Fprintf(os.Stderr, "xdpguard: %v\n", err)
			os.Exit(2)
		},
	}
	app.Run(interspersed(app, os.Args))
}

// interspersed moves a command's flags before its positional arguments, so
// that `xdpguard ban 192.0.2.1 --for 1h` works: urfave/cli/v2 stops parsing
// flags at the first argument.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var cmd *cli.Command
	for _, c := range app.Commands {
		if c.HasName(args[1]) {
			cmd = c
		}
	}
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	var flags, positional []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a) // includes "-" for stdin
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(rest) {
			flags = append(flags, rest[i+1])
			i++
		}
	}
	out := append([]string{args[0], args[1]}, flags...)
	if len(positional) > 0 {
		out = append(append(out, "--"), positional...)
	}
	return out
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "xdpguard %s (minimum kernel %d.%d)\n", version, loader.MinKernel[0], loader.MinKernel[1])
			return nil
		},
	}
}

var pinRootFlag = &cli.StringFlag{
	Name:    "pin-root",
	Usage:   "bpffs `DIR` holding xdpguard's maps and links",
	Value:   loader.DefaultPinRoot,
	EnvVars: []string{"XDPGUARD_PIN_ROOT"},
}

// fail turns an error into the one-line, status-2 exit every command uses.
func fail(format string, a ...any) error {
	return cli.Exit("xdpguard: "+fmt.Sprintf(format, a...), 2)
}
