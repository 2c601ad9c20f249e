package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

func (w *daemonWorld) stateDir() string { return filepath.Join(w.dir, "state") }

// why runs `why ip --json` until ok accepts the answer or 5 s pass (the
// evidence reaches the state file at the daemon's next save).
func (w *daemonWorld) why(t *testing.T, ip string, ok func(whyReport) bool) whyReport {
	t.Helper()
	var r whyReport
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		stdout, stderr, code := xdpguard(t, w.srv, "why", ip, "--json", "--pin-root", w.root, "--state-dir", w.stateDir())
		if code != 0 {
			t.Fatalf("why %s: exit %d: %s", ip, code, stderr)
		}
		r = whyReport{}
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("why --json: %v\n%s", err, stdout)
		}
		if ok(r) || time.Now().After(deadline) {
			return r
		}
	}
}

// daemonStatus is status --json's daemon part.
func (w *daemonWorld) daemonStatus(t *testing.T) *daemonJSON {
	t.Helper()
	stdout, stderr, code := xdpguard(t, w.srv, "status", "--json", "--pin-root", w.root, "--state-dir", w.stateDir())
	if code != 0 {
		t.Fatalf("status: %s", stderr)
	}
	var r statusReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Daemon == nil {
		t.Fatalf("status --json: %v\n%s", err, stdout)
	}
	return r.Daemon
}

// checkStatusAnswers: with the attacker banned by the log rule, status
// shows the daemon alive and reading, and why shows the ban's evidence.
func (w *daemonWorld) checkStatusAnswers(t *testing.T) {
	r := w.why(t, attacker, func(r whyReport) bool { return len(r.Bans) == 1 && r.Bans[0].Detector != "" })
	if len(r.Bans) != 1 {
		t.Fatalf("why %s: %+v", attacker, r)
	}
	b := r.Bans[0]
	if b.Origin != datapath.OriginLog || b.Reason != datapath.ReasonNoAuth || b.Detector != "dovecot-login" || b.Events != 3 ||
		b.Offence != 1 || b.First.IsZero() || b.Last.Before(b.First) || b.RemainingSeconds == nil {
		t.Errorf("why %s: ban %+v", attacker, b)
	}
	if r.Offender == nil || len(r.Offender.Bans) != 1 || r.Offender.Detector != "dovecot-login" {
		t.Errorf("why %s: offender %+v", attacker, r.Offender)
	}
	if len(r.Allow) != 0 || r.Score != nil {
		t.Errorf("why %s: allow %v score %v", attacker, r.Allow, r.Score)
	}
	// status --ip is the same question.
	stdout, stderr, code := xdpguard(t, w.srv, "status", "--ip", attacker, "--json", "--pin-root", w.root, "--state-dir", w.stateDir())
	var viaStatus whyReport
	if err := json.Unmarshal([]byte(stdout), &viaStatus); code != 0 || err != nil || len(viaStatus.Bans) != 1 ||
		viaStatus.Bans[0].Detector != b.Detector || viaStatus.Bans[0].Offence != b.Offence {
		t.Errorf("status --ip %s: exit %d, %v, %+v %s", attacker, code, err, viaStatus, stderr)
	}
	// The allowlisted source: an allow rule, no ban.
	if a := w.why(t, allowed, func(whyReport) bool { return true }); len(a.Allow) != 1 || len(a.Bans) != 0 {
		t.Errorf("why %s: %+v", allowed, a)
	}

	d := w.daemonStatus(t)
	if !d.Running || d.PID != w.cmd.Process.Pid || d.ConfigFile != w.cfgFile || len(d.Logs) != 1 ||
		d.Logs[0].Name != w.logFile || !d.Logs[0].Exists || d.Logs[0].Lines < 13 || d.Logs[0].Last.IsZero() {
		t.Errorf("status daemon: %+v (%+v)", d, d.Status)
	}

	// A monitoring user without capabilities reads the status file; the
	// directories on the way need search permission only.
	for _, dir := range []string{filepath.Dir(w.dir), w.dir, w.stateDir(), filepath.Dir(binary)} {
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		binary, "status", "--state-dir", w.stateDir(), "--pin-root", w.root)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "reading the daemon's status file instead") ||
		!strings.Contains(string(out), "Daemon: running, pid") || !strings.Contains(string(out), attacker+"/32") ||
		!strings.Contains(string(out), "dovecot-login") || !strings.Contains(string(out), "1 bans at the daemon's last save") {
		t.Errorf("status as nobody: %v\n%s", err, out)
	}
}

// checkNotRunning: status says the daemon is not running, and why.
func (w *daemonWorld) checkNotRunning(t *testing.T, why string) {
	t.Helper()
	d := w.daemonStatus(t)
	if d.Running || !strings.Contains(d.Why, why) {
		t.Errorf("status after the daemon stopped: running=%v, %q; want %q", d.Running, d.Why, why)
	}
	stdout, _, _ := xdpguard(t, w.srv, "status", "--pin-root", w.root, "--state-dir", w.stateDir())
	if !strings.Contains(stdout, "Daemon: NOT running: ") {
		t.Errorf("status text:\n%s", stdout)
	}
}
