package daemon

import (
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/config"
)

func TestLogSourceWarnings(t *testing.T) {
	files := []string{"/var/log/maillog", "/var/log/mail.log"}
	none := func(string) bool { return false }
	one := func(f string) bool { return f == "/var/log/mail.log" }
	cases := []struct {
		name     string
		logs     config.Logs
		journald bool
		exists   func(string) bool
		want     []string // substrings, one per warning
	}{
		// The stock Debian 12 host of issue 12: no rsyslog, journald.
		{"debian 12, no mail file", config.Logs{Files: files}, true, none, []string{"set logs.journal.enabled: true (or run --journal)"}},
		{"no file, no journald", config.Logs{Files: files}, false, none, []string{"no log file exists yet (/var/log/maillog, /var/log/mail.log)"}},
		{"one file exists", config.Logs{Files: files}, true, one, nil},
		{"journal on", config.Logs{Files: files, Journal: config.Journal{Enabled: true}}, true, none, []string{"no log file exists yet"}},
		{"journal on, no journald", config.Logs{Journal: config.Journal{Enabled: true}}, false, none, []string{"journald does not seem to run"}},
		{"nothing to read", config.Logs{}, true, none, []string{"no log input"}},
	}
	for _, c := range cases {
		got := logSourceWarnings(c.logs, c.journald, c.exists)
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %d warnings", c.name, got, len(c.want))
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: %q lacks %q", c.name, got[i], w)
			}
		}
	}
}
