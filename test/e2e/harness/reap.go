package harness

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// A harness killed outright (SIGKILL, a test binary's timeout panic) cannot
// run its cleanups. The next one reaps what it left: namespaces, pins and
// work directories carry the PID of the process that made them, and only
// those whose maker is gone are touched.

var staleNS = regexp.MustCompile(`^xge2e-(\d+)-(srv|cli)$`)

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func reapStale(logf func(string, ...any)) {
	if ents, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range ents {
			m := staleNS.FindStringSubmatch(e.Name())
			if m == nil {
				continue
			}
			if pid, _ := strconv.Atoi(m[1]); alive(pid) {
				continue
			}
			if out, err := exec.Command("ip", "netns", "pids", e.Name()).Output(); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if p, err := strconv.Atoi(f); err == nil && p > 1 && p != os.Getpid() {
						syscall.Kill(p, syscall.SIGKILL)
					}
				}
			}
			exec.Command("ip", "netns", "delete", e.Name()).Run()
			logf("reaped namespace %s left by a killed run", e.Name())
		}
	}
	if pins, _ := filepath.Glob("/sys/fs/bpf/xdpguard-e2e-*"); pins != nil {
		for _, p := range pins {
			if pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), "xdpguard-e2e-")); err == nil && !alive(pid) {
				os.RemoveAll(p)
				logf("reaped pins %s left by a killed run", p)
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "xdpguard-e2e-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || alive(pid) {
			continue
		}
		// rsyslogd runs outside the namespaces; its pid file says which
		// one is ours, and its command line must name this directory.
		if b, err := os.ReadFile(filepath.Join(d, "rsyslogd.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); strings.Contains(string(cmd), d) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		os.RemoveAll(d)
		logf("reaped work directory %s left by a killed run", d)
	}
}
