package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Xdpguard is a running `xdpguard run` on the server's veth.
type Xdpguard struct {
	w        *World
	p        *Proc
	bin      string
	PinRoot  string
	StateDir string
}

// Status is the part of `xdpguard status --json` the harness reads.
type Status struct {
	Interfaces []struct {
		Name string `json:"name"`
		Mode string `json:"mode"`
	} `json:"interfaces"`
	Counters map[string]uint64 `json:"counters"`
	Bans     []StatusBan       `json:"bans"`
}

// StatusBan is one active ban.
type StatusBan struct {
	Prefix netip.Prefix `json:"prefix"`
	Origin string       `json:"origin"`
	Reason string       `json:"reason"`
	Drops  uint64       `json:"drops"`
}

// Banned returns the ban covering a, if any.
func (s *Status) Banned(a netip.Addr) (StatusBan, bool) {
	for _, b := range s.Bans {
		if b.Prefix.Contains(a) {
			return b, true
		}
	}
	return StatusBan{}, false
}

// StartXdpguard runs the daemon in the server namespace with default
// settings: no config file (an empty one, so that a host's
// /etc/xdpguard/xdpguard.yaml cannot leak in), the server's veth, the
// maillog, and a pin root and state directory of its own.
func (w *World) StartXdpguard(args ...string) (*Xdpguard, error) {
	if w.opts.Xdpguard == "" {
		return nil, fmt.Errorf("harness: Options.Xdpguard is not set")
	}
	if err := ensureBPFFS(); err != nil {
		return nil, err
	}
	x := &Xdpguard{w: w, bin: w.opts.Xdpguard,
		PinRoot:  "/sys/fs/bpf/xdpguard-e2e-" + strconv.Itoa(os.Getpid()),
		StateDir: filepath.Join(w.Dir, "xdpguard-state")}
	conf := filepath.Join(w.Dir, "xdpguard.yaml")
	body := []byte("# defaults: the e2e test runs xdpguard as shipped\n")
	if w.opts.XdpguardConfig != "" {
		var err error
		if body, err = os.ReadFile(w.opts.XdpguardConfig); err != nil {
			return nil, fmt.Errorf("xdpguard config: %w", err)
		}
		w.opts.Logf("xdpguard runs with %s, not the defaults", w.opts.XdpguardConfig)
	}
	if err := os.WriteFile(conf, body, 0o644); err != nil {
		return nil, err
	}
	// Registered before the start so that a daemon that dies half-way
	// still has its pins removed.
	w.addCleanup(func() {
		if _, err := run(w.Server, x.bin, "detach", "--pin-root", x.PinRoot); err != nil {
			w.opts.Logf("xdpguard detach: %v", err)
		}
		os.RemoveAll(x.PinRoot)
	})
	full := append([]string{"run", "--config", conf, "--iface", ServerIf, "--log", w.Maillog,
		"--pin-root", x.PinRoot, "--state-dir", x.StateDir}, args...)
	p, err := w.start("xdpguard", inNS(w.Server, x.bin, full...))
	if err != nil {
		return nil, err
	}
	x.p = p
	err = w.waitStarted(p, 15*time.Second, "xdpguard to attach", func() bool {
		st, err := x.Status()
		return err == nil && len(st.Interfaces) > 0
	}, "xdpguard run exited", "xdpguard.log")
	if err != nil {
		return nil, err
	}
	st, _ := x.Status()
	w.opts.Logf("xdpguard run attached to %s (%s mode), pid %d", st.Interfaces[0].Name, st.Interfaces[0].Mode, p.Cmd.Process.Pid)
	// The log follower starts at the end of the file; give it a moment to
	// have opened it, so the first attack lines are not missed.
	time.Sleep(500 * time.Millisecond)
	return x, nil
}

// Status reads the pinned state through `xdpguard status --json`.
func (x *Xdpguard) Status() (*Status, error) {
	out, err := run(x.w.Server, x.bin, "status", "--json", "--top", "0", "--pin-root", x.PinRoot)
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("status --json: %w", err)
	}
	return &st, nil
}

// StatusText is the human `xdpguard status`.
func (x *Xdpguard) StatusText(top int) (string, error) {
	out, err := run(x.w.Server, x.bin, "status", "--top", strconv.Itoa(top), "--pin-root", x.PinRoot)
	return string(out), err
}

// Running reports whether the daemon is still up.
func (x *Xdpguard) Running() bool {
	select {
	case <-x.p.Done():
		return false
	default:
		return true
	}
}

// WaitPressureOver waits until the daemon has said that the last attack's
// login slot pressure is over. A test of the log layer alone starts there:
// under pressure an attacker that holds a slot silently is evicted, and,
// refused and reconnecting at once, trips the kernel's SYN rate before the
// log layer has its evidence. Pressure lasts slot_holders.pressure.hold
// (a minute) past its last sign; 3 minutes bound a daemon that never says.
func (x *Xdpguard) WaitPressureOver(t testing.TB) {
	t.Helper()
	for end := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		if _, on := ReadTimeline(x.Log()).PressureDuring(time.Now(), time.Now()); !on {
			return
		}
		if time.Now().After(end) {
			t.Fatal("the daemon's slot pressure did not end within 3 minutes of the last attack")
		}
	}
}

// CPU is the processor time the daemon has used so far, user and system
// (/proc/PID/stat, in clock ticks of 10 ms).
func (x *Xdpguard) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", x.p.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: short /proc stat", x.p.Name)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: /proc stat: %w", x.p.Name, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Stop stops the daemon (protection stays in force until Close).
func (x *Xdpguard) Stop() error { return x.w.Stop(x.p, 10*time.Second) }

// Log is the daemon's output so far.
func (x *Xdpguard) Log() string {
	b, _ := os.ReadFile(filepath.Join(x.w.Dir, "xdpguard.log"))
	return string(b)
}

func ensureBPFFS() error {
	if _, err := run(nil, "mountpoint", "-q", "/sys/fs/bpf"); err == nil {
		return nil
	}
	if _, err := run(nil, "mount", "-t", "bpf", "bpf", "/sys/fs/bpf"); err != nil {
		return fmt.Errorf("mount bpffs: %w", err)
	}
	return nil
}
