package harness

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// CheckFail2ban says what is missing to run the fail2ban comparison.
func CheckFail2ban() error {
	if err := installed("fail2ban python3-pyinotify iptables", "fail2ban-server", "fail2ban-client", "iptables", "ip6tables"); err != nil {
		return err
	}
	if _, err := exec.Command("/usr/bin/python3", "-c", "import pyinotify").CombinedOutput(); err != nil {
		return fmt.Errorf("python3-pyinotify is not installed; fail2ban would poll the log instead: %w", err)
	}
	return nil
}

var f2bJail = template.Must(template.New("").Parse(`# xdpguard e2e: fail2ban as Debian ships it, with the dovecot jail in
# aggressive mode (which counts the "no auth attempts" disconnects of the
# attack), banning through iptables inside the server namespace.
[DEFAULT]
backend = pyinotify
banaction = iptables-multiport
banaction_allports = iptables-allports

[dovecot]
enabled = true
filter = dovecot[mode=aggressive]
port = pop3,pop3s,imap,imaps
logpath = {{.Maillog}} tail
`))

var f2bLocal = template.Must(template.New("").Parse(`[Definition]
logtarget = {{.Dir}}/fail2ban/fail2ban.log
socket = {{.Dir}}/fail2ban/fail2ban.sock
pidfile = {{.Dir}}/fail2ban/fail2ban.pid
dbfile = :memory:
`))

// Fail2ban is a running fail2ban-server in the server namespace.
type Fail2ban struct {
	w    *World
	p    *Proc
	conf string
}

// StartFail2ban runs fail2ban-server with a copy of Debian's configuration
// (the distribution's jail.d, which enables sshd, left out) in the server
// namespace, so its iptables rules exist only there. It reads the maillog
// from its end ("tail"), and keeps its bans in memory: each start begins
// with no bans and no head start.
func (w *World) StartFail2ban() (*Fail2ban, error) {
	dir := filepath.Join(w.Dir, "fail2ban")
	conf := filepath.Join(dir, "etc")
	if err := os.RemoveAll(conf); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := run(nil, "cp", "-a", "/etc/fail2ban", conf); err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(conf, "jail.d"))
	if err := os.Mkdir(filepath.Join(conf, "jail.d"), 0o755); err != nil {
		return nil, err
	}
	if err := writeTemplate(filepath.Join(conf, "jail.local"), f2bJail, w); err != nil {
		return nil, err
	}
	if err := writeTemplate(filepath.Join(conf, "fail2ban.local"), f2bLocal, w); err != nil {
		return nil, err
	}
	f := &Fail2ban{w: w, conf: conf}
	// Whatever the server left behind, the namespace's tables go with it;
	// flushing here only makes the next phase start clean.
	w.addCleanup(f.flush)
	p, err := w.start("fail2ban", inNS(w.Server, "fail2ban-server", "-f", "-x", "-c", conf,
		"-s", filepath.Join(dir, "fail2ban.sock"), "-p", filepath.Join(dir, "fail2ban.pid")))
	if err != nil {
		return nil, err
	}
	f.p = p
	err = w.waitStarted(p, 30*time.Second, "fail2ban's dovecot jail", func() bool {
		out, err := f.client("status", "dovecot")
		return err == nil && strings.Contains(out, "Currently banned")
	}, "fail2ban-server exited", filepath.Join("fail2ban", "fail2ban.log"))
	if err != nil {
		return nil, err
	}
	w.opts.Logf("fail2ban-server running in %s (pid %d), jail dovecot[mode=aggressive]", w.Server.Name, p.Cmd.Process.Pid)
	return f, nil
}

func (f *Fail2ban) client(args ...string) (string, error) {
	dir := filepath.Dir(f.conf)
	out, err := run(f.w.Server, "fail2ban-client", append([]string{"-c", f.conf, "-s", filepath.Join(dir, "fail2ban.sock")}, args...)...)
	return string(out), err
}

// Banned lists the addresses the dovecot jail has banned.
func (f *Fail2ban) Banned() ([]string, error) {
	out, err := f.client("get", "dovecot", "banip")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// Stop stops the server (its actions remove their chains) and flushes
// what might remain, so the next phase starts unfirewalled.
func (f *Fail2ban) Stop() error {
	err := f.w.Stop(f.p, 20*time.Second)
	f.flush()
	return err
}

func (f *Fail2ban) flush() {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		run(f.w.Server, ipt, "-w", "-F")
		run(f.w.Server, ipt, "-w", "-X")
	}
}

// BanTimes reads when the dovecot jail banned each address it has banned,
// from fail2ban's own log ("... NOTICE  [dovecot] Ban 198.18.1.1", in
// local time). An address banned but not (yet) in the log maps to the
// zero time.
func (f *Fail2ban) BanTimes() (map[netip.Addr]time.Time, error) {
	ips, err := f.Banned()
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]time.Time{}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			out[a] = time.Time{}
		}
	}
	log, _ := os.ReadFile(filepath.Join(f.w.Dir, "fail2ban", "fail2ban.log"))
	for _, line := range strings.Split(string(log), "\n") {
		i := strings.Index(line, "[dovecot] Ban ")
		if i < 0 || len(line) < 23 {
			continue
		}
		a, err := netip.ParseAddr(strings.TrimSpace(line[i+len("[dovecot] Ban "):]))
		if err != nil {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05,000", line[:23], time.Local)
		if old, ok := out[a]; err == nil && ok && old.IsZero() {
			out[a] = at
		}
	}
	return out, nil
}
