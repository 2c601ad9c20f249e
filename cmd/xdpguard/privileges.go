package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Capability bits from linux/capability.h.
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capBPF      = 39
)

// checkPrivileges says which capability is missing before a syscall fails
// with a bare EPERM. CAP_SYS_ADMIN stands in for CAP_BPF on older kernels.
func checkPrivileges(what string) error {
	eff, err := effectiveCaps()
	if err != nil {
		return nil // cannot tell; let the kernel answer
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	var missing []string
	if !has(capBPF) && !has(capSysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(capNetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if len(missing) > 0 {
		return fail("%s needs %s (run as root, or grant the capabilities)", what, strings.Join(missing, " and "))
	}
	return nil
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}
