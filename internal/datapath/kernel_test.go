package datapath

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

func TestCheckRelease(t *testing.T) {
	for release, ok := range map[string]bool{
		"6.1.0-56-amd64": true, "6.18.44-fc-v669": true, "5.12.0": true, "5.11.0": false, "5.15.0-91-generic": true,
		"5.10.0-30-amd64": false, "4.19.0-27-amd64": false, "3.10.0-1160.el7.x86_64": false,
		"weird": true, // unknown format: the feature probes will speak
	} {
		err := checkRelease(release)
		if (err == nil) != ok {
			t.Errorf("%s: %v", release, err)
		}
		if err != nil && !strings.Contains(err.Error(), release) || err != nil && !strings.Contains(err.Error(), "5.12") {
			t.Errorf("%s: message %q should name the kernel and the minimum", release, err)
		}
	}
}

// A program the verifier rejects is reported with the log's tail, not a
// page of dump.
func TestVerifierRejectionIsReadable(t *testing.T) {
	testutil.RequireRoot(t)
	_, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R0, asm.R5), // R5 is never initialised
			asm.Return(),
		},
	})
	if err == nil {
		t.Fatal("the verifier accepted a read of an uninitialised register")
	}
	msg := loadError(err).Error()
	if !strings.Contains(msg, "verifier rejected") || !strings.Contains(msg, "R5 !read_ok") {
		t.Errorf("message lacks the verdict or the log's last lines:\n%s", msg)
	}
}
