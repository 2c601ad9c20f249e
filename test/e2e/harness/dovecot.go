package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/xdpguard/xdpguard/dist"
)

// MailUID runs the users' mail processes: nobody, so that the harness adds
// no system user to the host.
const MailUID = 65534

// CheckDovecot says what is missing to run the real Dovecot.
func CheckDovecot() error {
	return installed("dovecot-imapd dovecot-pop3d rsyslog openssl util-linux iproute2",
		"dovecot", "rsyslogd", "openssl", "nsenter", "unshare", "ip")
}

// installed says which of bins is not on $PATH, and that the Debian
// packages pkgs install them.
func installed(pkgs string, bins ...string) error {
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not installed (apt-get install %s): %w", bin, pkgs, err)
		}
	}
	return nil
}

var rsyslogConf = template.Must(template.New("").Parse(`# xdpguard e2e: a private rsyslogd. It reads only its own socket, never
# /dev/log, and writes only the test's maillog.
global(workDirectory="{{.Dir}}/rsyslog")
module(load="imuxsock" SysSock.Use="off")
# Dovecot under attack logs thousands of lines a second; rsyslog's default
# rate limit would silently drop the very lines under test.
input(type="imuxsock" Socket="{{.Dir}}/log.sock" RateLimit.Interval="0")
mail.* action(type="omfile" file="{{.Maillog}}" template="RSYSLOG_FileFormat")
`))

func (w *World) startSyslog() error {
	if err := os.MkdirAll(filepath.Join(w.Dir, "rsyslog"), 0o755); err != nil {
		return err
	}
	conf := filepath.Join(w.Dir, "rsyslog.conf")
	if err := writeTemplate(conf, rsyslogConf, w); err != nil {
		return err
	}
	// Create the maillog first: followers must find it, and Dovecot's
	// unprivileged processes never write it (rsyslogd does).
	if err := os.WriteFile(w.Maillog, nil, 0o644); err != nil {
		return err
	}
	cmd := exec.Command("rsyslogd", "-n", "-f", conf, "-i", filepath.Join(w.Dir, "rsyslogd.pid"))
	p, err := w.start("rsyslogd", cmd)
	if err != nil {
		return err
	}
	sock := filepath.Join(w.Dir, "log.sock")
	return waitFor(10*time.Second, "rsyslogd's socket", func() bool {
		select {
		case <-p.Done():
			return true
		default:
		}
		_, err := os.Stat(sock)
		return err == nil
	})
}

var dovecotConf = template.Must(template.New("").Parse(`# xdpguard e2e: a private Dovecot instance. Login limits are the stock
# ones (process_limit 100 per login service): the attack must face what a
# real server has.
# No instance_name: it would replace "dovecot" as the syslog ident, and
# real hosts log as dovecot.
base_dir = {{.Dir}}/dovecot/run
state_dir = {{.Dir}}/dovecot/state
protocols = imap pop3
listen = *, ::
log_path = syslog
syslog_facility = mail

ssl = yes
ssl_cert = <{{.Dir}}/cert.pem
ssl_key = <{{.Dir}}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem

auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {{.Dir}}/passwd
}
userdb {
  driver = static
  args = uid={{.UID}} gid={{.UID}} home={{.Dir}}/mail/%u
}
first_valid_uid = {{.UID}}
first_valid_gid = {{.UID}}
mail_location = maildir:~/Maildir

service imap-login {
{{- if .TLSProxies}}
  # Stock 100 login processes, plus one per TLS session the office keeps
  # open: after login, a TLS session keeps its login process as a proxy
  # and counts against process_limit, as Dovecot's documentation says.
  process_limit = {{.IMAPLoginLimit}}
{{- end}}
}

# The shipped priority listeners (dist/dovecot-priority.conf), as the README
# tells operators to install them; its service sections merge with the one
# above.
{{.PriorityConf}}
`))

// startDovecot writes the certificate, users and configuration, and starts
// Dovecot in the server namespace. Dovecot logs through syslog(3), which
// always writes to /dev/log; it runs in a private mount namespace whose
// /dev has that socket pointing at the harness's rsyslogd, so the host's
// /dev/log (if any) is neither used nor touched.
func (w *World) startDovecot() error {
	d := filepath.Join(w.Dir, "dovecot")
	for _, sub := range []string{"run", "state", "hostdev", "dev"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return err
		}
	}
	mail := filepath.Join(w.Dir, "mail")
	if err := os.MkdirAll(mail, 0o755); err != nil {
		return err
	}
	if err := os.Chown(mail, MailUID, MailUID); err != nil {
		return err
	}
	if _, err := run(nil, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-nodes", "-days", "2", "-subj", "/CN="+ServerName,
		"-addext", "subjectAltName=DNS:"+ServerName+",IP:"+ServerV4.String()+",IP:"+ServerV6.String(),
		"-keyout", filepath.Join(w.Dir, "key.pem"), "-out", filepath.Join(w.Dir, "cert.pem")); err != nil {
		return fmt.Errorf("generate the TLS certificate: %w", err)
	}
	w.CAFile = filepath.Join(w.Dir, "cert.pem")
	var pw bytes.Buffer
	for _, u := range w.AllUsers() {
		fmt.Fprintf(&pw, "%s:{PLAIN}%s::::::\n", u.Name, u.Pass)
	}
	if err := os.WriteFile(filepath.Join(w.Dir, "passwd"), pw.Bytes(), 0o644); err != nil {
		return err
	}
	conf := filepath.Join(d, "dovecot.conf")
	if err := writeTemplate(conf, dovecotConf, struct {
		Dir                        string
		Tag, UID                   int
		TLSProxies, IMAPLoginLimit int
		PriorityConf               string
	}{w.Dir, os.Getpid(), MailUID, w.opts.TLSProxies, stockLoginLimit + w.opts.TLSProxies, dist.DovecotPriority}); err != nil {
		return err
	}
	script := `set -e
D=$1; SOCK=$2; CONF=$3
mount --bind /dev "$D/hostdev"
mount -t tmpfs -o mode=755,size=1m e2edev /dev
for n in null zero full random urandom tty; do
	[ -e "$D/hostdev/$n" ] || continue
	touch /dev/$n
	mount --bind "$D/hostdev/$n" /dev/$n
done
umount -l "$D/hostdev"
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
ln -s "$SOCK" /dev/log
# Issue 11's population (trawlers, an office holding IDLE connections, a
# webmail front end) makes hundreds of processes and connections at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec dovecot -F -c "$CONF"
`
	cmd := exec.Command("nsenter", "--net="+w.Server.Path(), "--",
		"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", script, "dovecot-wrapper", d, filepath.Join(w.Dir, "log.sock"), conf)
	p, err := w.start("dovecot", cmd)
	if err != nil {
		return err
	}
	err = w.waitStarted(p, 20*time.Second, "Dovecot to start", func() bool {
		return w.MaillogContains("starting up for imap, pop3")
	}, "dovecot exited at start-up", "dovecot.log")
	if err != nil {
		return err
	}
	w.opts.Logf("dovecot %s running in %s (pid %d), logging via rsyslogd to %s", dovecotVersion(), w.Server.Name, p.Cmd.Process.Pid, w.Maillog)
	return nil
}

// stockLoginLimit is Dovecot's default_process_limit: the login processes
// of each login service, and so its login slots.
const stockLoginLimit = 100

// ServerName is the name in the generated certificate.
const ServerName = "mail.e2e.test"

func dovecotVersion() string {
	out, err := exec.Command("dovecot", "--version").Output()
	if err != nil {
		return "(unknown version)"
	}
	return strings.TrimSpace(string(out))
}

// MaillogContains reports whether any maillog line contains s.
func (w *World) MaillogContains(s string) bool {
	f, err := os.Open(w.Maillog)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}

func writeTemplate(path string, t *template.Template, data any) error {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
