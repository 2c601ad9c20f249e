package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogtestExplain(t *testing.T) {
	line := "Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=198.18.200.7, lip=198.18.0.1, session=<hqgQR1lhdZHGEshm>"
	stdout, stderr, code := xdpguard(t, nil, "logtest", "--explain", line)
	if code != 0 || !strings.Contains(stdout, "event:   no-auth") || !strings.Contains(stdout, "address: 198.18.200.7") ||
		!strings.Contains(stdout, "counted: adds 1 to the score") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, _, code = xdpguard(t, nil, "logtest", "--json", "--explain", line)
	var x struct {
		Format, Event, IP string
		Counted           bool
	}
	if err := json.Unmarshal([]byte(stdout), &x); err != nil || code != 0 || x.Format != "bsd" || x.Event != "no-auth" || x.IP != "198.18.200.7" || !x.Counted {
		t.Fatalf("exit %d, %+v %v\n%s", code, x, err, stdout)
	}
	// Not counted, and why.
	stdout, _, _ = xdpguard(t, nil, "logtest", "--explain", "Nov 28 17:12:12 vm dovecot: imap-login: Disconnected (user disabled): user=<bob>, rip=198.18.200.8, lip=198.18.0.1")
	if !strings.Contains(stdout, "not counted: reason \"user disabled\" is recognised and not scored") {
		t.Fatalf("%s", stdout)
	}
	// --explain reads no file.
	_, stderr, code = xdpguard(t, nil, "logtest", "--explain", line, "/var/log/mail.log")
	if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") > 0 || !strings.Contains(stderr, "--explain") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestLogtestCountsUnparsedPerFile(t *testing.T) {
	dir := t.TempDir()
	good, odd := filepath.Join(dir, "mail.log"), filepath.Join(dir, "odd.log")
	os.WriteFile(good, []byte("Nov 28 17:12:12 vm dovecot: imap-login: Disconnected (no auth attempts): rip=198.18.200.9, lip=198.18.0.1\n"), 0o644)
	os.WriteFile(odd, []byte("[28/Nov/2026:17:12:12] imap-login: Disconnected (no auth attempts): rip=198.18.200.9\n"), 0o644)
	stdout, stderr, code := xdpguard(t, nil, "logtest", good, odd)
	if code != 0 || !strings.Contains(stdout, "warning: "+odd+": 1 of 1 lines are in no log format") || strings.Contains(stdout, "warning: "+good) {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
}
