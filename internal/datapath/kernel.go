package datapath

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MinKernel is the oldest kernel xdpguard supports: XDP through bpf_link
// (which is what makes pinned, upgradable attachments possible) arrived in
// 5.9, the BPF ring buffer in 5.8, and bpf_ktime_get_coarse_ns, which the
// program reads instead of the ~30 ns precise clock, in 5.11, and
// compare-and-swap, with which it writes the IPv4 ban table, in 5.12.
var MinKernel = [2]int{5, 12}

// checkKernel refuses an old kernel with a sentence instead of a verifier
// dump or an EINVAL from a link syscall.
func checkKernel() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	return checkRelease(unix.ByteSliceToString(uts.Release[:]))
}

func checkRelease(release string) error {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return nil // unknown format: let the feature probes speak
	}
	if major < MinKernel[0] || (major == MinKernel[0] && minor < MinKernel[1]) {
		return fmt.Errorf("kernel %s is too old: xdpguard needs Linux %d.%d or newer (XDP bpf_link needs 5.9, the BPF ring buffer 5.8, bpf_ktime_get_coarse_ns 5.11, BPF compare-and-swap 5.12)",
			release, MinKernel[0], MinKernel[1])
	}
	return nil
}
