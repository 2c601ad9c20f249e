//go:build crowdsec

package crowdsec_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xdpguard-crowdsec-")
	if err != nil {
		panic(err)
	}
	if binary, err = testutil.XdpguardBinary(dir); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Addresses: the CrowdSec namespace "cs" holds the LAPI and plays the
// attackers; hosts A and B are mail servers, each joined to cs by a veth.
// Attacker addresses sit on both of cs's veths, so that the same source
// reaches both hosts.
const (
	lapiPort   = 18613 // inside cs only
	lapiA      = "198.18.61.2"
	hostA      = "198.18.61.1"
	lapiB      = "198.18.62.2"
	hostB      = "198.18.62.1"
	hostA6     = "2001:db8:61::1"
	badIP      = "198.18.70.7"
	badRange   = "198.18.70.64/26"
	inRange    = "198.18.70.70"
	bad6       = "2001:db8:70::7"
	holderIP   = "198.18.70.11"
	lateIP     = "198.18.70.12"
	allowedIP  = "198.18.70.13"
	updateFreq = time.Second
)

type world struct {
	t      *testing.T
	cs     *testutil.NS
	a, b   *host
	lapi   *lapi
	held   []net.Conn
	heldMu sync.Mutex
}

type host struct {
	t    *testing.T
	name string
	ns   *testutil.NS
	dir  string
	root string
	cfg  string
	cmd  *exec.Cmd
	out  *testutil.Buffer
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, cs: testutil.New(t, "cs")}
	attackers4 := []netip.Prefix{}
	for _, a := range []string{badIP, inRange, holderIP, lateIP, allowedIP} {
		attackers4 = append(attackers4, netip.MustParsePrefix(a+"/32"))
	}
	w.a = w.newHost("a", lapiA+"/24", hostA+"/24")
	w.b = w.newHost("b", lapiB+"/24", hostB+"/24")
	// cs's ends: the link address, then the attackers (IPv6 on A's link
	// only; neighbour discovery answers per interface).
	must(t, testutil.Configure(w.cs, "xg-csa", append([]netip.Prefix{netip.MustParsePrefix(lapiA + "/24"),
		netip.MustParsePrefix("2001:db8:61::2/64"), netip.MustParsePrefix(bad6 + "/128")}, attackers4...), nil))
	must(t, testutil.Configure(w.cs, "xg-csb", append([]netip.Prefix{netip.MustParsePrefix(lapiB + "/24")}, attackers4...), nil))
	must(t, testutil.Configure(w.a.ns, "xg-ha", []netip.Prefix{netip.MustParsePrefix(hostA + "/24"), netip.MustParsePrefix(hostA6 + "/64")},
		[]netip.Prefix{netip.MustParsePrefix("198.18.70.0/24"), netip.MustParsePrefix("2001:db8:70::/64")}))
	must(t, testutil.Configure(w.b.ns, "xg-hb", []netip.Prefix{netip.MustParsePrefix(hostB + "/24")},
		[]netip.Prefix{netip.MustParsePrefix("198.18.70.0/24")}))
	w.lapi = startLAPI(t, w.cs, lapiPort)
	t.Cleanup(func() {
		w.heldMu.Lock()
		for _, c := range w.held {
			c.Close()
		}
		w.heldMu.Unlock()
	})
	return w
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newHost makes a mail host namespace with a POP3-like listener that greets
// and then holds every connection, like a login process waiting for USER.
func (w *world) newHost(name, csAddr, addr string) *host {
	t := w.t
	h := &host{t: t, name: name, ns: testutil.New(t, "cs"+name), dir: t.TempDir()}
	must(t, testutil.VethPair(w.cs, "xg-cs"+name, h.ns, "xg-h"+name))
	h.root = filepath.Join(testutil.PinRoot(t, "crowdsec-"+name), "pins") // the daemon creates it
	t.Cleanup(func() {
		h.stop()
		exec.Command("nsenter", "--net="+h.ns.Path(), binary, "detach", "--pin-root", h.root).Run()
	})
	var ln net.Listener
	must(t, h.ns.Do(func() (err error) { ln, err = net.Listen("tcp", ":110"); return err }))
	testutil.Serve(t, ln, func(c net.Conn) { c.Write([]byte("+OK ready\r\n")) })
	return h
}

// pull is the crowdsec section of a host that pulls decisions from the LAPI
// at lapiAddr with the bouncer key; the lines that make it a machine too
// (machine_id, password) follow it.
func pull(lapiAddr, key string) string {
	return fmt.Sprintf("  lapi_url: http://%s:%d/\n  api_key: %s\n  update_frequency: %s\n", lapiAddr, lapiPort, key, updateFreq)
}

// start runs `xdpguard run` on the host with the given crowdsec section.
func (h *host) start(crowdsec string) {
	h.t.Helper()
	logFile := filepath.Join(h.dir, "maillog")
	os.WriteFile(logFile, nil, 0o644)
	h.cfg = filepath.Join(h.dir, "xdpguard.yaml")
	cfg := fmt.Sprintf(`interfaces: [xg-h%s]
xdp_mode: native
kernel:
  syn_rate: {threshold: 1000, window: 10s}
  max_bans: 262144
logs:
  files: [%s]
allow: [%s/32]
pin_root: %s
state_dir: %s
slot_holders: {idle: 2s, min_connections: 2}
crowdsec:
%s`, h.name, logFile, allowedIP, h.root, filepath.Join(h.dir, "state"), crowdsec)
	must(h.t, os.WriteFile(h.cfg, []byte(cfg), 0o644))
	h.out = &testutil.Buffer{}
	h.cmd = exec.Command("nsenter", "--net="+h.ns.Path(), binary, "run", "--config", h.cfg)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	must(h.t, h.cmd.Start())
	h.waitLog("msg=running", 30*time.Second)
}

func (h *host) stop() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	testutil.Stop(h.cmd, 10*time.Second)
	h.cmd = nil
}

// waitLog waits for a line containing substr and returns it.
func (h *host) waitLog(substr string, within time.Duration) string {
	h.t.Helper()
	return h.waitLogAfter(0, substr, within)
}

func (h *host) waitLogAfter(offset int, substr string, within time.Duration) string {
	h.t.Helper()
	line, ok := h.nextLog(offset, substr, within)
	if !ok {
		h.t.Fatalf("host %s: no log line with %q within %s:\n%s", h.name, substr, within, h.out.String())
	}
	return line
}

// nextLog returns the first line after offset that contains substr, or
// false once within has passed without one.
func (h *host) nextLog(offset int, substr string, within time.Duration) (string, bool) {
	deadline := time.Now().Add(within)
	for {
		s := h.out.String()
		if offset < len(s) {
			for _, line := range strings.Split(s[offset:], "\n") {
				if strings.Contains(line, substr) {
					return line, true
				}
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *host) logLen() int { return len(h.out.String()) }

// reaches says whether a TCP handshake from src to the host's port 110
// completes: a banned source's SYN is dropped by XDP.
func (w *world) reaches(src, dst string) bool {
	var ok bool
	w.cs.Do(func() error {
		d := net.Dialer{Timeout: 400 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", net.JoinHostPort(dst, "110"))
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	return ok
}

// waitReach polls until reaches(src, dst) == want and returns how long
// after start the first probe that saw it began (a dropped SYN is only
// known after the probe's timeout), failing after within.
func (w *world) waitReach(src, dst string, want bool, within time.Duration) time.Duration {
	w.t.Helper()
	start := time.Now()
	for {
		probe := time.Now()
		if w.reaches(src, dst) == want {
			return probe.Sub(start)
		}
		if time.Since(start) > within {
			w.t.Fatalf("%s -> %s: still reachable=%v after %s", src, dst, !want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hold opens n connections from src to dst and says nothing on them.
func (w *world) hold(src, dst string, n int) {
	w.t.Helper()
	for i := 0; i < n; i++ {
		must(w.t, w.cs.Do(func() error {
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(dst, "110"))
			if err != nil {
				return err
			}
			w.heldMu.Lock()
			w.held = append(w.held, c)
			w.heldMu.Unlock()
			return nil
		}))
	}
}

var kv = regexp.MustCompile(`(\w+)=("[^"]*"|\S+)`)

// fields parses a slog text line.
func fields(line string) map[string]string {
	out := map[string]string{}
	for _, m := range kv.FindAllStringSubmatch(line, -1) {
		out[m[1]] = strings.Trim(m[2], `"`)
	}
	return out
}

func execIn(h *host, name string, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + h.ns.Path(), name}, args...)...).CombinedOutput()
	return string(out), err
}
