package state

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/loader"
)

// A CrowdSec ban keeps its origin, and its scenario as the detector.
func TestCrowdsecOrigin(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	b := loader.Ban{Prefix: netip.MustParsePrefix("198.18.7.0/24"), Expires: time.Now().Add(time.Hour).Round(0).UTC(),
		Origin: loader.OriginCrowdsec, Reason: loader.ReasonBlocklist, CIDR: true, Detector: "crowdsecurity/ssh-bf", Events: 1}
	if err := s.Save(State{Version: Version, Bans: []loader.Ban{b}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Bans) != 1 || got.Bans[0] != b {
		t.Fatalf("got %+v, want %+v", got.Bans, b)
	}
}
