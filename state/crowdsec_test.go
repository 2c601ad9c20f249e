package state

import (
	"net/netip"
	"testing"
	"time"
)

// A CrowdSec ban keeps its origin and the reason naming its scenario.
func TestCrowdsecOrigin(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	b := Ban{Prefix: netip.MustParsePrefix("198.18.7.0/24"), Expires: time.Now().Add(time.Hour).Round(0).UTC(), Origin: OriginCrowdsec,
		Reason: `blocklist (crowdsec scenario "crowdsecurity/ssh-bf", origin CAPI)`}
	if err := s.Save(State{Version: Version, Bans: []Ban{b}}); err != nil {
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
