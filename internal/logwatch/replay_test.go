package logwatch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplayJSON(t *testing.T) {
	var out bytes.Buffer
	files := []string{"testdata/dovecot-2.3.19-real.log", "testdata/dovecot-2.3.19-real.logpath.log"}
	sum, err := Replay(DefaultConfig(), files, &out, ReplayOptions{JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %s", sc.Bytes())
		}
		lines = append(lines, m)
	}
	if len(lines) < 100 {
		t.Fatalf("%d objects", len(lines))
	}
	for _, m := range lines[:len(lines)-1] {
		for _, k := range []string{"file", "line", "rule", "event", "ip"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("line object without %q: %v", k, m)
			}
		}
	}
	first := lines[0]
	if first["file"] != files[0] || first["line"] != 1.0 || first["rule"] != "dovecot-login" || first["event"] != "login" || first["ip"] != "198.18.200.1" {
		t.Fatalf("first object %v", first)
	}
	s, ok := lines[len(lines)-1]["summary"].(map[string]any)
	if !ok {
		t.Fatalf("last object is not a summary: %v", lines[len(lines)-1])
	}
	for _, k := range []string{"lines", "matched", "missed", "unparsed", "per_file", "pressure", "lines_per_sec", "rules", "would_ban", "below_threshold"} {
		if _, ok := s[k]; !ok {
			t.Fatalf("summary without %q", k)
		}
	}
	if sum.Lines != 121+66 || sum.Matched+sum.Missed+sum.Pressure != sum.Lines {
		t.Fatalf("lines %d matched %d missed %d pressure %d", sum.Lines, sum.Matched, sum.Missed, sum.Pressure)
	}
	// Both files are in forms logwatch knows, and each holds Dovecot's
	// process_limit warnings (the corpus was recorded under the attack).
	if sum.Unparsed != 0 || len(sum.PerFile) != 2 || sum.PerFile[0].Lines != 121 || sum.PerFile[1].Lines != 66 {
		t.Fatalf("per file %+v, unparsed %d", sum.PerFile, sum.Unparsed)
	}
	if sum.Pressure == 0 {
		t.Fatal("no process_limit warning recognised")
	}
	// The corpus has three floods of 12 idle connections from one
	// address (198.18.200.121-124 in the syslog file, .170 in log_path).
	banned := map[string]bool{}
	for _, b := range sum.WouldBan {
		banned[b.IP] = true
	}
	for _, want := range []string{"198.18.200.121/32", "198.18.200.122/32", "198.18.200.123/32", "198.18.200.124/32", "198.18.200.170/32"} {
		if !banned[want] {
			t.Errorf("%s not banned; bans: %+v", want, sum.WouldBan)
		}
	}
	if len(sum.WouldBan) != 5 {
		t.Errorf("%d bans, want the 5 floods: %+v", len(sum.WouldBan), sum.WouldBan)
	}
}

func TestReplayText(t *testing.T) {
	var out bytes.Buffer
	if _, err := Replay(DefaultConfig(), []string{"testdata/dovecot-2.3.19-real.iso.log"}, &out, ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lines/s", "dovecot-login  no-auth", "Would ban 4 sources", "198.18.200.121/32"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReplayErrors(t *testing.T) {
	var out bytes.Buffer
	_, err := Replay(DefaultConfig(), []string{"testdata/dovecot-2.3.19-real.log", "testdata/nonexistent.log"}, &out, ReplayOptions{})
	if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), "nonexistent.log") {
		t.Fatalf("missing file: %v", err)
	}
	if out.Len() != 0 {
		t.Fatal("reported something before failing")
	}
	if _, err := Replay(DefaultConfig(), []string{"testdata"}, &out, ReplayOptions{}); !errors.Is(err, ErrUnreadable) {
		t.Fatalf("directory: %v", err)
	}
	// A line over the cap is counted and skipped, the next one still read.
	dir := t.TempDir()
	p := filepath.Join(dir, "long.log")
	long := "Nov 28 17:12:12 vm dovecot: pop3-login: Disconnected (no auth attempts): user=<" + strings.Repeat("x", 70000) + ">, rip=198.18.1.1, lip=198.18.0.1\n"
	ok := "Nov 28 17:12:13 vm dovecot: pop3-login: Disconnected (no auth attempts): user=<>, rip=198.18.1.2, lip=198.18.0.1\n"
	if err := os.WriteFile(p, []byte(long+ok+"\x00\xff\xfe garbage\n"+ok), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := Replay(DefaultConfig(), []string{p}, &out, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Capped != 1 || sum.Matched != 2 || sum.Lines != 4 {
		t.Fatalf("capped %d matched %d lines %d", sum.Capped, sum.Matched, sum.Lines)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`
threshold: 5
window: 5m
ipv6_mask: 56
allowlist: [192.0.2.0/24, "2001:db8::/32"]
weights: {auth-failed: 3}
rules:
  - name: sshd
    regexp: 'Failed password for \S+ from (?P<ip>\S+)'
    kind: auth-failed
    weight: 2
`), 0o644)
	cfg, err := LoadConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Threshold != 5 || cfg.Window.Minutes() != 5 || cfg.IPv6Mask != 56 || len(cfg.Allowlist) != 2 ||
		cfg.Weights["auth-failed"] != 3 || cfg.Weights["no-auth"] != 1 || len(cfg.Rules) != 1 || cfg.IPv4Mask != 32 {
		t.Fatalf("%+v", cfg)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("threshhold: 5\n"), 0o644)
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), "threshhold") {
		t.Fatalf("typo'd key: %v", err)
	}
	os.WriteFile(bad, []byte("rules: [{name: r, regexp: '(?P<ip>', kind: no-auth}]\n"), 0o644)
	if _, err := LoadConfig(bad); err == nil || !strings.Contains(err.Error(), `rules[0] "r": regexp`) {
		t.Fatalf("bad regexp: %v", err)
	}
}
