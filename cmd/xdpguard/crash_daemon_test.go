package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The scenario: the daemon bans 200 sources from the log, is
// killed with SIGKILL right after logging them, and the machine "reboots"
// (the pins go). Every ban it logged comes back: each was in the journal
// before its log line.
func TestDaemonKilledRightAfterBansKeepsThem(t *testing.T) {
	w := newDaemonWorld(t)
	w.start()
	const n = 200
	ips := make([]string, n)
	for i := range ips {
		ips[i] = fmt.Sprintf("198.18.%d.%d", 100+i/250, 1+i%250)
		w.noAuth(ips[i], 3)
	}
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(w.out.String(), "msg=banned") < n {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon logged %d bans of %d:\n%s", strings.Count(w.out.String(), "msg=banned"), n, w.out.String())
		}
		time.Sleep(time.Millisecond)
	}
	w.stop(syscall.SIGKILL)
	logged := w.out.String()
	os.RemoveAll(w.root) // what a reboot does to bpffs
	w.start()
	w.waitLog("restored bans from the state file")
	bans := w.banned()
	lost := 0
	for _, ip := range ips {
		if _, ok := bans[ip]; !ok && strings.Contains(logged, "prefix="+ip+"/32") {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d logged bans lost across kill -9 and reboot", lost, n)
	}
}
