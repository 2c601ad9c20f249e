package state

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// The state file's formats over the releases: version 1 files still load,
// and the records added since (allow rules, known-good sources, CrowdSec
// origins) survive a save and load.

// A version 1 file (reason sentences, plain-string origins) written by the
// previous release loads with its codes and evidence, and is saved back as
// version 2.
func TestReadsVersion1(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	v1 := `{"version":1,
"bans":[
{"prefix":"198.18.0.1/32","expires":"2026-11-28T20:00:00Z","origin":"log","reason":"no-auth (rule dovecot-login, 12 events, offence 2)"},
{"prefix":"198.18.0.2/32","expires":"2026-11-28T20:00:00Z","origin":"kernel","reason":"syn-rate (over 20 SYNs per 10s)"},
{"prefix":"198.18.0.3/32","origin":"manual","reason":"bogus","created":"2026-11-28T19:00:00Z"},
{"prefix":"198.18.0.4/32","origin":"log","reason":"no-auth (holding 3 login slots silent for 5s)"}],
"offenders":[
{"prefix":"198.18.0.1/32","bans":["2026-11-28T18:00:00Z"],"until":"2026-11-28T20:00:00Z","reason":"syn-rate"}]}
`
	writeLegacy(t, s, v1)
	st, err := s.load(t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []datapath.Ban{
		{Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth, Detector: "dovecot-login", Events: 12, Offence: 2},
		{Origin: datapath.OriginKernel, Reason: datapath.ReasonSynRate},
		// The kernel held "other" for a word it did not know.
		{Origin: datapath.OriginManual, Reason: datapath.ReasonOther},
		{Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth},
	}
	if len(st.Bans) != len(want) {
		t.Fatalf("bans %+v", st.Bans)
	}
	for i, b := range st.Bans {
		w := want[i]
		if b.Prefix != netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}), 32) || b.Origin != w.Origin ||
			b.Reason != w.Reason || b.Detector != w.Detector || b.Events != w.Events || b.Offence != w.Offence {
			t.Errorf("ban %d: %+v, want %+v", i, b, w)
		}
	}
	if len(st.Offenders) != 1 || st.Offenders[0].Reason != datapath.ReasonSynRate {
		t.Errorf("offenders %+v", st.Offenders)
	}
	// Imported: the journal holds it, the old file is kept renamed, and
	// export writes version 2.
	again, err := s.load(t0)
	if err != nil || len(again.Bans) != len(want) {
		t.Fatalf("after import: %+v, %v", again.Bans, err)
	}
	if _, err := os.Stat(s.LegacyPath() + ".imported"); err != nil {
		t.Errorf("legacy file not kept: %v", err)
	}
	if v, _ := peekVersion(Export(again)); v != Version {
		t.Errorf("exported as version %d", v)
	}
}

// A version 2 file with a reason name the kernel does not know is refused
// (set aside as corrupt), not read as "other".
func TestUnknownReasonIsCorrupt(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	writeLegacy(t, s, `{"version":2,"bans":[{"prefix":"198.18.0.1/32","origin":"log","reason":"bogus"}]}`)
	corruptFileCase(t, s, s.LegacyPath(), t0)
}

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
