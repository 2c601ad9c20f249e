package main

import (
	"errors"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
)

// Environment variables every command reads; the flags of the same names
// override them, and they override the file.
const (
	envConfig   = "XDPGUARD_CONFIG"
	envPinRoot  = "XDPGUARD_PIN_ROOT"
	envStateDir = "XDPGUARD_STATE_DIR"
)

// commonFlags are the flags through which every command finds its
// configuration, read by settings.
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{envConfig},
			Usage: "configuration `FILE` (YAML); without it " + config.DefaultPath + " is read when it exists"},
		&cli.StringFlag{Name: "pin-root", EnvVars: []string{envPinRoot},
			Usage: "bpffs `DIR` holding xdpguard's maps and links (default: the file's pin_root, else " + datapath.DefaultPinRoot + ")"},
		&cli.StringFlag{Name: "state-dir", EnvVars: []string{envStateDir},
			Usage: "`DIR` of the state file that carries bans and allow rules across reboots (default: the file's state_dir, else " + config.DefaultStateDir + ")"},
	}
}

// settings is how every command finds its configuration, the same way for
// all of them: the file named by --config or $XDPGUARD_CONFIG (which must
// exist), else /etc/xdpguard/xdpguard.yaml when it exists, else the
// defaults; then $XDPGUARD_PIN_ROOT and $XDPGUARD_STATE_DIR; then
// --pin-root and --state-dir. urfave/cli applies the environment to the
// flags, and a flag given on the command line wins over its variable.
func settings(c *cli.Context) (config.Config, error) {
	cfg := config.Default()
	loaded, err := config.Load(configPath(c))
	switch {
	case err == nil:
		cfg = *loaded
	case errors.Is(err, os.ErrNotExist) && !c.IsSet("config"):
		// No file: the defaults.
	default:
		return config.Config{}, err
	}
	if c.IsSet("pin-root") {
		cfg.PinRoot = c.String("pin-root")
	}
	if c.IsSet("state-dir") {
		cfg.StateDir = c.String("state-dir")
	}
	return cfg, cfg.Validate()
}

func configPath(c *cli.Context) string {
	if c.IsSet("config") {
		return c.String("config")
	}
	return config.DefaultPath
}

func store(cfg config.Config) state.Store { return state.Store{Dir: cfg.StateDir} }
