//go:build crowdsec

package crowdsec_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBouncer runs two xdpguard hosts against one real CrowdSec 1.4 LAPI:
// cscli decisions reach A's XDP program and leave it again; a slot holder
// A bans becomes an alert that B drops too; and A rides out a LAPI that is
// killed and comes back.
func TestBouncer(t *testing.T) {
	w := newWorld(t)
	l := w.lapi
	keyA, keyB := l.bouncerKey("xdpguard-a"), l.bouncerKey("xdpguard-b")
	l.machine("xdpguard-a", "hostA-password-12345")
	w.a.start(pull(lapiA, keyA) + "  machine_id: xdpguard-a\n  password: hostA-password-12345\n")
	w.b.start(pull(lapiB, keyB))
	w.a.waitLog("crowdsec decisions applied", 30*time.Second)

	for _, src := range []string{badIP, inRange, holderIP, allowedIP} {
		if !w.reaches(src, hostA) {
			t.Fatalf("%s cannot reach A before any decision", src)
		}
	}
	if !w.reaches(bad6, hostA6) {
		t.Fatalf("%s cannot reach A before any decision", bad6)
	}

	t.Run("add and delete", func(t *testing.T) {
		cases := []struct{ name, flag, value, src, dst string }{
			{"ip", "--ip", badIP, badIP, hostA},
			{"range", "--range", badRange, inRange, hostA},
			{"ipv6", "--ip", bad6, bad6, hostA6},
			// The allowlist wins over CrowdSec.
			{"allowlisted", "--ip", allowedIP, "", ""},
		}
		for _, c := range cases {
			l.cscli("decisions", "add", c.flag, c.value, "--duration", "1h", "--reason", "test "+c.name)
			if c.src == "" {
				continue
			}
			took := w.waitReach(c.src, c.dst, false, 10*updateFreq)
			t.Logf("%s %s: dropped %s after cscli decisions add returned (update_frequency %s)", c.name, c.value,
				took.Round(time.Millisecond), updateFreq)
		}
		// Two pulls later, the allowlisted address still passes.
		mark := w.a.logLen()
		w.a.waitLogAfter(mark, "crowdsec decisions applied", 10*updateFreq)
		time.Sleep(2 * updateFreq)
		if !w.reaches(allowedIP, hostA) {
			t.Error("an allowlisted address was banned from a CrowdSec decision")
		}
		st := status(t, w.a)
		origins := map[string]string{}
		for _, b := range st.Bans {
			origins[b.Prefix] = b.Origin
		}
		if origins[badIP+"/32"] != "crowdsec" || origins["2001:db8:70::/64"] != "crowdsec" || origins[badRange] != "crowdsec" {
			t.Errorf("ban origins in status: %v", origins)
		}
		if det := stateDetector(t, w.a, badIP+"/32"); !strings.Contains(det, "test ip") {
			t.Errorf("detector of %s in the state journal: %q, want the scenario", badIP, det)
		}

		for _, c := range cases[:3] {
			l.cscli("decisions", "delete", c.flag, c.value)
			took := w.waitReach(c.src, c.dst, true, 10*updateFreq)
			t.Logf("%s %s: passes %s after cscli decisions delete returned", c.name, c.value, took.Round(time.Millisecond))
		}
	})

	t.Run("slot holder on A reaches CrowdSec and B", func(t *testing.T) {
		if !w.reaches(holderIP, hostB) {
			t.Fatal("the holder cannot reach B before the test")
		}
		w.hold(holderIP, hostA, 3)
		w.a.waitLog("prefix="+holderIP+"/32 origin=log", 30*time.Second)
		took := w.waitReach(holderIP, hostB, false, 30*time.Second)
		t.Logf("slot holder banned on A, dropped on B %s later", took.Round(time.Millisecond))
		alerts := l.cscli("alerts", "list", "-o", "json")
		if !strings.Contains(alerts, "xdpguard/slot-holder") || !strings.Contains(alerts, holderIP) {
			t.Fatalf("no slot-holder alert for %s in cscli alerts list:\n%s", holderIP, alerts)
		}
		// B must not post a CrowdSec decision back, and A keeps its own
		// story for the ban.
		if strings.Count(alerts, `"scenario":"xdpguard/slot-holder"`) > 1 {
			t.Errorf("the slot-holder alert was posted more than once:\n%s", alerts)
		}
		if o := origin(t, w.a, holderIP+"/32"); o != "log" {
			t.Errorf("A's own ban has origin %q after its decision came back", o)
		}
		if o := origin(t, w.b, holderIP+"/32"); o != "crowdsec" {
			t.Errorf("B's ban has origin %q", o)
		}
	})

	t.Run("LAPI killed mid-run", func(t *testing.T) {
		l.cscli("decisions", "add", "--ip", badIP, "--duration", "1h")
		w.waitReach(badIP, hostA, false, 10*updateFreq)
		mark := w.a.logLen()
		l.kill()
		w.a.waitLogAfter(mark, "crowdsec LAPI unreachable", 20*updateFreq)
		// Several failed pulls later: still protecting, still one line.
		time.Sleep(5 * updateFreq)
		if w.reaches(badIP, hostA) {
			t.Fatal("A stopped dropping a CrowdSec ban while the LAPI was down")
		}
		if up, failures := pullUp(t, w.a); up || failures == 0 {
			t.Errorf("status while the LAPI is down: up=%v failures=%d", up, failures)
		}
		l.start()
		l.cscli("decisions", "add", "--ip", lateIP, "--duration", "1h")
		w.waitReach(lateIP, hostA, false, 90*time.Second) // the backoff caps at a minute
		if up, _ := pullUp(t, w.a); !up {
			// The report is written every second; give it two.
			time.Sleep(2 * time.Second)
			if up, _ = pullUp(t, w.a); !up {
				t.Error("status shows the LAPI link down after it came back")
			}
		}
		log := w.a.out.String()[mark:]
		if n := strings.Count(log, "crowdsec LAPI unreachable"); n != 1 {
			t.Errorf("outage logged %d times", n)
		}
		if n := strings.Count(log, "crowdsec LAPI reachable again"); n != 1 {
			t.Errorf("recovery logged %d times", n)
		}
	})
}

// TestBulk measures a 100,000-decision first pull and a 1,000-decision
// delta, applied in the kernel. The figures are logged, not asserted: a
// busy CI machine must not fail on time (make bench-crowdsec reports them).
func TestBulk(t *testing.T) {
	w := newWorld(t)
	l := w.lapi
	key := l.bouncerKey("xdpguard-bulk")
	start := time.Now()
	importDecisions(t, l, "bulk", 100000, 0)
	t.Logf("cscli decisions import of 100,000 took %s", time.Since(start).Round(time.Millisecond))
	w.a.start(pull(lapiA, key))
	line := w.a.waitLog("crowdsec decisions applied", 120*time.Second)
	f := fields(line)
	if f["startup"] != "true" || f["new"] != "100000" {
		t.Fatalf("first pull: %s", line)
	}
	t.Logf("100,000 decisions, first pull: LAPI answer and decode %s, applied in the kernel %s", f["pulled"], f["took"])
	if st := status(t, w.a); len(st.Bans) < 100000 {
		t.Fatalf("%d bans in the kernel, want 100000", len(st.Bans))
	}
	measureFirewallBouncer(t, l, 100000)

	// cscli imports in chunks, so a pull may see part of the 1,000.
	mark := w.a.logLen()
	importDecisions(t, l, "delta", 1000, 100000)
	got, pulls := 0, 0
	var pulled, took time.Duration
	deadline := time.Now().Add(60 * time.Second)
	for got < 1000 {
		// Not fatal: a pull that never comes means the LAPI held some
		// decisions back, which is reported below.
		line, ok := w.a.nextLog(mark, "crowdsec decisions applied", time.Until(deadline))
		if !ok {
			break
		}
		mark += strings.Index(w.a.out.String()[mark:], line) + len(line)
		f = fields(line)
		var n int
		fmt.Sscan(f["new"], &n)
		if n == 0 {
			continue
		}
		p, _ := time.ParseDuration(f["pulled"])
		k, _ := time.ParseDuration(f["took"])
		got, pulls, pulled, took = got+n, pulls+1, pulled+p, took+k
	}
	t.Logf("1,000-decision delta over %d pull(s): LAPI answer and decode %s, applied in the kernel %s", pulls, pulled, took)
	if got == 0 {
		t.Fatal("no new decision applied after the import")
	}
	if got != 1000 {
		// Seen once with CrowdSec 1.4.6 on a machine at load 30: the
		// LAPI's deltas left out some decisions it had imported. The
		// bouncer's hourly startup pull repairs that; here it is
		// reported, not failed, since the LAPI is not under test.
		t.Logf("LAPI deltas delivered %d of the 1,000 new decisions within 60 s", got)
	}
}

// importDecisions imports n Ip decisions numbered from from, in
// 198.18.0.0/15 (131,072 addresses) minus 198.18.60.0-198.18.71.255, where
// the test's own hosts and attackers live.
func importDecisions(t *testing.T, l *lapi, name string, n, from int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("duration,scope,value,reason,type,origin\n")
	for i := from; i < from+n; i++ {
		j := i
		if j >= 60*256 {
			j += 12 * 256
		}
		a := 198<<24 | 18<<16 + j
		fmt.Fprintf(&b, "4h,ip,%d.%d.%d.%d,bulk-%s,ban,cscli-import\n", a>>24, a>>16&255, a>>8&255, a&255, name)
	}
	file := filepath.Join(l.dir, name+".csv")
	must(t, os.WriteFile(file, []byte(b.String()), 0o644))
	t.Logf("cscli decisions import: %s", strings.TrimSpace(l.cscli("decisions", "import", "-i", file)))
}

type statusJSON struct {
	Bans []struct {
		Prefix string `json:"prefix"`
		Origin string `json:"origin"`
	} `json:"bans"`
	CrowdSec *struct {
		Decisions int `json:"decisions"`
		Pull      *struct {
			Up       bool `json:"up"`
			Failures int  `json:"failures"`
		} `json:"pull"`
	} `json:"crowdsec"`
}

// pullUp reads the bouncer's health from `xdpguard status`.
func pullUp(t *testing.T, h *host) (up bool, failures int) {
	t.Helper()
	st := status(t, h)
	if st.CrowdSec == nil || st.CrowdSec.Pull == nil {
		t.Fatal("status shows no crowdsec link")
	}
	return st.CrowdSec.Pull.Up, st.CrowdSec.Pull.Failures
}

func status(t *testing.T, h *host) statusJSON {
	t.Helper()
	out, err := execIn(h, binary, "status", "--json", "--pin-root", h.root, "--state-dir", filepath.Join(h.dir, "state"))
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st statusJSON
	must(t, json.Unmarshal([]byte(out), &st))
	return st
}

func origin(t *testing.T, h *host, prefix string) string {
	for _, b := range status(t, h).Bans {
		if b.Prefix == prefix {
			return b.Origin
		}
	}
	return ""
}

// stateDetector reads what decided a ban (a CrowdSec ban's scenario) from
// the host's state journal, through `xdpguard state export`.
func stateDetector(t *testing.T, h *host, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The journal, read as an operator reads it: a ban's record is
		// synced before the daemon logs it as applied.
		out, err := exec.Command(binary, "state", "export", "--state-dir", filepath.Join(h.dir, "state")).Output()
		var st struct {
			Bans []struct{ Prefix, Detector string } `json:"bans"`
		}
		if err == nil {
			json.Unmarshal(out, &st)
		}
		for _, b := range st.Bans {
			if b.Prefix == prefix {
				return b.Detector
			}
		}
		if time.Now().After(deadline) {
			t.Logf("state export (%v): %s\nlog:\n%s", err, out, h.out.String())
			return ""
		}
		time.Sleep(200 * time.Millisecond)
	}
}
