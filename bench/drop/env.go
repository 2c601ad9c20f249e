package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses of the harness's own endpoints. The spoofed flood sources are
// elsewhere (see sources.go) and never leave the two namespaces.
const (
	genAddr = "198.18.0.1"
	dutAddr = "198.18.0.2"
	genIf   = "xgbg0"
	dutIf   = "xgbd0"
	// The generator and the DUT's receive thread get a CPU each, so the
	// DUT's CPU time is its own and not a share of the generator's.
	genCPU = 0
	dutCPU = 1
)

// env is the generator and DUT namespaces joined by one veth pair.
type env struct {
	gen, dut string // namespace names, registered under /var/run/netns
	pinRoot  string // bpffs directory for xdpguard's and xdp-filter's pins
	tmp      string // scratch directory for ban lists and nft scripts
	genIdx   int
	dutIdx   int
	dutMAC   net.HardwareAddr
	genMAC   net.HardwareAddr
}

func nsPath(name string) string { return "/var/run/netns/" + name }

// run runs a command and returns its stdout; the error carries stderr.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// in runs a command inside namespace ns. nsenter, not `ip netns exec`:
// the latter remounts /sys and hides /sys/fs/bpf from BPF tools.
func in(ns string, name string, args ...string) (string, error) {
	return run("nsenter", append([]string{"--net=" + nsPath(ns), name}, args...)...)
}

// reapStale removes what an earlier harness left when it could not clean
// up (SIGKILL, a crash): namespaces and pin directories named after a
// process that no longer exists. Only names this harness makes are touched.
func reapStale() {
	alive := func(name, prefix string) bool {
		pid, err := strconv.Atoi(strings.TrimPrefix(name, prefix))
		if err != nil || pid <= 0 {
			return true // not ours
		}
		return unix.Kill(pid, 0) != unix.ESRCH
	}
	ents, _ := os.ReadDir("/var/run/netns")
	for _, d := range ents {
		for _, p := range []string{"xgbgen", "xgbdut"} {
			if strings.HasPrefix(d.Name(), p) && !alive(d.Name(), p) {
				fmt.Fprintln(os.Stderr, "removing stale namespace", d.Name())
				run("ip", "netns", "del", d.Name())
			}
		}
	}
	ents, _ = os.ReadDir("/sys/fs/bpf")
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), "xgbench") && !alive(d.Name(), "xgbench") {
			fmt.Fprintln(os.Stderr, "removing stale pins", d.Name())
			os.RemoveAll(filepath.Join("/sys/fs/bpf", d.Name()))
		}
	}
}

func newEnv() (e *env, err error) {
	reapStale()
	pid := os.Getpid()
	e = &env{
		gen:     fmt.Sprintf("xgbgen%d", pid),
		dut:     fmt.Sprintf("xgbdut%d", pid),
		pinRoot: fmt.Sprintf("/sys/fs/bpf/xgbench%d", pid),
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.tmp, err = os.MkdirTemp("", "xgbench"); err != nil {
		return e, fmt.Errorf("scratch directory: %w", err)
	}
	if err := os.MkdirAll(e.pinRoot, 0o700); err != nil {
		return e, fmt.Errorf("pin root %s (is bpffs mounted on /sys/fs/bpf?): %w", e.pinRoot, err)
	}
	steps := [][]string{
		{"ip", "netns", "add", e.gen},
		{"ip", "netns", "add", e.dut},
		{"ip", "-n", e.gen, "link", "set", "lo", "up"},
		{"ip", "-n", e.dut, "link", "set", "lo", "up"},
		{"ip", "-n", e.gen, "link", "add", genIf, "type", "veth", "peer", "name", dutIf, "netns", e.dut},
		{"ip", "-n", e.gen, "addr", "add", genAddr + "/30", "dev", genIf},
		{"ip", "-n", e.dut, "addr", "add", dutAddr + "/30", "dev", dutIf},
		{"ip", "-n", e.gen, "link", "set", genIf, "up"},
		{"ip", "-n", e.dut, "link", "set", dutIf, "up"},
		// The DUT answers spoofed sources through the generator's veth,
		// where xdp_sink drops the answers: no filter means the TCP stack
		// really does send a SYN-ACK, as it would on a real host.
		{"ip", "-n", e.dut, "route", "add", "default", "via", genAddr},
		// Strict reverse-path filtering would drop the spoofed sources
		// before TCP and make "no filter" look cheap.
		{"ip", "netns", "exec", e.dut, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf." + dutIf + ".rp_filter=0"},
		// NAPI on both ends: frames the generator transmits need the DUT's
		// NAPI, and the DUT's replies must be handled by the generator's
		// own NAPI thread rather than in the DUT's softirq context.
		// TSO off: veth hands a socket's skb from a TSO-capable device to
		// the peer's backlog queue instead of its NAPI ring. Attaching
		// native XDP turns the peer's TSO off by itself, so without this
		// the legitimate client would take the DUT's ring in the native
		// rows and bypass it in all others. The generator's sink keeps
		// the DUT's TSO off anyway.
		{"ip", "netns", "exec", e.dut, "ethtool", "-K", dutIf, "gro", "on", "tso", "off"},
		{"ip", "netns", "exec", e.gen, "ethtool", "-K", genIf, "gro", "on", "tso", "off"},
		// ip netns exec (not nsenter) here: it mounts the namespace's sysfs.
		{"ip", "netns", "exec", e.dut, "sh", "-c", "echo 1 > /sys/class/net/" + dutIf + "/threaded"},
		{"ip", "netns", "exec", e.gen, "sh", "-c", "echo 1 > /sys/class/net/" + genIf + "/threaded"},
	}
	for _, s := range steps {
		if _, err := run(s[0], s[1:]...); err != nil {
			return e, err
		}
	}
	if e.genIdx, e.genMAC, err = e.link(e.gen, genIf); err != nil {
		return e, err
	}
	if e.dutIdx, e.dutMAC, err = e.link(e.dut, dutIf); err != nil {
		return e, err
	}
	// Static neighbours: no ARP, so an XDP program that drops everything
	// (the floor) cannot break the legitimate client's path by starving ARP.
	for _, s := range [][]string{
		{"ip", "-n", e.dut, "neigh", "replace", genAddr, "lladdr", e.genMAC.String(), "dev", dutIf, "nud", "permanent"},
		{"ip", "-n", e.gen, "neigh", "replace", dutAddr, "lladdr", e.dutMAC.String(), "dev", genIf, "nud", "permanent"},
	} {
		if _, err := run(s[0], s[1:]...); err != nil {
			return e, err
		}
	}
	return e, nil
}

func (e *env) link(ns, ifname string) (int, net.HardwareAddr, error) {
	var idx int
	var mac net.HardwareAddr
	err := doIn(ns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		idx, mac = ifc.Index, ifc.HardwareAddr
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("interface %s in %s: %w", ifname, ns, err)
	}
	return idx, mac, nil
}

// close removes everything the harness created. Deleting the namespaces
// takes the veths with them, and with the veths every XDP program, nftables
// table, iptables rule and ipset inside; the pins need removing by hand.
func (e *env) close() {
	for _, ns := range []string{e.dut, e.gen} {
		if _, err := os.Stat(nsPath(ns)); err == nil {
			if _, err := run("ip", "netns", "del", ns); err != nil {
				fmt.Fprintln(os.Stderr, "cleanup:", err)
			}
		}
	}
	if e.pinRoot != "" && strings.HasPrefix(e.pinRoot, "/sys/fs/bpf/xgbench") {
		if err := os.RemoveAll(e.pinRoot); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}
	if e.tmp != "" {
		os.RemoveAll(e.tmp)
	}
}

// doIn runs fn on a fresh OS thread inside namespace ns. The thread is
// thrown away afterwards (the goroutine exits locked), so no other goroutine
// ever runs in the wrong namespace.
func doIn(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromPath(nsPath(ns))
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// napiThread finds the threaded-NAPI kthread of ifname ("napi/IF-ID") and
// pins it to cpu. It is looked up before every flood: the kernel recreates
// the thread when NAPI is disabled and enabled again.
func napiThread(ifname string, cpu int) (int, error) {
	prefix := "napi/" + ifname + "-"
	deadline := time.Now().Add(2 * time.Second)
	for {
		ents, _ := os.ReadDir("/proc")
		found := []int{}
		for _, d := range ents {
			pid, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
			if err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), prefix) {
				found = append(found, pid)
			}
		}
		if len(found) == 1 {
			var set unix.CPUSet
			set.Set(cpu)
			if err := unix.SchedSetaffinity(found[0], &set); err != nil {
				return 0, fmt.Errorf("pin %s%d to CPU %d: %w", prefix, found[0], cpu, err)
			}
			// Real-time, like the softirq it stands in for: at normal
			// priority its wake-up latency, shared with whatever else
			// runs on the CPU, overflows the 256-frame veth ring and
			// the legitimate client's SYNs die there.
			if _, err := run("chrt", "-f", "-p", rtPrio, strconv.Itoa(found[0])); err != nil {
				return 0, err
			}
			return found[0], nil
		}
		if len(found) > 1 {
			return 0, fmt.Errorf("%d threads named %s*: want one receive queue", len(found), prefix)
		}
		if time.Now().After(deadline) {
			return 0, errors.New("no threaded NAPI kthread " + prefix + "*: is NAPI enabled (GRO on) and threaded set?")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
