package logwatch

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const journaldBin = "/lib/systemd/systemd-journald"

// privateJournald is a real systemd-journald, run in a mount namespace of
// its own so that it touches nothing of the host's: /run is a fresh tmpfs
// there, and its sockets and journal files live in bind-mounted
// directories of the test. No systemd as PID 1 is needed.
type privateJournald struct {
	t    testing.TB
	dir  string // holds run/ (sockets) and log/ (journal files)
	cmd  *exec.Cmd
	sock *net.UnixConn
}

func startJournald(t testing.TB) *privateJournald {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a private journald")
	}
	if _, err := os.Stat(journaldBin); err != nil {
		t.Fatalf("%s: %v (make deps-test installs systemd)", journaldBin, err)
	}
	j := &privateJournald{t: t, dir: t.TempDir()}
	for _, d := range []string{"run", "log"} {
		if err := os.Mkdir(filepath.Join(j.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j.start()
	t.Cleanup(j.stop)
	return j
}

func (j *privateJournald) start() {
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
func (j *privateJournald) stop() {
	if j.cmd == nil {
		return
	}
	if j.sock != nil {
		j.sock.Close()
	}
	j.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { j.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		j.cmd.Process.Kill()
		<-done
	}
	j.cmd = nil
}

func (j *privateJournald) restart() {
	j.t.Helper()
	j.stop()
	j.start()
}

// send logs one message under ident through journald's native protocol,
// as systemd-cat and sd_journal_send do.
func (j *privateJournald) send(ident, msg string) {
	j.t.Helper()
	rec := fmt.Sprintf("SYSLOG_IDENTIFIER=%s\nSYSLOG_PID=4242\nMESSAGE=%s\n", ident, msg)
	if _, err := j.sock.Write([]byte(rec)); err != nil {
		j.t.Fatalf("send to journald: %v", err)
	}
}

// journalDir is what journalctl --directory reads.
func (j *privateJournald) journalDir() string { return filepath.Join(j.dir, "log") }
