package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xdpguard-cli-")
	if err != nil {
		panic(err)
	}
	// Keep the commands away from /var/lib/xdpguard and from a
	// /etc/xdpguard/xdpguard.yaml this machine may have: an empty file is
	// all defaults.
	os.Setenv("XDPGUARD_STATE_DIR", filepath.Join(dir, "state"))
	os.Setenv("XDPGUARD_CONFIG", os.DevNull)
	if binary, err = testutil.BuildXdpguard(dir); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// xdpguard runs the binary, inside ns when it is not nil.
func xdpguard(t *testing.T, ns *testutil.NS, args ...string) (string, string, int) {
	t.Helper()
	return xdpguardEnv(t, ns, nil, args...)
}

// xdpguardEnv is xdpguard with extra environment variables.
func xdpguardEnv(t *testing.T, ns *testutil.NS, env []string, args ...string) (string, string, int) {
	t.Helper()
	var cmd *exec.Cmd
	if ns != nil {
		cmd = exec.Command("nsenter", append([]string{"--net=" + ns.Path(), binary}, args...)...)
	} else {
		cmd = exec.Command(binary, args...)
	}
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func pinRoot(t *testing.T) string {
	t.Helper()
	return filepath.Join(testutil.PinRoot(t, "cli"), "pins")
}

func TestErrorsAreOneLineAndStatus2(t *testing.T) {
	root := pinRoot(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--pin-root", root}, "no xdpguard state pinned under " + root},
		{[]string{"ban", "198.18.0.1", "--pin-root", root}, "no xdpguard state pinned"},
		{[]string{"ban", "198.18.0.300"}, `"198.18.0.300": invalid address`},
		{[]string{"ban", "198.18.0.1/33"}, "invalid prefix length"},
		{[]string{"ban", "198.18.0.1/24"}, "host bits set"},
		{[]string{"ban", "198.18.0.1", "--for", "soon"}, `--for "soon"`},
		{[]string{"ban"}, "exactly one ADDR or CIDR"},
		{[]string{"unban", "--all", "198.18.0.1"}, "takes no addresses"},
		{[]string{"ban", "--from", "/nonexistent/list"}, "/nonexistent/list"},
		{[]string{"attach", "--iface", "xg-nosuch0", "--pin-root", root}, "xg-nosuch0: no such interface"},
		{[]string{"attach", "--iface", "lo", "--mode", "turbo"}, `--mode: must be one of auto, native, generic, got "turbo"`},
		{[]string{"status", "--top", "-1"}, "--top"},
		{[]string{"frobnicate"}, `no command "frobnicate"`},
		// The rows of issue 12, through the binary for the real status.
		{[]string{"ban", "198.18.3.3", "--fro", "1h"}, "unknown flag --fro (did you mean --from?)"},
		{[]string{"attach"}, "attach needs --iface INTERFACE"},
		{[]string{"run", "--iface", "xg-x", "--bogus"}, "unknown flag --bogus"},
		{[]string{"status", "--top", "abc"}, `--top "abc": not a valid value`},
		{[]string{"ban", "198.18.3.4", "--reason", "bogus"}, `unknown ban reason "bogus"`},
		{[]string{"why"}, "why takes exactly one ADDR"},
		{[]string{"why", "198.18.0.300"}, `"198.18.0.300": not an IP address`},
		{[]string{"why", "198.18.0.0/24"}, `"198.18.0.0/24": not an IP address`},
		{[]string{"status", "--from-file"}, "--from-file: no status file"},
		{[]string{"status", "198.18.0.1"}, "status takes no arguments"},
	} {
		stdout, stderr, code := xdpguard(t, nil, tc.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stdout %q, stderr %q)", tc.args, code, stdout, stderr)
		}
		if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
			t.Errorf("%v: stack trace on stderr:\n%s", tc.args, stderr)
		}
		if tc.want != "" && (!strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0) {
			t.Errorf("%v: stderr %q, want one line containing %q", tc.args, stderr, tc.want)
		}
	}
}

func TestNonRootIsToldWhatIsMissing(t *testing.T) {
	testutil.RequireRoot(t)
	os.Chmod(filepath.Dir(binary), 0o755) // let nobody run the binary
	for _, args := range [][]string{{"status"}, {"ban", "198.18.0.1"}, {"attach", "--iface", "lo"}, {"run", "--iface", "lo"}} {
		cmd := exec.Command(binary, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v as nobody: %v, %s", args, err, out)
			continue
		}
		if !strings.Contains(string(out), "needs CAP_BPF and CAP_NET_ADMIN") {
			t.Errorf("%v as nobody: %q does not name the missing capabilities", args, out)
		}
	}
}

func TestBanFromFileIsAllOrNothing(t *testing.T) {
	root := pinRoot(t)
	ns := testutil.New(t, "cli")
	testutil.Veth(t, ns, "xg-a", nil, ns, "xg-b", nil)
	if _, stderr, code := xdpguard(t, ns, "attach", "--iface", "xg-a", "--pin-root", root); code != 0 {
		t.Fatalf("attach: %s", stderr)
	}
	defer xdpguard(t, ns, "detach", "--pin-root", root)

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("198.18.1.1\n198.18.1.2\n# fine so far\n198.18.1.999\n"), 0o644)
	_, stderr, code := xdpguard(t, ns, "ban", "--from", bad, "--pin-root", root)
	if code != 2 || !strings.Contains(stderr, "bad.txt:4") {
		t.Fatalf("bad list: exit %d, %q", code, stderr)
	}
	if n := len(status(t, ns, root).Bans); n != 0 {
		t.Fatalf("a refused list left %d bans behind", n)
	}

	good := filepath.Join(dir, "good.txt")
	os.WriteFile(good, []byte("198.18.1.1\n198.19.0.0/16 ; SBL1\n2001:db8::7\n"), 0o644)
	if _, stderr, code := xdpguard(t, ns, "ban", "--from", good, "--for", "1h", "--pin-root", root); code != 0 {
		t.Fatalf("good list: %s", stderr)
	}
	st := status(t, ns, root)
	got := map[string]bool{}
	for _, b := range st.Bans {
		got[b.Prefix.String()] = true
	}
	for _, want := range []string{"198.18.1.1/32", "198.19.0.0/16", "2001:db8::/64"} {
		if !got[want] {
			t.Errorf("ban %s missing from status --json: %v", want, got)
		}
	}
	if len(st.Interfaces) != 1 || st.Interfaces[0].Name != "xg-a" {
		t.Errorf("interfaces = %+v", st.Interfaces)
	}
	if _, _, code := xdpguard(t, ns, "unban", "--all", "--pin-root", root); code != 0 {
		t.Fatal("unban --all failed")
	}
	if n := len(status(t, ns, root).Bans); n != 0 {
		t.Errorf("%d bans after unban --all", n)
	}
}

func status(t *testing.T, ns *testutil.NS, root string) statusReport {
	t.Helper()
	stdout, stderr, code := xdpguard(t, ns, "status", "--json", "--pin-root", root)
	if code != 0 {
		t.Fatalf("status: %s", stderr)
	}
	var r statusReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("status --json: %v\n%s", err, stdout)
	}
	return r
}
