package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Stop gives a process that honours SIGTERM its clean exit, and kills one
// that ignores it once the grace has passed.
func TestStop(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   syscall.Signal
	}{
		{"exec sleep 60", syscall.SIGTERM},
		{`trap "" TERM; exec sleep 60`, syscall.SIGKILL},
	} {
		cmd := exec.Command("sh", "-c", tc.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The trap must be set before the signal comes; sh sets it before
		// it execs sleep, so wait for the exec.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); string(comm) == "sleep\n" {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%q never reached sleep", tc.script)
			}
		}
		Stop(cmd, 200*time.Millisecond)
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != tc.want {
			t.Errorf("%q: ended with %v, want killed by %v", tc.script, cmd.ProcessState, tc.want)
		}
	}
}
