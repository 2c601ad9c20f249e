package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// daemonWorld is a mail server namespace running `xdpguard run` on its veth
// end, a client namespace with attacker and user addresses, and the log
// file the daemon follows.
type daemonWorld struct {
	t        *testing.T
	srv, cli *testutil.NS
	dir      string
	root     string
	logFile  string
	cfgFile  string
	metrics  string
	cmd      *exec.Cmd
	out      *testutil.Buffer

	kernel, kernelBan string // kernel.syn_rate and kernel.ban_duration
	slots             string // slot_holders
	logs              string // the logs section; default: the log file
}

const (
	attacker  = "198.18.60.3"
	attacker2 = "198.18.60.7"
	shortBan  = "198.18.60.9"
	allowed   = "198.18.60.5"
	holder    = "198.18.60.11"
	holder2   = "198.18.60.12"
	phone     = "198.18.60.13"
	tbird     = "198.18.60.14"
	server    = "198.18.60.1"
)

func newDaemonWorld(t *testing.T) *daemonWorld {
	w := &daemonWorld{t: t, srv: testutil.New(t, "dsrv"), cli: testutil.New(t, "dcli"), dir: t.TempDir()}
	w.root = pinRoot(t)
	var cliAddrs []netip.Prefix
	for _, a := range []string{"198.18.60.2", attacker, allowed, attacker2, shortBan, holder, holder2, phone, tbird} {
		cliAddrs = append(cliAddrs, netip.MustParsePrefix(a+"/24"))
	}
	testutil.Veth(t, w.srv, "xg-dsrv", []netip.Prefix{netip.MustParsePrefix(server + "/24")}, w.cli, "xg-dcli", cliAddrs)

	var ln net.Listener
	if err := w.srv.Do(func() (err error) { ln, err = net.Listen("tcp4", server+":110"); return err }); err != nil {
		t.Fatal(err)
	}
	// Every connection stays open, like a login process waiting for
	// USER/PASS, until the test ends.
	testutil.Serve(t, ln, func(c net.Conn) { c.Write([]byte("+OK ready\r\n")) })

	w.logFile = filepath.Join(w.dir, "maillog")
	os.WriteFile(w.logFile, nil, 0o644)
	w.metrics = "127.0.0.1:9931"
	w.cfgFile = filepath.Join(w.dir, "xdpguard.yaml")
	w.kernel = "{threshold: 1000, window: 10s}"
	w.kernelBan = "10m"
	w.slots = "{idle: 2s}"
	w.writeConfig(3)
	t.Cleanup(func() {
		w.stop(syscall.SIGKILL)
		xdpguard(t, w.srv, "detach", "--pin-root", w.root)
	})
	return w
}

func (w *daemonWorld) writeConfig(threshold int) {
	cfg := fmt.Sprintf(`interfaces: [xg-dsrv]
xdp_mode: native
kernel:
  syn_rate: %s
  ban_duration: %s
logs: %s
allow: [%s]
pin_root: %s
state_dir: %s
metrics:
  listen: %s
slot_holders: %s
detect:
  threshold: %d
`, w.kernel, w.kernelBan, cmp.Or(w.logs, "{files: ["+w.logFile+"]}"), allowed, w.root, filepath.Join(w.dir, "state"), w.metrics, w.slots, threshold)
	if err := os.WriteFile(w.cfgFile, []byte(cfg), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w *daemonWorld) start() {
	w.t.Helper()
	w.out = &testutil.Buffer{}
	w.cmd = exec.Command("nsenter", "--net="+w.srv.Path(), binary, "run", "--config", w.cfgFile)
	w.cmd.Env = append(os.Environ(), w.env()...)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.waitLog("msg=running")
}

// env points the commands at this world's state directory: TestMain's
// XDPGUARD_STATE_DIR would override the file's state_dir, and daemons of
// different tests would share one state file.
func (w *daemonWorld) env() []string {
	return []string{"XDPGUARD_STATE_DIR=" + filepath.Join(w.dir, "state")}
}

func (w *daemonWorld) stop(sig syscall.Signal) {
	if w.cmd == nil || w.cmd.Process == nil {
		return
	}
	w.cmd.Process.Signal(sig)
	w.cmd.Wait()
	w.cmd = nil
}

func (w *daemonWorld) waitLog(substr string) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(w.out.String(), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	w.t.Fatalf("daemon never logged %q:\n%s", substr, w.out.String())
}

func (w *daemonWorld) noAuth(ip string, n int) {
	f, err := os.OpenFile(w.logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	for i := range n {
		fmt.Fprintf(f, "%s mx dovecot: pop3-login: Disconnected: Inactivity (no auth attempts in 180 secs): user=<>, rip=%s, lip=%s, session=<s%d>\n",
			time.Now().Format(time.Stamp), ip, server, i)
	}
}

func (w *daemonWorld) banned() map[string]banJSON {
	st := status(w.t, w.srv, w.root)
	out := map[string]banJSON{}
	for _, b := range st.Bans {
		out[b.Prefix.Addr().String()] = b
	}
	return out
}

// waitBanned polls until ip's ban state is want.
func (w *daemonWorld) waitBanned(ip string, want bool) {
	w.t.Helper()
	w.waitBan(ip, want, 5*time.Second)
}

// waitBannedWithin waits up to d for ip to be banned.
func (w *daemonWorld) waitBannedWithin(ip string, d time.Duration) {
	w.t.Helper()
	w.waitBan(ip, true, d)
}

// logged reports whether one line of the daemon's log holds every part.
func (w *daemonWorld) logged(parts ...string) bool {
	for _, line := range strings.Split(w.out.String(), "\n") {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

func (w *daemonWorld) waitBan(ip string, want bool, d time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, ok := w.banned()[ip]; ok == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.t.Fatalf("%s banned=%v never happened; bans %v\ndaemon log:\n%s", ip, want, w.banned(), w.out.String())
}

func (w *daemonWorld) scrape(t *testing.T) string {
	var body string
	// net/http dials from another goroutine, outside the namespace: speak
	// HTTP/1.0 over a connection made inside it.
	err := w.srv.Do(func() error {
		c, err := net.Dial("tcp", w.metrics)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (w *daemonWorld) dial(src string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := w.cli.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
		c, err = d.Dial("tcp", server+":110")
		return err
	})
	return c, err
}

func TestDaemon(t *testing.T) {
	w := newDaemonWorld(t)
	w.start()

	// An attacker holds a login slot; then its no-auth lines arrive.
	held, err := w.dial(attacker, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	bufio.NewReader(held).ReadString('\n')
	w.noAuth(allowed, 10)
	w.noAuth(attacker, 3)
	w.waitBanned(attacker, true)
	if b := w.banned()[attacker]; b.Origin.String() != "log" || b.Reason.String() != "no-auth" {
		t.Errorf("ban = %+v", b)
	}

	t.Run("held connection destroyed", func(t *testing.T) {
		held.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := held.Read(make([]byte, 1))
		if err == nil || os.IsTimeout(err) {
			t.Fatalf("the banned source's held connection is still open: %v", err)
		}
	})
	t.Run("banned source's SYNs dropped", func(t *testing.T) {
		if c, err := w.dial(attacker, 500*time.Millisecond); err == nil {
			c.Close()
			t.Fatal("banned source connected")
		}
	})
	t.Run("allowlisted source never banned", func(t *testing.T) {
		if _, ok := w.banned()[allowed]; ok {
			t.Fatal("allowlisted source banned")
		}
		c, err := w.dial(allowed, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("metrics", func(t *testing.T) {
		wants := []string{`xdpguard_bans_issued_total{origin="log"} 1`, `xdpguard_active_bans{origin="log"} 1`,
			`xdpguard_packets_total{verdict="drop_ban"}`, `xdpguard_decision_latency_seconds_count 1`,
			`xdpguard_log_matches_total{event="no-auth",rule="dovecot-login"} 13`, `xdpguard_connections_destroyed_total 1`}
		var body string
		// Log counters are published on the daemon's once-a-second tick.
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			body = w.scrape(t)
			missing := 0
			for _, want := range wants {
				if !strings.Contains(body, want) {
					missing++
				}
			}
			if missing == 0 {
				return
			}
		}
		for _, want := range wants {
			if !strings.Contains(body, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})
	t.Run("status and why answer", w.checkStatusAnswers)

	t.Run("silent slot holders banned before any log line", func(t *testing.T) {
		var conns []net.Conn
		for range 3 {
			c, err := w.dial(holder, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns = append(conns, c)
		}
		w.waitBanned(holder, true)
		if b := w.banned()[holder]; b.Origin.String() != "log" || b.Reason.String() != "no-auth" {
			t.Errorf("ban = %+v", b)
		}
		r := w.why(t, holder, func(r whyReport) bool { return len(r.Bans) == 1 && r.Bans[0].Detector != "" })
		if b := r.Bans[0]; b.Detector != "slot-holders" || b.Events < 2 || b.Offence != 1 {
			t.Errorf("why %s: %+v", holder, b)
		}
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			for {
				if _, err := c.Read(make([]byte, 64)); err != nil {
					if os.IsTimeout(err) {
						t.Fatal("a held connection of the banned holder is still open")
					}
					break
				}
			}
		}
	})
	t.Run("SIGHUP applies a changed threshold", func(t *testing.T) {
		w.writeConfig(5)
		w.cmd.Process.Signal(syscall.SIGHUP)
		w.waitLog("configuration reloaded")
		w.noAuth(attacker2, 3)
		time.Sleep(500 * time.Millisecond)
		if _, ok := w.banned()[attacker2]; ok {
			t.Fatal("banned at 3 events after the threshold went to 5")
		}
		w.noAuth(attacker2, 2)
		w.waitBanned(attacker2, true)
	})
	t.Run("invalid reload keeps the running configuration", func(t *testing.T) {
		os.WriteFile(w.cfgFile, []byte("kernel:\n  ports: [0]\n"), 0o644)
		w.cmd.Process.Signal(syscall.SIGHUP)
		w.waitLog("reload failed")
		w.writeConfig(5)
	})

	if _, stderr, code := xdpguard(t, w.srv, "ban", shortBan, "--for", "2s", "--pin-root", w.root,
		"--state-dir", filepath.Join(w.dir, "state")); code != 0 {
		t.Fatal(stderr)
	}
	if r := w.why(t, shortBan, func(whyReport) bool { return true }); len(r.Bans) != 1 || r.Bans[0].Origin.String() != "manual" ||
		r.Bans[0].Detector != "manual" || r.Bans[0].Events != 1 {
		t.Errorf("why %s after a manual ban: %+v", shortBan, r.Bans)
	}
	t.Run("kill -9 and restart keeps every ban; expiry still works", func(t *testing.T) {
		w.stop(syscall.SIGKILL)
		if c, err := w.dial(attacker, 500*time.Millisecond); err == nil {
			c.Close()
			t.Fatal("with the daemon dead, the banned source connected")
		}
		w.checkNotRunning(t, "is gone")
		w.start()
		bans := w.banned()
		for _, ip := range []string{attacker, attacker2} {
			if _, ok := bans[ip]; !ok {
				t.Errorf("%s lost across kill -9: %v", ip, bans)
			}
		}
		w.waitBanned(shortBan, false) // the 2 s ban ends on time
		c, err := w.dial(shortBan, 2*time.Second)
		if err != nil {
			t.Fatalf("expired ban still drops: %v", err)
		}
		c.Close()
	})
	t.Run("restart after the pins are gone restores from the state file", func(t *testing.T) {
		w.stop(syscall.SIGTERM)
		os.RemoveAll(w.root) // what a reboot does to bpffs
		w.start()
		w.waitLog("restored bans from the state file")
		bans := w.banned()
		if b, ok := bans[attacker]; !ok || b.Origin.String() != "log" || b.Reason.String() != "no-auth" {
			t.Fatalf("ban on %s not restored as it was: %+v", attacker, bans)
		}
		if c, err := w.dial(attacker, 500*time.Millisecond); err == nil {
			c.Close()
			t.Fatal("restored ban does not drop")
		}
	})
	t.Run("a corrupt state file is survived", func(t *testing.T) {
		w.stop(syscall.SIGTERM)
		stateFile := filepath.Join(w.dir, "state", state.FileName)
		os.WriteFile(stateFile, []byte(`{"version":1,"bans":[{"prefix":"nonsense`), 0o600)
		w.start()
		w.waitLog("state file unusable")
		aside, _ := filepath.Glob(stateFile + ".corrupt-*")
		if len(aside) != 1 {
			t.Fatalf("corrupt file not set aside: %v", aside)
		}
		// The kernel still has the bans; the next compaction rewrites
		// the journal from it.
		w.noAuth(attacker2, 1)
		time.Sleep(1500 * time.Millisecond)
		st, err := state.Store{Dir: filepath.Dir(stateFile)}.Read()
		if err != nil || !slices.ContainsFunc(st.Bans, func(b datapath.Ban) bool { return b.Prefix.Addr().String() == attacker }) {
			t.Fatalf("state not rewritten from the kernel: %+v, %v", st.Bans, err)
		}
	})
	t.Run("SIGTERM leaves protection in force", func(t *testing.T) {
		w.stop(syscall.SIGTERM)
		w.checkNotRunning(t, "stopped at")
		if c, err := w.dial(attacker, 500*time.Millisecond); err == nil {
			c.Close()
			t.Fatal("protection gone after SIGTERM")
		}
	})
}

// A source the kernel bans twice gets a longer second ban: kernel bans feed
// the same offender history as log bans.
func TestDaemonEscalatesKernelBans(t *testing.T) {
	w := newDaemonWorld(t)
	w.kernel = "{threshold: 3, window: 1h}"
	w.kernelBan = "2s"
	w.writeConfig(3)
	w.start()
	burst := func() {
		for i := range 4 {
			c, err := w.dial(attacker2, 300*time.Millisecond)
			if err != nil {
				if i < 3 {
					t.Fatalf("connection %d of 3 allowed failed: %v", i+1, err)
				}
				return
			}
			c.Close()
		}
		t.Fatal("the 4th connection passed the kernel's limit")
	}
	burst()
	w.waitBanned(attacker2, true)
	if b := w.banned()[attacker2]; b.Origin.String() != "kernel" || *b.RemainingSeconds > 2.1 {
		t.Fatalf("first kernel ban = %+v, want a 2s kernel ban", b)
	}
	w.waitBanned(attacker2, false)
	burst()
	w.waitLog("for=4s")
	if b := w.banned()[attacker2]; *b.RemainingSeconds < 2.5 {
		t.Fatalf("second kernel ban = %+v (%.1fs left), want it doubled to 4s", b, *b.RemainingSeconds)
	}
}

// Under slot pressure the slot-holder detector bans after a second of
// silence, not its usual idle; it still spares a single idle connection
// and clients that speak.
func TestDaemonSlotPressure(t *testing.T) {
	w := newDaemonWorld(t)
	// The usual idle is out of reach here: only pressure can ban.
	w.slots = "{idle: 1m, pressure: {connections: 4, idle: 1s, scan_interval: 100ms, hold: 1m}}"
	w.writeConfig(3)
	w.start()
	open := func(src string, n int, say string) {
		t.Helper()
		for range n {
			c, err := w.dial(src, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if say != "" {
				c.Write([]byte(say))
			}
		}
	}
	// A phone idling on one connection; Thunderbird's five connections,
	// each saying CAPABILITY, STARTTLS and a TLS hello's worth at once;
	// and a holder with two silent connections. Three connections are
	// silent: no pressure, and nobody is banned.
	open(phone, 1, "")
	open(tbird, 5, "a1 CAPABILITY\r\na2 STARTTLS\r\n"+strings.Repeat("\x16", 300))
	open(holder, 2, "")
	time.Sleep(2500 * time.Millisecond)
	if bans := w.banned(); len(bans) != 0 {
		t.Fatalf("banned without pressure: %v\n%s", bans, w.out.String())
	}
	if strings.Contains(w.out.String(), "under pressure") {
		t.Fatalf("pressure at 3 silent connections, with 4 configured:\n%s", w.out.String())
	}
	// Two more silent connections make five: pressure, and both holders
	// go a second later. What proves it was pressure is the daemon's
	// word, not a clock: its ban lines say so, and the usual idle (1m)
	// is far beyond the generous wait (a busy machine may take seconds).
	open(holder2, 2, "")
	w.waitBannedWithin(holder2, 30*time.Second)
	w.waitBannedWithin(holder, 30*time.Second)
	w.waitLog("login slots under pressure")
	for _, ip := range []string{holder, holder2} {
		if !w.logged("msg=banned", "prefix="+ip+"/32", "pressure=true") {
			t.Errorf("no ban of %s under pressure in the daemon's log:\n%s", ip, w.out.String())
		}
	}
	for _, ip := range []string{phone, tbird} {
		if b, ok := w.banned()[ip]; ok {
			t.Errorf("%s banned under pressure: %+v", ip, b)
		}
	}
	if b := w.banned()[holder2]; b.Origin.String() != "log" || b.Reason.String() != "no-auth" {
		t.Errorf("ban = %+v", b)
	}
	for _, want := range []string{"xdpguard_slot_pressure 1", `xdpguard_slot_connections{state="silent"}`} {
		if body := w.scrape(t); !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
