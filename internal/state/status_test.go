package state

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStatusRunning(t *testing.T) {
	now := time.Now()
	// A process that has exited: its pid is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		st   Status
		want string // "" for running
	}{
		{"alive", Status{PID: os.Getpid(), Written: now.Add(-StatusInterval)}, ""},
		{"stopped", Status{PID: os.Getpid(), Written: now, Stopped: now}, "stopped at"},
		{"pid gone", Status{PID: dead.Process.Pid, Written: now}, "is gone"},
		{"stale", Status{PID: os.Getpid(), Written: now.Add(-time.Minute)}, "has not written its status for 1m0s"},
		{"no pid", Status{Written: now}, "names no process"},
	} {
		ok, why := c.st.Running(now)
		if ok != (c.want == "") || !strings.Contains(why, c.want) {
			t.Errorf("%s: running=%v %q, want %q", c.name, ok, why, c.want)
		}
	}
}

// The status file is replaced whole, readable by others (a monitoring
// user), and read back as written.
func TestStatusFile(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	want := Status{PID: 42, Started: t0, Written: t0.Add(time.Second), Interfaces: []string{"eth1"},
		Logs: []LogInput{{Name: "journal", Kind: "journal", Exists: true, Lines: 7, Last: t0}}, Pressure: Pressure{On: true, Since: t0, Waiting: 3}}
	if err := s.WriteStatus(want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.StatusPath())
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	got, err := s.ReadStatus()
	if err != nil || got.PID != 42 || !got.Written.Equal(want.Written) || len(got.Logs) != 1 || got.Logs[0].Lines != 7 ||
		!got.Pressure.On || got.Pressure.Waiting != 3 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 1 {
		t.Errorf("left %d entries", len(entries))
	}
}
