//go:build crowdsec

package crowdsec_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// lapi is a private CrowdSec Local API: its own config directory, data
// directory and SQLite database under a temporary directory, listening in
// a test namespace, so it never touches the host's /etc/crowdsec and its
// port never collides with anyone's.
type lapi struct {
	t    *testing.T
	ns   *testutil.NS
	dir  string
	cfg  string
	port int
	cmd  *exec.Cmd
	out  *testutil.Buffer
}

func startLAPI(t *testing.T, ns *testutil.NS, port int) *lapi {
	t.Helper()
	if _, err := exec.LookPath("crowdsec"); err != nil {
		t.Fatal("crowdsec is not installed (make test-crowdsec installs it)")
	}
	l := &lapi{t: t, ns: ns, dir: t.TempDir(), port: port}
	for _, d := range []string{"cfg", "data", "hub"} {
		os.MkdirAll(filepath.Join(l.dir, d), 0o755)
	}
	// The default profile turns an alert's remediation into a decision;
	// alerts that carry their own decisions (ours, cscli's) keep those.
	profiles := "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n - type: ban\n   duration: 4h\non_success: break\n"
	os.WriteFile(filepath.Join(l.dir, "cfg", "profiles.yaml"), []byte(profiles), 0o644)
	os.WriteFile(filepath.Join(l.dir, "cfg", "simulation.yaml"), []byte("simulation: off\n"), 0o644)
	l.cfg = filepath.Join(l.dir, "cfg", "config.yaml")
	cfg := fmt.Sprintf(`common:
  daemonize: false
  log_media: stdout
  log_level: info
  working_dir: .
config_paths:
  config_dir: %[1]s/cfg/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/cfg/simulation.yaml
  hub_dir: %[1]s/hub/
  index_path: %[1]s/hub/.index.json
  notification_dir: %[1]s/cfg/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
db_config:
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 1000000
    max_age: 7d
api:
  client:
    credentials_path: %[1]s/cfg/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: 0.0.0.0:%[2]d
    profiles_path: %[1]s/cfg/profiles.yaml
    trusted_ips: ["127.0.0.1", "::1"]
prometheus:
  enabled: false
`, l.dir, port)
	if err := os.WriteFile(l.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start()
	t.Cleanup(l.kill)
	// cscli's own decisions add and import post alerts as a machine.
	l.cscli("machines", "add", "cscli", "-p", "cscli-password-1234", "-f", filepath.Join(l.dir, "cfg", "local_api_credentials.yaml"),
		"-u", fmt.Sprintf("http://127.0.0.1:%d", port), "--force")
	return l
}

// start runs the LAPI (crowdsec -no-cs: no log processing) and waits until
// it accepts connections; 1.4.6 takes about 2 s.
func (l *lapi) start() {
	l.t.Helper()
	if l.out == nil {
		l.out = &testutil.Buffer{}
	}
	l.cmd = exec.Command("nsenter", "--net="+l.ns.Path(), "crowdsec", "-c", l.cfg, "-no-cs")
	l.cmd.Stdout, l.cmd.Stderr = l.out, l.out
	if err := l.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var c net.Conn
		err := l.ns.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", l.port), time.Second)
			return err
		})
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("LAPI not up after 60 s:\n%s", l.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill stops the LAPI by its PID (nsenter execs crowdsec, so it is the
// same process).
func (l *lapi) kill() {
	if l.cmd == nil || l.cmd.Process == nil {
		return
	}
	l.cmd.Process.Signal(syscall.SIGKILL)
	l.cmd.Wait()
	l.cmd = nil
}

func (l *lapi) cscli(args ...string) string {
	l.t.Helper()
	out, err := l.cscliErr(args...)
	// CrowdSec 1.4 on SQLite answers "database is locked" when a write
	// meets another (a bouncer's pull updates its last_pull): cscli's
	// request failed and changed nothing, so it is safe to try again.
	for try := 0; err != nil && strings.Contains(out, "database is locked") && try < 10; try++ {
		time.Sleep(200 * time.Millisecond)
		out, err = l.cscliErr(args...)
	}
	if err != nil {
		l.t.Fatalf("cscli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (l *lapi) cscliErr(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + l.ns.Path(), "cscli", "-c", l.cfg}, args...)...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

// bouncerKey registers a bouncer and returns its API key.
func (l *lapi) bouncerKey(name string) string {
	l.t.Helper()
	cmd := exec.Command("nsenter", "--net="+l.ns.Path(), "cscli", "-c", l.cfg, "bouncers", "add", name, "-o", "raw")
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("cscli bouncers add: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func (l *lapi) machine(name, password string) {
	l.t.Helper()
	l.cscli("machines", "add", name, "-p", password, "-f", filepath.Join(l.dir, name+".yaml"), "--force")
}
