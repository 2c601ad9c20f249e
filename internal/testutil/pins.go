package testutil

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// PinRoot returns a fresh directory on bpffs for a test's pins, named with
// label so that a leftover says whose it is, and removes it (with whatever
// is pinned inside) when the test ends. It mounts bpffs at /sys/fs/bpf if
// nothing is mounted there. It skips the test unless it runs as root.
func PinRoot(t testing.TB, label string) string {
	t.Helper()
	RequireRoot(t)
	const bpffs = "/sys/fs/bpf"
	var st unix.Statfs_t
	if err := unix.Statfs(bpffs, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", bpffs, "bpf", 0, ""); err != nil {
			t.Fatalf("mount bpffs at %s: %v", bpffs, err)
		}
	}
	dir, err := os.MkdirTemp(bpffs, "xdpguard-test-"+label+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
