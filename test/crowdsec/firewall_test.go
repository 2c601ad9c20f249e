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

	"github.com/xdpguard/xdpguard/internal/testutil"
)

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
	out := &testutil.Buffer{}
	cmd := exec.Command("nsenter", "--net="+l.ns.Path(), bin, "-c", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	must(t, cmd.Start())
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	// It logs no progress: count the elements of its nftables sets. A
	// minute bounds the wait (the issue reports about 40 decisions/s).
	deadline := start.Add(time.Minute)
	for {
		got := nftElements(t, l)
		if got >= want {
			t.Logf("firewall bouncer (nftables): %d decisions in its sets %s after its start (its first pull included)",
				got, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Logf("firewall bouncer (nftables): %d of %d decisions in its sets after %s (%.0f/s); its log:\n%s", got, want,
				time.Since(start).Round(time.Second), float64(got)/time.Since(start).Seconds(), tail(out.String(), 1000))
			return
		}
		time.Sleep(time.Second)
	}
}

// nftElements counts the elements of every nftables set in the LAPI's
// namespace.
func nftElements(t *testing.T, l *lapi) int {
	out, err := exec.Command("nsenter", "--net="+l.ns.Path(), "nft", "-j", "list", "ruleset").Output()
	if err != nil {
		return 0
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if json.Unmarshal(out, &doc) != nil {
		return 0
	}
	n := 0
	for _, o := range doc.Nftables {
		if o.Set != nil {
			n += len(o.Set.Elem)
		}
	}
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
