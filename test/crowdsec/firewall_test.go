//go:build crowdsec

package crowdsec_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fwAdded matches the firewall bouncer's report of a batch it applied.
var fwAdded = regexp.MustCompile(`(\d+) (?:decisions?|ips?|\w+) added`)

// measureFirewallBouncer runs CrowdSec's own firewall bouncer, in nftables
// mode, against the same LAPI and set as xdpguard just pulled, inside the
// LAPI's namespace (its nftables tables stay there), and logs how long it
// took to apply want decisions. FIREWALL_BOUNCER names its binary
// (make test-crowdsec extracts it from Debian 12's package without
// running the package's scripts, which would register with the host's
// CrowdSec); without it the measurement is skipped, and says so.
func measureFirewallBouncer(t *testing.T, l *lapi, want int) {
	bin := os.Getenv("FIREWALL_BOUNCER")
	if bin == "" {
		t.Log("FIREWALL_BOUNCER not set: the firewall bouncer is not measured")
		return
	}
	key := l.bouncerKey("firewall-bouncer")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "fw.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`mode: nftables
pid_dir: %s
update_frequency: 1s
daemonize: false
log_mode: stdout
log_level: info
api_url: http://127.0.0.1:%d/
api_key: %s
disable_ipv6: false
deny_action: DROP
supported_decisions_types: [ban]
nftables:
  ipv4: {enabled: true, set-only: false, table: crowdsec, chain: crowdsec-chain}
  ipv6: {enabled: true, set-only: false, table: crowdsec6, chain: crowdsec6-chain}
prometheus: {enabled: false}
`, dir, lapiPort, key)), 0o644))
	out := &syncBuffer{}
	cmd := exec.Command("nsenter", "--net="+l.ns.Path(), bin, "-c", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	must(t, cmd.Start())
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	deadline := start.Add(5 * time.Minute)
	for {
		got := 0
		for _, m := range fwAdded.FindAllStringSubmatch(out.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			got += n
		}
		if got >= want {
			t.Logf("firewall bouncer (nftables): %d decisions applied %s after its start (its first pull included)",
				got, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Logf("firewall bouncer (nftables): %d of %d decisions after %s; its log:\n%s", got, want,
				time.Since(start).Round(time.Second), tail(out.String(), 2000))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
