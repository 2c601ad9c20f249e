// A real systemd-journald for tests, run privately: in a mount namespace
// of its own, so that it touches nothing of the host's. No systemd as PID 1
// is needed.

package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const journaldBin = "/lib/systemd/systemd-journald"

// Journald is a running private journald: /run is a fresh tmpfs in its
// namespace, and its sockets and journal files live in bind-mounted
// directories of the test.
type Journald struct {
	t    testing.TB
	dir  string // holds run/ (sockets) and log/ (journal files)
	cmd  *exec.Cmd
	sock *net.UnixConn
}

// StartJournald runs journald until the test ends; it skips the test
// unless it runs as root.
func StartJournald(t testing.TB) *Journald {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat(journaldBin); err != nil {
		t.Fatalf("%s: %v (make deps-test installs systemd)", journaldBin, err)
	}
	j := &Journald{t: t, dir: t.TempDir()}
	for _, d := range []string{"run", "log"} {
		if err := os.Mkdir(filepath.Join(j.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j.start()
	t.Cleanup(j.stop)
	return j
}

func (j *Journald) start() {
	j.t.Helper()
	os.Remove(filepath.Join(j.dir, "run", "socket"))
	script := `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
mount --bind "$1/run" /run/systemd/journal
mount --bind "$1/log" /run/log/journal
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec ` + journaldBin
	j.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", j.dir)
	var out strings.Builder
	j.cmd.Stdout, j.cmd.Stderr = &out, &out
	if err := j.cmd.Start(); err != nil {
		j.t.Fatal(err)
	}
	sock := filepath.Join(j.dir, "run", "socket")
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err == nil {
			j.sock = c
			break
		}
		if time.Now().After(deadline) {
			j.cmd.Process.Kill()
			j.t.Fatalf("journald did not open %s in 30s: %v\n%s", sock, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends journald cleanly (SIGTERM: it syncs and closes its files).
func (j *Journald) stop() {
	if j.cmd == nil {
		return
	}
	if j.sock != nil {
		j.sock.Close()
	}
	Stop(j.cmd, 30*time.Second)
	j.cmd = nil
}

// Restart stops journald cleanly and starts it again on the same files.
func (j *Journald) Restart() {
	j.t.Helper()
	j.stop()
	j.start()
}

// Send logs one message under ident through journald's native protocol,
// as systemd-cat and sd_journal_send do.
func (j *Journald) Send(ident, msg string) {
	j.t.Helper()
	rec := fmt.Sprintf("SYSLOG_IDENTIFIER=%s\nSYSLOG_PID=4242\nMESSAGE=%s\n", ident, msg)
	if _, err := j.sock.Write([]byte(rec)); err != nil {
		j.t.Fatalf("send to journald: %v", err)
	}
}

// Dir is what journalctl --directory reads.
func (j *Journald) Dir() string { return filepath.Join(j.dir, "log") }
