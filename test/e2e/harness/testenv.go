package harness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

// The settings both end-to-end tests read from the environment, and where
// they leave their figures and logs.

// Main is an end-to-end test binary's TestMain. The load (attacks, probe,
// users) is this binary, re-executed in the client namespace: there
// mailload.Main runs its role and exits; anywhere else the tests run.
func Main(m *testing.M) {
	mailload.Main()
	os.Exit(m.Run())
}

// Prerequisites skips the test unless it runs as root, and fails it where
// Dovecot, or with $E2E_FAIL2BAN=1 fail2ban, is missing: CI installs them,
// so their absence there is a failure, not a skip. It reports whether the
// fail2ban phases run.
func Prerequisites(t testing.TB) (fail2ban bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the end-to-end test needs root (network namespaces, XDP, Dovecot); run `sudo make test-e2e`")
	}
	if err := CheckDovecot(); err != nil {
		t.Fatal(err)
	}
	fail2ban = os.Getenv("E2E_FAIL2BAN") == "1"
	if fail2ban {
		if err := CheckFail2ban(); err != nil {
			t.Fatal(err)
		}
	}
	return fail2ban
}

// TestBinary is testutil.XdpguardBinary in the test's temporary directory.
func TestBinary(t testing.TB) string {
	t.Helper()
	bin, err := testutil.XdpguardBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// PhaseLen is $E2E_PHASE, else 40 s: long enough for a log-based defence to
// act and for its figures to settle.
func PhaseLen(t testing.TB) time.Duration {
	t.Helper()
	if s := os.Getenv("E2E_PHASE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("E2E_PHASE=%q: %v", s, err)
		}
		return d
	}
	return 40 * time.Second
}

// OutDir is where a test writes its table, raw figures and logs:
// $E2E_OUT, else build/e2e/sub under the repository (sub may be empty).
func OutDir(sub string) string {
	if out := os.Getenv("E2E_OUT"); out != "" {
		return out
	}
	root, err := os.Getwd() // the test's package directory
	if err == nil {
		for dir := root; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return filepath.Join(dir, "build", "e2e", sub)
			}
		}
	}
	return filepath.Join("build", "e2e", sub)
}

// KeepLogs copies the world's logs (dir is World.Dir) to out/logs, beside
// the figures, for a post-mortem: the maillog, the daemon's, Dovecot's,
// rsyslogd's, fail2ban's and every load process's.
func KeepLogs(t testing.TB, dir, out string) {
	out = filepath.Join(out, "logs")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Log(err)
		return
	}
	for _, name := range []string{"maillog", "xdpguard.log", "dovecot.log", "rsyslogd.log", "fail2ban/fail2ban.log",
		"attack.log", "trawl.log", "probe.log", "office-idle.log", "webmail.log"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(out, strings.ReplaceAll(name, "/", "-")), b, 0o644); err != nil {
			t.Log(err)
		}
	}
}

// NewForTest builds the world for an end-to-end test: opts gives the
// population; the rest comes from the environment ($E2E_DIR keeps the work
// directory, maillog, configs and daemon logs, for a post-mortem;
// $E2E_XDPGUARD_CONFIG runs xdpguard on a config file instead of the
// defaults, to try a tuning, and the tables say so). The world is removed
// when the test ends, after its logs are copied to OutDir(outSub).
func NewForTest(t testing.TB, opts Options, outSub string) *World {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts.Dir = os.Getenv("E2E_DIR")
	opts.XdpguardConfig = os.Getenv("E2E_XDPGUARD_CONFIG")
	opts.Xdpguard, opts.Self, opts.Logf = TestBinary(t), self, t.Logf
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	// Runs before w.Close (cleanups run last-in first-out).
	t.Cleanup(func() { KeepLogs(t, w.Dir, OutDir(outSub)) })
	return w
}

// WriteResults writes a test's raw figures (results.json, every attempt
// included) and its table (table.txt) to OutDir(sub), for CI to keep.
// Failing to write them is logged, never a test failure.
func WriteResults(t testing.TB, sub string, results any, table string) {
	out := OutDir(sub)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Log(err)
		return
	}
	raw, err := json.MarshalIndent(results, "", " ")
	if err == nil {
		err = os.WriteFile(filepath.Join(out, "results.json"), raw, 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(out, "table.txt"), []byte(table), 0o644)
	}
	if err != nil {
		t.Log(err)
		return
	}
	abs, _ := filepath.Abs(out)
	t.Logf("raw figures in %s/results.json", abs)
}
