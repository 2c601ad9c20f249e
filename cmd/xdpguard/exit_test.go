package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs the command line in process, as main does.
func runIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// Every usage error, bad flag, missing required flag, bad value, unknown
// command or bad configuration exits 2 with one line on stderr that names
// what was wrong, and prints nothing else (no help text on stdout).
func TestUsageErrorsInProcess(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("pin_root: relative\n"), 0o644)
	emptyList := filepath.Join(dir, "empty.txt")
	os.WriteFile(emptyList, []byte("# nothing\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ban", "198.18.3.3", "--fro", "1h"}, "xdpguard ban: unknown flag --fro (did you mean --from?)"},
		{[]string{"attach"}, "attach needs --iface INTERFACE"},
		{[]string{"attach", "--iface", "xg-a", "extra"}, "attach takes no arguments"},
		{[]string{"run", "--iface", "X", "--bogus"}, "xdpguard run: unknown flag --bogus"},
		{[]string{"run", "--iface", "xg-a", "extra"}, "run takes no arguments"},
		{[]string{"detach", "xg-a"}, "detach takes no arguments"},
		{[]string{"status", "--top", "abc"}, `--top "abc": not a valid value`},
		{[]string{"status", "--top", "-1"}, "--top must be >= 0"},
		{[]string{"ban", "198.18.3.4", "--reason", "bogus"}, `unknown ban reason "bogus" (known: syn-rate, no-auth, auth-failed, probe, conn-limit, manual, blocklist, other)`},
		{[]string{"ban", "198.18.3.4", "--reason", "none"}, `unknown ban reason "none"`},
		{[]string{"ban", "198.18.0.1", "--for", "soon"}, `--for "soon": not a duration`},
		{[]string{"ban", "198.18.0.300"}, `"198.18.0.300": invalid address`},
		{[]string{"ban"}, "ban takes exactly one ADDR or CIDR"},
		{[]string{"ban", "198.18.0.1", "--from", emptyList}, "give either ADDR|CIDR or --from"},
		{[]string{"ban", "--from", emptyList}, "no addresses"},
		{[]string{"ban", "--from", "-"}, "no addresses"},
		{[]string{"unban", "--all", "198.18.0.1"}, "takes no addresses"},
		{[]string{"allow", "198.18.0.1", "--for", "-1h"}, `--for "-1h"`},
		{[]string{"allow"}, "allow takes exactly one ADDR or CIDR"},
		{[]string{"frobnicate"}, `no command "frobnicate"`},
		{[]string{"logtest"}, "logtest: no FILE given"},
		{[]string{"logtest", "/nonexistent/maillog"}, "/nonexistent/maillog"},
		{[]string{"status", "--config", "/nonexistent/xdpguard.yaml"}, "/nonexistent/xdpguard.yaml"},
		{[]string{"ban", "198.18.0.1", "--config", badCfg}, `pin_root: "relative": must be an absolute path (line 1)`},
		{[]string{"logtest", "--config", badCfg, "/dev/null"}, `pin_root: "relative"`},
		{[]string{"detach", "--pin-root", "relative"}, `pin_root: "relative": must be an absolute path`},
		{[]string{"attach", "--iface", "lo", "--mode", "turbo"}, `--mode: must be one of auto, native, generic, got "turbo"`},
	} {
		stdout, stderr, code := runIn(t, "", tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stdout %q, stderr %q)", tc.args, code, stdout, stderr)
			continue
		}
		if stdout != "" {
			t.Errorf("%v: printed on stdout: %q", tc.args, stdout)
		}
		if !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: stderr %q, want one line containing %q", tc.args, stderr, tc.want)
		}
	}
}

// The environment and the flags override the file's pin_root and
// state_dir, the flags winning, the same way for every command.
func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "xdpguard.yaml")
	os.WriteFile(cfg, []byte("pin_root: /sys/fs/bpf/from-file\nstate_dir: /from-file\n"), 0o644)
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{envConfig: cfg}, nil, "/sys/fs/bpf/from-file"},
		{map[string]string{envConfig: cfg, envPinRoot: "/sys/fs/bpf/from-env"}, nil, "/sys/fs/bpf/from-env"},
		{map[string]string{envConfig: cfg, envPinRoot: "/sys/fs/bpf/from-env"}, []string{"--pin-root", "/sys/fs/bpf/from-flag"}, "/sys/fs/bpf/from-flag"},
		{map[string]string{envConfig: "/nonexistent"}, []string{"--config", cfg}, "/sys/fs/bpf/from-file"},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		for _, cmd := range []string{"status", "unban", "ban", "allow"} {
			args := append([]string{cmd}, tc.args...)
			if cmd != "status" {
				args = append(args, "198.18.0.1")
			}
			_, stderr, code := runIn(t, "", args...)
			if code != 2 || !strings.Contains(stderr, "no xdpguard state pinned under "+tc.want+":") {
				t.Errorf("env %v, %v: exit %d, %q; want the pin root %s", tc.env, args, code, stderr, tc.want)
			}
		}
		os.Unsetenv(envPinRoot)
	}
}

func TestStateDirPrecedence(t *testing.T) {
	nsRoot := "/sys/fs/bpf/xdpguard-operator-never-pinned"
	dir := t.TempDir()
	fileDir, envDir, flagDir := filepath.Join(dir, "file"), filepath.Join(dir, "env"), filepath.Join(dir, "flag")
	cfg := filepath.Join(dir, "xdpguard.yaml")
	os.WriteFile(cfg, []byte("pin_root: "+nsRoot+"\nstate_dir: "+fileDir+"\n"), 0o644)
	t.Setenv(envConfig, cfg)
	t.Setenv(envStateDir, "") // so that TestMain's value comes back after the test
	os.Unsetenv(envStateDir)
	check := func(want string, args ...string) {
		t.Helper()
		stdout, stderr, code := runIn(t, "", append([]string{"detach", "--keep-state"}, args...)...)
		if code != 0 || !strings.Contains(stdout, "no state file "+filepath.Join(want, "state.journal")) {
			t.Errorf("detach --keep-state %v: exit %d, %q %q; want state in %s", args, code, stdout, stderr, want)
		}
	}
	check(fileDir)
	t.Setenv(envStateDir, envDir)
	check(envDir)
	check(flagDir, "--state-dir", flagDir)
}
