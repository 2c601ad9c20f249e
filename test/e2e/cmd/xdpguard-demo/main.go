// Command xdpguard-demo shows xdpguard against the attack it exists for, on
// one machine, in under three minutes: a real Dovecot in a network
// namespace, bots holding its login slots from 64 addresses in another,
// and a user logging in every half second, first without protection and
// then with `xdpguard run`. It touches nothing outside its two namespaces
// and its temporary directory, and removes them when it ends. Run it as
// root through `make demo`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/xdpguard/xdpguard/test/e2e/harness"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

func main() {
	mailload.Main() // the attack and the probe are this binary, re-executed
	bin := flag.String("xdpguard", "bin/xdpguard", "the xdpguard binary")
	phase := flag.Duration("phase", 30*time.Second, "length of each attack phase")
	conns := flag.Int("conns", 400, "connections the bots hold at once")
	install := flag.Bool("install", true, "install Dovecot with apt-get if it is missing")
	flag.Parse()
	if err := run(*bin, *phase, *conns, *install); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo: %v\n", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(bin string, phase time.Duration, conns int, install bool) error {
	if os.Geteuid() != 0 {
		return errors.New("run me as root (sudo make demo): I create network namespaces and attach XDP")
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("xdpguard binary: %w (make build)", err)
	}
	if err := ensureDovecot(install); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// `make demo | head` must not kill the demo before it has torn down:
	// caught (not ignored, which children would inherit), SIGPIPE only
	// turns writes into errors.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)

	say("building two network namespaces and starting Dovecot (stock limits: 100 login processes per protocol)")
	w, err := harness.New(harness.Options{AttackersV4: 32, AttackersV6: 32, Xdpguard: bin, Self: self,
		Logf: func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) }})
	if err != nil {
		return err
	}
	defer func() {
		say("tearing down: stopping Dovecot, rsyslogd and xdpguard, detaching, deleting the namespaces")
		w.Close()
		say("done; nothing is left behind")
	}()

	probe, err := w.StartProbe(500*time.Millisecond, 5*time.Second, time.Hour, 0, nil)
	if err != nil {
		return err
	}
	if err := pause(ctx, 3*time.Second); err != nil {
		return err
	}
	say("a user logs in every 0.5 s (IMAP and POP3, STARTTLS, 5 s deadline); quiet server: %s", line(endedWithin(probe, 3*time.Second)))

	attack := mailload.AttackConfig{Servers: w.Servers(), Sources: w.Attackers, Conns: conns}
	say("ATTACK, no protection: %d bots' connections from %d addresses grab the login slots and sit on them", conns, len(w.Attackers))
	before, err := attackPhase(ctx, w, probe, attack, phase, nil)
	if err != nil {
		return err
	}
	say("without protection: %s", line(before))
	say("letting Dovecot recover")
	if err := waitRecovered(ctx, w); err != nil {
		return err
	}

	say("starting: xdpguard run --iface %s --log %s (default settings)", harness.ServerIf, w.Maillog)
	x, err := w.StartXdpguard()
	if err != nil {
		return err
	}
	say("ATTACK again, xdpguard running; `xdpguard status --json` every 5 s:")
	var during *harness.Status
	after, err := attackPhase(ctx, w, probe, attack, phase, func() {
		st, err := x.Status()
		if err != nil {
			fmt.Printf("           status: %v\n", err)
			return
		}
		during = st
		origins := map[string]int{}
		for _, b := range st.Bans {
			origins[b.Origin]++
		}
		fmt.Printf("           xdpguard: %d bans (log %d, kernel %d), %d packets dropped, %d SYNs counted\n",
			len(st.Bans), origins["log"], origins["kernel"], st.Counters["dropped_ban"], st.Counters["syns"])
	})
	if err != nil {
		return err
	}
	if during != nil {
		say("xdpguard had banned %d of %d attacker addresses by the end of the attack; no user was banned: %v",
			bannedCount(during, w), len(w.Attackers), !anyUserBanned(during, w))
	}
	if out, err := x.StatusText(3); err == nil {
		say("xdpguard status (the human view):")
		fmt.Println(indent(trim(out, 30)))
	}
	probe.Stop()

	fmt.Println()
	say("legitimate logins during the attack")
	fmt.Printf("    %-22s %s%s\n", "without protection:", line(before), families(before))
	fmt.Printf("    %-22s %s%s\n", "with xdpguard:", line(after), families(after))
	fmt.Printf("    (in the first second or two with xdpguard no bot has yet been silent long enough to be banned;\n" +
		"     Dovecot serves its IPv4 socket first, so IPv6 users wait behind every queued IPv4 bot)\n")
	return nil
}

// attackPhase runs the attack for d, printing the users' success every 5 s
// and calling every, if set, at the same pace.
func attackPhase(ctx context.Context, w *harness.World, probe *harness.Probe, cfg mailload.AttackConfig, d time.Duration, every func()) ([]mailload.Attempt, error) {
	start := time.Now()
	a, err := w.StartAttack("attack", cfg, d+time.Minute)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	end := time.After(d)
loop:
	for {
		select {
		case <-ctx.Done():
			a.Stop()
			return nil, errors.New("interrupted")
		case <-end:
			break loop
		case <-tick.C:
			fmt.Printf("    t+%2.0fs  user logins ended in the last 5 s: %s\n", time.Since(start).Seconds(), line(endedWithin(probe, 5*time.Second)))
			if every != nil {
				every()
			}
		}
	}
	stop := time.Now()
	a.Stop()
	return probe.Between(start, stop), nil
}

// waitRecovered waits for the attack's connections to be gone from the
// server, the closed ones still in its accept queues included.
func waitRecovered(ctx context.Context, w *harness.World) error {
	end := time.Now().Add(60 * time.Second)
	for time.Now().Before(end) {
		est, err := w.Established()
		if err != nil {
			return err
		}
		n := 0
		for a, c := range est {
			if isAttacker(w, a) {
				n += c
			}
		}
		queued, err := w.Waiting()
		if err != nil {
			return err
		}
		if n == 0 && queued == 0 {
			return pause(ctx, 2*time.Second)
		}
		if err := pause(ctx, time.Second); err != nil {
			return err
		}
	}
	return errors.New("Dovecot did not recover from the attack within a minute")
}

func isAttacker(w *harness.World, a netip.Addr) bool {
	return slices.Contains(w.Attackers, a)
}

func bannedCount(st *harness.Status, w *harness.World) int {
	n := 0
	for _, a := range w.Attackers {
		if _, ok := st.Banned(a); ok {
			n++
		}
	}
	return n
}

// endedWithin returns the attempts that ended in the last d: a failure
// ends only at the deadline, so counting by start time would show the
// failures 5 s late, as successes first.
func endedWithin(probe *harness.Probe, d time.Duration) []mailload.Attempt {
	now := time.Now()
	var out []mailload.Attempt
	for _, a := range probe.Since(now.Add(-d - time.Minute)) {
		if end := a.Start.Add(a.Latency); end.After(now.Add(-d)) {
			out = append(out, a)
		}
	}
	return out
}

func anyUserBanned(st *harness.Status, w *harness.World) bool {
	for _, u := range w.Users {
		if _, ok := st.Banned(u.Src); ok {
			return true
		}
	}
	return false
}

func line(as []mailload.Attempt) string {
	s := mailload.Summarize(as)
	if s.Attempts == 0 {
		return "no attempts yet"
	}
	return fmt.Sprintf("%3d/%-3d ok (%5.1f%%), median %v", s.OK, s.Attempts, 100*s.Rate, s.P50.Round(time.Millisecond))
}

func families(as []mailload.Attempt) string {
	s4, s6 := mailload.SummarizeByFamily(as)
	return fmt.Sprintf("; IPv4 users %.0f%%, IPv6 users %.0f%%", 100*s4.Rate, 100*s6.Rate)
}

func trim(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		more := len(lines) - n
		lines = append(lines[:n], fmt.Sprintf("... (%d more lines)", more))
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "    | " + strings.ReplaceAll(s, "\n", "\n    | ")
}

func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return errors.New("interrupted")
	case <-time.After(d):
		return nil
	}
}

// ensureDovecot installs the Debian/Ubuntu packages if they are missing.
func ensureDovecot(install bool) error {
	if harness.CheckDovecot() == nil {
		return nil
	}
	if !install {
		return fmt.Errorf("cannot run the demo: %w", harness.CheckDovecot())
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("cannot install Dovecot: no apt-get here (the demo needs Debian or Ubuntu): %v", harness.CheckDovecot())
	}
	say("installing dovecot-imapd dovecot-pop3d rsyslog openssl with apt-get")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends",
		"dovecot-imapd", "dovecot-pop3d", "rsyslog", "openssl", "iproute2", "util-linux"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("cannot install Dovecot (apt-get %s: %v); install dovecot-imapd and dovecot-pop3d and run me again", args[0], err)
		}
	}
	if err := harness.CheckDovecot(); err != nil {
		return fmt.Errorf("cannot run the demo after installing: %w", err)
	}
	say("note: the distribution may have started its own dovecot service on this host; the demo does not use it (systemctl disable --now dovecot to stop it)")
	return nil
}
