package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpguard/xdpguard/internal/state"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// A list the kernel cannot take whole (more bans than the table holds)
// fails with one line and exit 2, and changes nothing: the kernel keeps
// the ban it had, and the journal record, encoded while the kernel was
// written, is never appended.
func TestBanListTooBigChangesNothing(t *testing.T) {
	root := pinRoot(t)
	ns := testutil.New(t, "stfull")
	testutil.Veth(t, ns, "xg-stf0", nil, ns, "xg-stf1", nil)
	dir := t.TempDir()
	conf := filepath.Join(dir, "xdpguard.yaml")
	if err := os.WriteFile(conf, []byte("kernel: {max_bans: 64}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	args := func(a ...string) []string {
		return append(a, "--config", conf, "--pin-root", root, "--state-dir", stateDir)
	}
	if _, stderr, code := xdpguard(t, ns, args("attach", "--iface", "xg-stf0")...); code != 0 {
		t.Fatalf("attach: %s", stderr)
	}
	t.Cleanup(func() { xdpguard(t, ns, args("detach")...) })
	if _, stderr, code := xdpguard(t, ns, args("ban", "198.18.0.1", "--for", "1h")...); code != 0 {
		t.Fatalf("ban: %s", stderr)
	}
	var sb strings.Builder
	for i := range 1200 { // more than the 64 buckets of 14 slots hold
		fmt.Fprintf(&sb, "198.18.%d.%d\n", 1+i>>8, i&0xff)
	}
	sb.WriteString("198.18.0.1\n")
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := xdpguard(t, ns, args("ban", "--from", list, "--for", "2h")...)
	if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "max_bans") {
		t.Fatalf("a list bigger than the table: exit %d, %q; want exit 2 and one line naming max_bans", code, stderr)
	}
	if bans := status(t, ns, root).Bans; len(bans) != 1 || bans[0].Prefix.String() != "198.18.0.1/32" {
		t.Errorf("the kernel after the failed list: %d bans, want only 198.18.0.1/32", len(bans))
	}
	st, err := state.Store{Dir: stateDir}.Read()
	if err != nil || len(st.Bans) != 1 || st.Bans[0].Prefix.String() != "198.18.0.1/32" {
		t.Errorf("the journal after the failed list: %d bans, %v; want only 198.18.0.1/32", len(st.Bans), err)
	}
}
