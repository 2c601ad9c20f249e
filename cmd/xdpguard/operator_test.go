package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

func banPrefixes(r statusReport) []string {
	var out []string
	for _, b := range r.Bans {
		out = append(out, b.Prefix.String())
	}
	slices.Sort(out)
	return out
}

func TestGuardRails(t *testing.T) {
	root := pinRoot(t)
	ns, peer := testutil.New(t, "oprails"), testutil.New(t, "oprailp")
	testutil.Veth(t, ns, "xg-opa", []netip.Prefix{netip.MustParsePrefix("198.18.70.1/24")}, peer, "xg-opb", nil)
	if _, stderr, code := xdpguard(t, ns, "attach", "--iface", "xg-opa", "--pin-root", root); code != 0 {
		t.Fatalf("attach: %s", stderr)
	}
	defer xdpguard(t, ns, "detach", "--pin-root", root)
	if _, stderr, code := xdpguard(t, ns, "allow", "198.18.50.0/24", "--pin-root", root); code != 0 {
		t.Fatalf("allow: %s", stderr)
	}

	list := filepath.Join(t.TempDir(), "list.txt")
	os.WriteFile(list, []byte("203.0.113.1\n203.0.113.2\n198.18.70.0/24\n203.0.113.3\n"), 0o644)
	ssh := []string{"SSH_CONNECTION=198.18.99.9 52044 198.18.70.1 22"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ban", "0.0.0.0/0", "--for", "10s"}, "0.0.0.0/0 is wider than /8 (guard_rails.widest_ban_v4)"},
		{[]string{"ban", "2001:db8::/31"}, "wider than /32"},
		{[]string{"ban", "198.18.70.0/24"}, "198.18.70.0/24 covers this host's address 198.18.70.1"},
		{[]string{"ban", "198.18.48.0/20"}, "198.18.48.0/20 covers the allowed prefix 198.18.50.0/24"},
		{[]string{"ban", "198.18.99.9"}, "covers 198.18.99.9, the SSH client of this session"},
		{[]string{"ban", "--from", list}, "198.18.70.0/24 covers this host's address"},
	} {
		_, stderr, code := xdpguardEnv(t, ns, ssh, append(tc.args, "--pin-root", root)...)
		if code != 2 || !strings.Contains(stderr, "ban refused, nothing banned: ") || !strings.Contains(stderr, tc.want) ||
			strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line with %q", tc.args, code, stderr, tc.want)
		}
		if bans := banPrefixes(status(t, ns, root)); len(bans) != 0 {
			t.Fatalf("%v: refused, yet bans %v are in the kernel", tc.args, bans)
		}
	}

	// Shadowed by the allow rule: banned, and said so.
	_, stderr, code := xdpguardEnv(t, ns, ssh, "ban", "198.18.50.7", "--pin-root", root)
	if code != 0 || !strings.Contains(stderr, "198.18.50.7/32 is inside the allowed prefix 198.18.50.0/24") {
		t.Errorf("shadowed ban: exit %d, stderr %q", code, stderr)
	}
	// --force passes the rails and says what it overrode.
	_, stderr, code = xdpguardEnv(t, ns, ssh, "ban", "10.0.0.0/7", "--force", "--pin-root", root)
	if code != 0 || !strings.Contains(stderr, "banned despite the guard rails (--force): 10.0.0.0/7 is wider than /8") {
		t.Errorf("forced ban: exit %d, stderr %q", code, stderr)
	}
	if got, want := banPrefixes(status(t, ns, root)), []string{"10.0.0.0/7", "198.18.50.7/32"}; !slices.Equal(got, want) {
		t.Errorf("bans %v, want %v", got, want)
	}
	// The two addresses that mark the IPv4 table's free slots: refused
	// even with --force, and nothing of the list is banned.
	os.WriteFile(list, []byte("203.0.113.9\n255.255.255.255\n"), 0o644)
	_, stderr, code = xdpguardEnv(t, ns, ssh, "ban", "--from", list, "--force", "--pin-root", root)
	if code != 2 || !strings.Contains(stderr, "ban 255.255.255.255: 0.0.0.0 and 255.255.255.255 are never a TCP peer") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("ban of 255.255.255.255: exit %d, stderr %q; want 2 and one line naming it", code, stderr)
	}
	if got, want := banPrefixes(status(t, ns, root)), []string{"10.0.0.0/7", "198.18.50.7/32"}; !slices.Equal(got, want) {
		t.Errorf("after the refused list: bans %v, want %v", got, want)
	}
}

// A run that fails leaves no pins behind: before, the 11 maps (40 MiB of
// ban table) stayed pinned and a later `ban` said "banned" into them.
func TestFailedRunLeavesNothing(t *testing.T) {
	root := pinRoot(t)
	ns := testutil.New(t, "opfail")
	dir := t.TempDir()
	_, stderr, code := xdpguard(t, ns, "run", "--iface", "xg-missing0", "--pin-root", root, "--state-dir", dir, "--log", filepath.Join(dir, "maillog"))
	if code != 2 || !strings.Contains(stderr, "xg-missing0") {
		t.Fatalf("run --iface xg-missing0: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(root)
		t.Fatalf("the failed run left %s behind (%d entries, %v)", root, len(ents), err)
	}
	if _, stderr, code := xdpguard(t, ns, "ban", "198.18.3.3", "--pin-root", root); code != 2 || !strings.Contains(stderr, "no xdpguard state pinned") {
		t.Errorf("ban after the failed run: exit %d, %q", code, stderr)
	}
}

// Maps pinned with no program attached: a ban is stored and drops nothing,
// and the operator is told.
func TestBanWarnsWhenNothingAttached(t *testing.T) {
	root := pinRoot(t)
	g, err := datapath.New(datapath.Options{PinRoot: root}) // maps only, attached nowhere
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	for _, args := range [][]string{{"ban", "198.18.3.3"}, {"unban", "198.18.3.3"}} {
		stdout, stderr, code := runIn(t, "", append(args, "--pin-root", root)...)
		if code != 0 || !strings.Contains(stderr, "warning: no interface is attached under "+root) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want a warning that nothing is attached", args, code, stdout, stderr)
		}
	}
}

// Allow rules and CIDR bans live in the state like bans: a restart after
// `detach --keep-state` brings them back; a plain detach clears them.
func TestStateKeepsAllowAndCIDRRules(t *testing.T) {
	w := newDaemonWorld(t)
	w.start()
	cli := func(args ...string) (string, string) {
		t.Helper()
		stdout, stderr, code := xdpguardEnv(t, w.srv, w.env(), append(args, "--config", w.cfgFile)...)
		if code != 0 {
			t.Fatalf("%v: exit %d, %s", args, code, stderr)
		}
		return stdout, stderr
	}
	cli("allow", "198.18.61.0/24")
	if _, stderr := cli("ban", "198.18.61.7"); !strings.Contains(stderr, "inside the allowed prefix 198.18.61.0/24") {
		t.Errorf("shadowed ban not reported: %q", stderr)
	}
	cli("ban", "198.18.62.0/24") // wider than the /32 granularity: a CIDR rule
	w.stop(syscall.SIGTERM)

	stdout, _ := cli("detach", "--keep-state")
	if !strings.Contains(stdout, "the next run restores 2 bans and 1 allow rules") {
		t.Errorf("detach --keep-state said %q", stdout)
	}
	w.start()
	st := status(t, w.srv, w.root)
	var allow []string
	for _, a := range st.Allow {
		allow = append(allow, a.Prefix.String())
	}
	slices.Sort(allow)
	if want := []string{"198.18.60.5/32", "198.18.61.0/24"}; !slices.Equal(allow, want) {
		t.Errorf("after restart: allow rules %v, want %v (the file's and the one added)", allow, want)
	}
	if got, want := banPrefixes(st), []string{"198.18.61.7/32", "198.18.62.0/24"}; !slices.Equal(got, want) {
		t.Errorf("after restart: bans %v, want %v", got, want)
	}
	w.stop(syscall.SIGTERM)

	stdout, _ = cli("detach")
	if !strings.Contains(stdout, fmt.Sprintf("cleared %s", filepath.Join(w.dir, "state", "state.journal"))) {
		t.Errorf("detach said %q", stdout)
	}
	w.start()
	st = status(t, w.srv, w.root)
	if len(st.Allow) != 1 || len(st.Bans) != 0 {
		t.Errorf("after detach and run: allow %v, bans %v; want only the file's allow rule", st.Allow, st.Bans)
	}
}
