// Command xdpguard protects mail hosts from connection-holding bots: an XDP
// program drops banned sources and rate-limits new connections per source,
// and operator commands manage its pinned state.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// version is set by the Makefile from git describe.
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the whole command line: it parses args (without the program
// name), runs the command and returns the exit status instead of exiting,
// so tests call it in process. Status 2 is every usage or input error, with
// one line on stderr naming what was wrong; a systemd unit with
// Restart=on-failure must see it fail, not a help text and status 0.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	code := -1
	app := newApp(stdin, stdout, stderr, &code)
	err := app.Run(interspersed(app, append([]string{"xdpguard"}, args...)))
	if code >= 0 { // CommandNotFound
		return code
	}
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(stderr, "xdpguard: %v\n", err)
	return 2
}

// newApp builds the command tree afresh for each run: urfave/cli flags keep
// whether they were set, so one tree must not serve two command lines.
func newApp(stdin io.Reader, stdout, stderr io.Writer, code *int) *cli.App {
	app := &cli.App{
		Name:                 "xdpguard",
		Usage:                "drop mail-port attackers in XDP, before the kernel allocates anything for them",
		Version:              version,
		EnableBashCompletion: true,
		Suggest:              true,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		Commands: []*cli.Command{
			runCommand(),
			attachCommand(),
			detachCommand(),
			statusCommand(),
			whyCommand(),
			banCommand(),
			unbanCommand(),
			allowCommand(),
			stateCommand(),
			logtestCommand(),
			versionCommand(),
			docsCommand(),
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(stderr, "xdpguard: no command %q (xdpguard help lists them)\n", name)
			*code = 2
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usageError("", nil, err)
		},
		// run reports errors and picks the status; the default handler
		// would call os.Exit in the middle of a test.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	for _, cmd := range app.Commands {
		cmd := cmd
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return usageError(cmd.Name, cmd.Flags, err)
		}
	}
	return app
}

// usageError turns a flag parsing error into one line, without the help
// text urfave/cli would print: "xdpguard ban: unknown flag --fro (did you
// mean --from?)".
func usageError(cmd string, flags []cli.Flag, err error) error {
	who := "xdpguard"
	if cmd != "" {
		who += " " + cmd
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag --" + name
		if s := cli.SuggestFlag(flags, name, true); len(name) >= 2 && strings.HasPrefix(strings.TrimLeft(s, "-"), name[:2]) {
			msg += " (did you mean " + s + "?)"
		}
	} else if m := badValue.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("--%s %s: not a valid value", m[2], m[1])
	}
	return cli.Exit(fmt.Sprintf("%s: %s", who, msg), 2)
}

// badValue is how the flag package reports a value it cannot parse.
var badValue = regexp.MustCompile(`^invalid value (".*") for flag -+([\w-]+):`)

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
			fmt.Fprintf(c.App.Writer, "xdpguard %s (minimum kernel %d.%d)\n", version, datapath.MinKernel[0], datapath.MinKernel[1])
			return nil
		},
	}
}

// fail turns an error into the one-line, status-2 exit every command uses.
func fail(format string, a ...any) error {
	return cli.Exit("xdpguard: "+fmt.Sprintf(format, a...), 2)
}

// command declares one of the commands that read xdpguard's configuration:
// cmd with the common flags after its own, and action, run once the
// positional arguments are what args says.
func command(cmd *cli.Command, args arity, action cli.ActionFunc) *cli.Command {
	cmd.Flags = append(cmd.Flags, commonFlags()...)
	cmd.Action = args.check(action)
	return cmd
}

// arity is how many positional arguments a command takes, and the usage
// error it answers any other count with.
type arity struct {
	n     int // -1: any number, left to the action
	wrong string
}

// exactly is n arguments, no more, no fewer; wrong, the usage error for
// any other count, says what they are.
func exactly(n int, wrong string) arity { return arity{n: n, wrong: wrong} }

// anyArgs leaves the arguments to the action: what ban and unban take
// depends on --from and --all, what logtest takes on --explain.
var anyArgs = arity{n: -1}

// check runs action only on the right number of arguments, and otherwise
// fails with a's usage error before anything is read or opened.
func (a arity) check(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		if a.n >= 0 && c.NArg() != a.n {
			return fail("%s", a.wrong)
		}
		return action(c)
	}
}

// warn writes a line that does not change the exit status.
func warn(c *cli.Context, format string, a ...any) {
	fmt.Fprintf(c.App.ErrWriter, "xdpguard: warning: "+format+"\n", a...)
}
