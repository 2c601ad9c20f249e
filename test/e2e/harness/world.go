// Package harness builds the end-to-end world: a server namespace running
// the real Debian Dovecot (logging through its own rsyslogd into a private
// maillog), a client namespace holding the legitimate users' and the
// attackers' addresses, and the protection under test (nothing, xdpguard
// or fail2ban). Everything lives under one temporary directory and two
// namespaces, and Close tears it all down, stopping only the processes the
// harness started.
package harness

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xdpguard/xdpguard/internal/config"
	"github.com/xdpguard/xdpguard/internal/testutil"
	"github.com/xdpguard/xdpguard/test/e2e/mailload"
)

// Interface names inside the namespaces; nothing is created outside them.
const (
	ServerIf = "e2e-srv"
	ClientIf = "e2e-cli"
)

// Addresses: the server, the legitimate users, the attackers and the slow
// attacker, all from the benchmarking ranges 198.18.0.0/15 and
// 2001:db8::/32. Each IPv6 source sits in its own /64 because xdpguard
// masks IPv6 sources to /64: a /64 is one source to it.
var (
	ServerV4 = netip.MustParseAddr("198.18.0.1")
	ServerV6 = netip.MustParseAddr("2001:db8::1")
	Slow     = netip.MustParseAddr("198.18.3.1")
	v4Net    = netip.MustParsePrefix("198.18.0.0/15")
	v6Net    = netip.MustParsePrefix("2001:db8::/32")
)

// Options size the world.
type Options struct {
	// Dir is the work directory; empty makes a temporary one, removed by
	// Close.
	Dir string
	// AttackersV4 and AttackersV6 are the numbers of attacker sources.
	AttackersV4, AttackersV6 int
	// TrawlersV4 and TrawlersV6 are the distributed trawler's sources.
	TrawlersV4, TrawlersV6 int
	// NewUsers is the number of accounts, each with a fresh address,
	// that log in for the first time during an attack.
	NewUsers int
	// OfficeUsers share OfficeAddr; WebmailUsers share WebmailAddr.
	OfficeUsers, WebmailUsers int
	// TLSProxies raises imap-login's process_limit above the stock 100 by
	// the number of IMAP TLS sessions held open after login (the office's
	// IDLE connections). Dovecot's documentation asks for this: each such
	// session keeps its login process as a TLS proxy, so on the stock
	// limit 100 held sessions would leave no login slot at all. The
	// slots left for logging in stay the stock 100.
	TLSProxies int
	// Xdpguard is the xdpguard binary (for the xdpguard protection).
	Xdpguard string
	// XdpguardConfig, if set, is a config file for `xdpguard run` in
	// place of the defaults: for tuning experiments, never for the proof.
	XdpguardConfig string
	// Self is the executable that runs mailload roles (the test binary or
	// the demo); it must call mailload.Main first thing.
	Self string
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// World is a running end-to-end setup.
type World struct {
	Dir            string
	Server, Client *testutil.NS
	Users          []mailload.User // the returning users
	Attackers      []netip.Addr    // the seed's slot holders
	Trawlers       []netip.Addr
	NewUsers       []mailload.User // one fresh address each
	Office         []mailload.User // all from OfficeAddr
	Webmail        []mailload.User // all from WebmailAddr
	Maillog        string
	CAFile         string
	opts           Options

	mu       sync.Mutex
	cleanups []func()
	procs    []*Proc
}

// Servers is the server's address pair.
func (w *World) Servers() mailload.Servers { return mailload.Servers{V4: ServerV4, V6: ServerV6} }

// New builds the namespaces and starts rsyslogd and Dovecot. On error it
// has already torn down whatever it built.
func New(o Options) (w *World, err error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	w = &World{opts: o}
	// An error return sets w to nil before this runs: keep our own copy.
	built := w
	defer func() {
		if err != nil {
			built.Close()
			w = nil
		}
	}()
	reapStale(o.Logf)
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "xdpguard-e2e-"); err != nil {
			return nil, err
		}
		w.addCleanup(func() { os.RemoveAll(o.Dir) })
		if err := os.WriteFile(filepath.Join(o.Dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return nil, err
		}
	}
	// Dovecot's unprivileged auth and login processes read files here.
	if err := os.Chmod(o.Dir, 0o755); err != nil {
		return nil, err
	}
	w.Dir = o.Dir
	w.Maillog = filepath.Join(o.Dir, "maillog")
	if err := w.buildNet(); err != nil {
		return nil, err
	}
	if err := w.startSyslog(); err != nil {
		return nil, err
	}
	if err := w.startDovecot(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *World) buildNet() error {
	tag := strconv.Itoa(os.Getpid())
	var err error
	if w.Server, err = testutil.Create("xge2e-" + tag + "-srv"); err != nil {
		return err
	}
	w.addCleanup(func() { w.Server.Close() })
	if w.Client, err = testutil.Create("xge2e-" + tag + "-cli"); err != nil {
		return err
	}
	w.addCleanup(func() { w.Client.Close() })
	w.addCleanup(w.sweep)
	if err := testutil.VethPair(w.Server, ServerIf, w.Client, ClientIf); err != nil {
		return err
	}
	srv := []netip.Prefix{netip.PrefixFrom(ServerV4, 15), netip.PrefixFrom(ServerV6, 64)}
	if err := testutil.Configure(w.Server, ServerIf, srv, []netip.Prefix{v6Net}); err != nil {
		return err
	}
	legit := []string{"198.18.2.1", "198.18.2.2", "198.18.2.3", "2001:db8:1:1::10", "2001:db8:1:2::10"}
	var cli []netip.Prefix
	for i, s := range legit {
		a := netip.MustParseAddr(s)
		w.Users = append(w.Users, mailload.User{Name: fmt.Sprintf("user%d", i+1), Pass: fmt.Sprintf("secret-%d-%s", i+1, tag), Src: a})
		cli = append(cli, host(a))
	}
	// Interleaved, so that the attack, which spreads its connections over
	// the list in order, gives both families the same share.
	for i := 0; i < max(w.opts.AttackersV4, w.opts.AttackersV6); i++ {
		if i < w.opts.AttackersV4 {
			w.Attackers = append(w.Attackers, netip.AddrFrom4([4]byte{198, 18, 1 + byte(i/250), 1 + byte(i%250)}))
		}
		if i < w.opts.AttackersV6 {
			w.Attackers = append(w.Attackers, netip.MustParseAddr(fmt.Sprintf("2001:db8:bad:%x::1", i+1)))
		}
	}
	for _, a := range w.Attackers {
		cli = append(cli, host(a))
	}
	cli = append(cli, host(Slow))
	for _, a := range w.buildPopulation(tag) {
		cli = append(cli, host(a))
	}
	if err := testutil.Configure(w.Client, ClientIf, cli, []netip.Prefix{v6Net}); err != nil {
		return err
	}
	w.opts.Logf("namespaces %s and %s: %d users, %d attackers (%d IPv4, %d IPv6), %d trawlers, %d new users, %d office and %d webmail users",
		w.Server.Name, w.Client.Name, len(w.Users), len(w.Attackers), w.opts.AttackersV4, w.opts.AttackersV6,
		len(w.Trawlers), len(w.NewUsers), len(w.Office), len(w.Webmail))
	return nil
}

// host gives IPv4 sources the shared /15 (on-link) and IPv6 sources a /128
// reached through the on-link /32 route.
func host(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, v4Net.Bits())
	}
	return netip.PrefixFrom(a, 128)
}

func (w *World) addCleanup(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cleanups = append(w.cleanups, f)
}

// Close stops every process the harness started, newest first, removes
// the namespaces and the work directory. It is safe to call twice.
func (w *World) Close() {
	w.mu.Lock()
	cs := w.cleanups
	w.cleanups = nil
	w.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// Proc is a process the harness started.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done.
func (p *Proc) Err() error { <-p.done; return p.err }

// start runs cmd, logging its output to DIR/name.log unless the caller
// set Stdout/Stderr, and registers its stop.
func (w *World) start(name string, cmd *exec.Cmd) (*Proc, error) {
	if cmd.Stdout == nil || cmd.Stderr == nil {
		f, err := os.OpenFile(filepath.Join(w.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if cmd.Stdout == nil {
			cmd.Stdout = f
		}
		if cmd.Stderr == nil {
			cmd.Stderr = f
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	w.addCleanup(func() { w.Stop(p, 10*time.Second) })
	return p, nil
}

// Stop sends SIGTERM to p, by its PID, and SIGKILL after grace.
func (w *World) Stop(p *Proc, grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		w.opts.Logf("%s (pid %d) ignored SIGTERM for %v; killing it", p.Name, p.Cmd.Process.Pid, grace)
		p.Cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// inNS is a command entered into ns's network namespace.
func inNS(ns *testutil.NS, name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + ns.Path(), "--", name}, args...)...)
}

// run runs a short command in ns and returns its output.
func run(ns *testutil.NS, name string, args ...string) ([]byte, error) {
	var cmd *exec.Cmd
	if ns == nil {
		cmd = exec.Command(name, args...)
	} else {
		cmd = inNS(ns, name, args...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// waitFor polls cond every 100 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, what string, cond func() bool) error {
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			return errors.New("timed out after " + timeout.String() + " waiting for " + what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// waitStarted waits up to timeout for the daemon p to be ready (what names
// the wait in the error). If p exits first, the error says so (exited
// names the failure) and quotes its log, logName under the world's Dir.
func (w *World) waitStarted(p *Proc, timeout time.Duration, what string, ready func() bool, exited, logName string) error {
	err := waitFor(timeout, what, func() bool {
		select {
		case <-p.Done():
			return true
		default:
		}
		return ready()
	})
	select {
	case <-p.Done():
		out, _ := os.ReadFile(filepath.Join(w.Dir, logName))
		return fmt.Errorf("%s: %v: %s", exited, p.Err(), strings.TrimSpace(string(out)))
	default:
	}
	return err
}

// sweep kills what is still running in the namespaces after the orderly
// stops: only descendants of processes the harness started can be there
// (a Dovecot child that outlived its master, say).
func (w *World) sweep() {
	for _, ns := range []*testutil.NS{w.Server, w.Client} {
		out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(out)) {
			// This process shows up too: Go parks the main thread, if a
			// namespace-switched goroutine ended on it, instead of exiting it.
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				w.opts.Logf("killing leftover pid %d in %s", pid, ns.Name)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// Established counts the server's established connections to the mail
// ports by peer address (what `ss` shows in the server namespace).
func (w *World) Established() (map[netip.Addr]int, error) {
	return w.Sockets("established")
}

// Connections counts the server's established connections to the mail
// ports by peer address, and those of them that Dovecot has accepted: the
// rest wait in an accept queue (their socket has no inode yet).
func (w *World) Connections() (all, accepted map[netip.Addr]int, err error) {
	return w.sockets("established")
}

// Sockets counts the server's connections to the mail ports in the given
// TCP states (ss's names) by peer address. A connection that its client
// closed while it waited in an accept queue is in close-wait there.
func (w *World) Sockets(states ...string) (map[netip.Addr]int, error) {
	all, _, err := w.sockets(states...)
	return all, err
}

func (w *World) sockets(states ...string) (all, accepted map[netip.Addr]int, err error) {
	args := []string{"-Htne"}
	for _, st := range states {
		args = append(args, "state", st)
	}
	args = append(args, "( sport = :110 or sport = :143 or sport = :993 or sport = :995 )")
	out, err := run(w.Server, "ss", args...)
	if err != nil {
		return nil, nil, err
	}
	all, accepted = map[netip.Addr]int{}, map[netip.Addr]int{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && len(states) > 1 {
			f = f[1:] // the State column, shown when more than one is asked for
		}
		// Recv-Q Send-Q Local Peer, then -e's fields.
		if len(f) < 4 {
			continue
		}
		ap, err := netip.ParseAddrPort(f[3])
		if err != nil {
			continue
		}
		all[ap.Addr().Unmap()]++
		if !slices.Contains(f[4:], "ino:0") {
			accepted[ap.Addr().Unmap()]++
		}
	}
	return all, accepted, nil
}

// Waiting counts the connections waiting in the accept queues of the
// server's mail listeners: established, but not yet taken by Dovecot.
// After an attack ends, the queued connections of the bots (closed by then)
// still wait there until Dovecot has worked through them.
func (w *World) Waiting() (int, error) {
	// The public listeners and the priority tiers' (dist/dovecot-priority.conf).
	var ports []string
	for _, p := range []uint16{110, 143, 993, 995} {
		ports = append(ports, fmt.Sprintf("sport = :%d or sport = :%d or sport = :%d", p, config.DefaultPriorityPorts()[p], config.DefaultFreshPorts()[p]))
	}
	out, err := run(w.Server, "ss", "-Hltn", "( "+strings.Join(ports, " or ")+" )")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		q, err := strconv.Atoi(f[1]) // Recv-Q: the accept queue of a listener
		if err != nil {
			return 0, fmt.Errorf("ss: %q: %w", line, err)
		}
		n += q
	}
	return n, nil
}
