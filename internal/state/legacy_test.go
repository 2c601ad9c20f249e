package state

import (
	"net/netip"
	"os"
	"testing"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

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

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
