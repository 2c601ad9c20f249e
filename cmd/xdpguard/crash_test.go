package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/state"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// `xdpguard ban --from` killed with SIGKILL at random moments: when it
// said "banned", every address is in the state journal; whatever the
// moment, the journal loads (a torn record dropped, never refused).
func TestBanKilledMidImport(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	root := pinRoot(t)
	ns := testutil.New(t, "stkill")
	testutil.Veth(t, ns, "xg-stk0", nil, ns, "xg-stk1", nil)
	if _, stderr, code := xdpguard(t, ns, "attach", "--iface", "xg-stk0", "--pin-root", root); code != 0 {
		t.Fatalf("attach: %s", stderr)
	}
	t.Cleanup(func() { xdpguard(t, ns, "detach", "--pin-root", root) })
	dir := filepath.Join(t.TempDir(), "state")
	const n = 100_000
	var sb strings.Builder
	for i := range n {
		sb.WriteString(benchAddr(i).String())
		sb.WriteByte('\n')
	}
	list := filepath.Join(t.TempDir(), "list.txt")
	os.WriteFile(list, []byte(sb.String()), 0o644)

	// How long a whole import takes here, to aim the kills inside it.
	start := time.Now()
	if _, stderr, code := xdpguard(t, ns, "ban", "--from", list, "--pin-root", root, "--state-dir", dir); code != 0 {
		t.Fatalf("ban: %s", stderr)
	}
	whole := time.Since(start)
	reported := 0
	for round := range 10 {
		if _, stderr, code := xdpguard(t, ns, "unban", "--all", "--pin-root", root, "--state-dir", dir); code != 0 {
			t.Fatalf("unban: %s", stderr)
		}
		var out strings.Builder
		cmd := exec.Command("nsenter", "--net="+ns.Path(), binary, "ban", "--from", list, "--pin-root", root, "--state-dir", dir)
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(whole))))
		cmd.Process.Kill()
		cmd.Wait()
		st, err := state.Store{Dir: dir}.Read()
		if err != nil && !errors.Is(err, state.ErrDropped) {
			t.Fatalf("round %d: the journal does not load: %v", round, err)
		}
		said := strings.Contains(out.String(), "banned")
		switch {
		case said && len(st.Bans) != n:
			t.Fatalf("round %d: ban said %q, the journal holds %d of %d bans", round, out.String(), len(st.Bans), n)
		case !said && len(st.Bans) != 0 && len(st.Bans) != n:
			t.Fatalf("round %d: a half-written import: %d of %d bans", round, len(st.Bans), n)
		}
		if said {
			reported++
		}
		t.Logf("round %d: reported %v, %d bans in the journal, %v", round, said, len(st.Bans), err)
	}
	t.Logf("%d of 10 imports reported before the kill (a whole one takes %v)", reported, whole)
}

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
