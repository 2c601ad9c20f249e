package state

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestKnownGoodRoundTrip(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	want := sample()
	want.KnownGood = []KnownGood{
		{Prefix: netip.MustParsePrefix("198.18.7.7/32"), LastSeen: t0},
		{Prefix: netip.MustParsePrefix("2001:db8:7::/64"), LastSeen: t0.Add(-29 * 24 * time.Hour)},
	}
	got := saveLoad(t, s, want)
	if len(got.KnownGood) != 2 {
		t.Fatalf("known_good: %+v", got.KnownGood)
	}
	for i, k := range got.KnownGood {
		if k.Prefix != want.KnownGood[i].Prefix || !k.LastSeen.Equal(want.KnownGood[i].LastSeen) {
			t.Errorf("known_good[%d] = %+v, want %+v", i, k, want.KnownGood[i])
		}
	}
	// The hand-written encoder agrees with encoding/json.
	st := want
	st.Version = Version
	encodesLikeJSON(t, st)
}

// A file without the key (every file written before known-good sources
// existed) still loads; one with a bad record is set aside as a whole.
func TestKnownGoodOldAndBadFiles(t *testing.T) {
	st, err := Decode([]byte(`{"version":1,"bans":[],"offenders":[]}`))
	if err != nil || len(st.KnownGood) != 0 {
		t.Fatalf("old file: %+v, %v", st, err)
	}
	s := Store{Dir: t.TempDir()}
	bad := `{"version":2,"bans":[],"offenders":[],"known_good":[{"prefix":"198.18.7.7/24","last_seen":"2026-11-28T19:00:00Z"}]}`
	writeLegacy(t, s, bad)
	_, err = s.Load()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "known_good[0]") {
		t.Fatalf("bad known_good record: %v", err)
	}
}
