package datapath

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// Discard removes pins only when this Guard created them: adopted pins hold
// an earlier run's bans.
func TestDiscard(t *testing.T) {
	root := filepath.Join(testutil.PinRoot(t, "discard"), "pins")
	opts := Options{PinRoot: root, MaxBans: 1 << 12, MaxTracked: 1 << 10, MaxCIDR: 1 << 8}

	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("created pins remain after Discard: %v", err)
	}

	first, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("198.18.80.1/32")
	if err := first.Ban(p, time.Hour, OriginManual, ReasonManual); err != nil {
		t.Fatal(err)
	}
	first.Close()
	adopted, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := adopted.Discard(); err != nil {
		t.Fatal(err)
	}
	g, err = Open(root)
	if err != nil {
		t.Fatalf("adopted pins removed by Discard: %v", err)
	}
	defer g.Close()
	if bans, err := g.Bans(); err != nil || len(bans) != 1 || bans[0].Prefix != p {
		t.Errorf("bans after discarding an adopting Guard: %v, %v", bans, err)
	}
}

func TestParseReason(t *testing.T) {
	for _, r := range []Reason{ReasonSynRate, ReasonNoAuth, ReasonAuthFailed, ReasonProbe, ReasonConnLimit, ReasonManual, ReasonBlocklist, ReasonOther} {
		if got, err := ParseReason(r.String()); err != nil || got != r {
			t.Errorf("ParseReason(%q) = %v, %v", r.String(), got, err)
		}
	}
	for _, bad := range []string{"bogus", "none", "", "Manual"} {
		if _, err := ParseReason(bad); err == nil {
			t.Errorf("ParseReason(%q) accepted", bad)
		}
	}
}
