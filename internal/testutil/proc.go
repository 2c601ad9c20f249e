package testutil

import (
	"os/exec"
	"syscall"
	"time"
)

// Stop ends a started command the way its cleanup should: SIGTERM to its
// PID, so that it can sync and close its files, and SIGKILL if it is still
// running after grace. It returns what Wait returned.
func Stop(cmd *exec.Cmd, grace time.Duration) error {
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(grace):
		cmd.Process.Kill()
		return <-done
	}
}
