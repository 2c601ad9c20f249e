package state

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// A CrowdSec ban keeps its origin, and its scenario as the detector.
func TestCrowdsecOrigin(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	b := datapath.Ban{Prefix: netip.MustParsePrefix("198.18.7.0/24"), Expires: time.Now().Add(time.Hour).Round(0).UTC(),
		Origin: datapath.OriginCrowdsec, Reason: datapath.ReasonBlocklist, CIDR: true, Detector: "crowdsecurity/ssh-bf", Events: 1}
	if err := s.Save(State{Version: Version, Bans: []datapath.Ban{b}}); err != nil {
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
