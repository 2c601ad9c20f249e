package state

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A file written before allow rules were kept is still version 1 and
// reads as no allow rules; expired allow rules are dropped like bans.
func TestAllowRules(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	old := `{"version":1,"bans":[],"offenders":[]}`
	writeLegacy(t, s, old)
	st, err := s.load(t0)
	if err != nil || st.Allow == nil || len(st.Allow) != 0 {
		t.Fatalf("old file: %+v, %v", st, err)
	}

	st.Allow = []Allow{
		{Prefix: netip.MustParsePrefix("198.18.50.0/24")},
		{Prefix: netip.MustParsePrefix("198.18.51.0/24"), Expires: t0.Add(time.Minute)},
		{Prefix: netip.MustParsePrefix("198.18.52.0/24"), Expires: t0.Add(-time.Minute)},
	}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	got, err := s.load(t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Allow) != 2 || got.Allow[0].Prefix != st.Allow[0].Prefix || got.Allow[1].Prefix != st.Allow[1].Prefix {
		t.Errorf("after load at t0: %+v, want the two unexpired rules", got.Allow)
	}

	bad := `{"version":2,"bans":[],"allow":[{"prefix":"198.18.50.1/24"}],"offenders":[]}`
	if _, err := Decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), "allow[0]") {
		t.Errorf("allow rule with host bits set: %v, want an error naming allow[0]", err)
	}
	st.Allow = []Allow{{Prefix: netip.MustParsePrefix("198.18.50.1/24")}}
	if err := s.Save(st); err == nil {
		t.Error("Save wrote an allow rule Load would refuse")
	}
}
