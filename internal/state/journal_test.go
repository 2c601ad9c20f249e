package state

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// The journal's records replay to what the kernel and the commands did:
// a re-ban replaces (the last deadline wins, as in the kernel), unbans and
// removals delete, an offender record replaces the last.
func TestJournalReplay(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	now := time.Now().Round(0)
	log := datapath.Ban{Expires: now.Add(time.Hour), Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth,
		Detector: "dovecot-login", Events: 5, First: now.Add(-time.Minute), Last: now, Offence: 1}
	manual := datapath.Ban{Origin: datapath.OriginManual, Reason: datapath.ReasonManual, Detector: datapath.DetectorManual, Events: 1}
	commit := func(fill func(b *Batch)) {
		t.Helper()
		var b Batch
		fill(&b)
		if err := s.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
	commit(func(b *Batch) {
		b.BanAll(log, []netip.Prefix{pfx("198.18.0.1/32"), pfx("198.18.0.2/32"), pfx("2001:db8:1::/64")})
		b.BanAll(manual, []netip.Prefix{pfx("198.18.9.0/24")})
		b.Allow(time.Time{}, pfx("198.18.50.0/24"))
		b.Allow(now.Add(time.Minute), pfx("198.18.51.0/24"))
		b.Offender(offence.Offender{Prefix: pfx("198.18.0.1/32"), Bans: []time.Time{now}, Until: now.Add(time.Hour)})
		b.KnownGood(KnownGood{Prefix: pfx("198.18.7.7/32"), LastSeen: now}, KnownGood{Prefix: pfx("198.18.7.8/32"), LastSeen: now})
		b.Cursor("c1")
	})
	shorter := log
	shorter.Expires, shorter.Detector = now.Add(time.Minute), "again"
	commit(func(b *Batch) {
		b.Ban(datapath.Ban{Prefix: pfx("198.18.0.2/32"), Expires: shorter.Expires, Origin: shorter.Origin, Reason: shorter.Reason, Detector: "again"})
		b.Unban(pfx("198.18.0.1/32"), pfx("198.18.200.1/32")) // the second was never banned
		b.RemoveAllow(pfx("198.18.50.0/24"))
		b.Offender(offence.Offender{Prefix: pfx("198.18.0.1/32"), Bans: []time.Time{now.Add(-time.Hour), now}, Until: now.Add(2 * time.Hour)})
		b.ForgetKnownGood(pfx("198.18.7.7/32"))
		b.Cursor("c2")
	})
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range st.Bans {
		got = append(got, b.Prefix.String()+" "+b.Detector)
	}
	if want := "198.18.0.2/32 again,2001:db8:1::/64 dovecot-login,198.18.9.0/24 manual"; strings.Join(got, ",") != want {
		t.Errorf("bans %q, want %q", strings.Join(got, ","), want)
	}
	if b := st.Bans[0]; !b.Expires.Equal(shorter.Expires) {
		t.Errorf("re-ban: expires %v, want the later record's %v", b.Expires, shorter.Expires)
	}
	if b := st.Bans[1]; !b.First.Equal(log.First) || !b.Last.Equal(log.Last) || b.Events != 5 || b.Offence != 1 {
		t.Errorf("evidence lost: %+v", b)
	}
	if len(st.Allow) != 1 || st.Allow[0].Prefix != pfx("198.18.51.0/24") || !st.Allow[0].Expires.Equal(now.Add(time.Minute)) {
		t.Errorf("allow %+v", st.Allow)
	}
	if len(st.Offenders) != 1 || len(st.Offenders[0].Bans) != 2 {
		t.Errorf("offenders %+v", st.Offenders)
	}
	if len(st.KnownGood) != 1 || st.KnownGood[0].Prefix != pfx("198.18.7.8/32") || st.JournalCursor != "c2" {
		t.Errorf("known good %+v, cursor %q", st.KnownGood, st.JournalCursor)
	}

	commit(func(b *Batch) { b.UnbanAll() })
	if st, err = s.Load(); err != nil || len(st.Bans) != 0 || len(st.Allow) != 1 {
		t.Errorf("after unban all: %+v, %v", st, err)
	}
	// Compaction keeps the state and shrinks the file.
	before := s.Size()
	if _, err := s.Compact(nil); err != nil {
		t.Fatal(err)
	}
	again, err := s.Load()
	if err != nil || s.Size() >= before {
		t.Fatalf("compact: %v, %d -> %d bytes", err, before, s.Size())
	}
	sameState(t, again, st)
}

// A torn record in the middle (a writer killed mid-append, then another
// appended after it) costs only itself; the next records are read.
func TestTornRecordThenAppend(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	ban := func(p string) *Batch {
		var b Batch
		b.Ban(datapath.Ban{Prefix: pfx(p), Origin: datapath.OriginManual})
		return &b
	}
	if err := s.Commit(ban("198.18.0.1/32")); err != nil {
		t.Fatal(err)
	}
	// Half of a record, as a killed writer leaves it.
	torn := ban("198.18.0.2/32").e.b
	f, _ := os.OpenFile(s.Path(), os.O_WRONLY|os.O_APPEND, 0)
	f.Write(torn[:len(torn)/2])
	f.Close()
	if err := s.Commit(ban("198.18.0.3/32")); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if !errors.Is(err, ErrDropped) || !strings.Contains(err.Error(), "bytes at byte") {
		t.Fatalf("err = %v, want ErrDropped naming the bytes", err)
	}
	if len(st.Bans) != 2 || st.Bans[0].Prefix != pfx("198.18.0.1/32") || st.Bans[1].Prefix != pfx("198.18.0.3/32") {
		t.Errorf("bans %+v", st.Bans)
	}
	// A flipped byte inside a record fails its CRC: dropped the same way.
	data, _ := os.ReadFile(s.Path())
	data[len(journalHeader)+frameLen+3] ^= 0xff
	os.WriteFile(s.Path(), data, 0o600)
	if st, err = s.Load(); !errors.Is(err, ErrDropped) || len(st.Bans) != 1 {
		t.Errorf("flipped byte: %+v, %v", st.Bans, err)
	}
	// Compaction leaves a clean journal.
	if _, err := s.Compact(nil); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Load(); err != nil || len(st.Bans) != 1 {
		t.Errorf("after compaction: %+v, %v", st.Bans, err)
	}
}

// A journal whose creation a crash cut inside the header holds nothing
// reported; the next commit starts it again instead of appending after it.
func TestCutHeaderRestarts(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	os.WriteFile(s.Path(), []byte(journalHeader[:7]), 0o600)
	if _, err := s.Load(); !errors.Is(err, ErrDropped) {
		t.Fatalf("cut header: %v", err)
	}
	var b Batch
	b.Ban(datapath.Ban{Prefix: pfx("198.18.0.1/32"), Origin: datapath.OriginManual})
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Load(); err != nil || len(st.Bans) != 1 {
		t.Fatalf("%+v, %v", st.Bans, err)
	}
}

// A legacy state.json is imported by the first commit too (a CLI command
// before the daemon's first start), not shadowed by a new journal.
func TestCommitImportsLegacyFile(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	os.WriteFile(s.LegacyPath(), Export(sample()), 0o600)
	var b Batch
	b.Ban(datapath.Ban{Prefix: pfx("198.18.99.1/32"), Origin: datapath.OriginManual})
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	// The sample's dated bans have expired by now; the permanent one stays.
	if err != nil || len(st.Bans) != 2 || st.Bans[0].Prefix != pfx("203.0.113.0/24") || st.Bans[1].Prefix != pfx("198.18.99.1/32") ||
		len(st.Offenders) != 2 || st.JournalCursor != sample().JournalCursor {
		t.Fatalf("%+v, %v", st, err)
	}
	if _, err := os.Stat(s.LegacyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("legacy file still in place: %v", err)
	}
}

// Records that decode but were never written by this version (an unknown
// type, an unknown origin) are dropped whole, never half-applied.
func TestInvalidRecordDroppedWhole(t *testing.T) {
	var b Batch
	b.BanAll(datapath.Ban{Origin: datapath.OriginManual}, []netip.Prefix{pfx("198.18.0.1/32"), pfx("198.18.0.2/32")})
	rec := b.e.b
	// Host bits set in the second prefix (198.18.0.2/24): the CRC is
	// recomputed, so only the content check can catch it.
	rec[len(rec)-5] = 24
	var e enc
	e.b = append(e.b, rec...)
	e.end(0)
	data := append([]byte(journalHeader), e.b...)
	st, err := readJournal(data)
	if !errors.Is(err, ErrDropped) || len(st.Bans) != 0 {
		t.Fatalf("%+v, %v", st.Bans, err)
	}
}

func FuzzReadJournal(f *testing.F) {
	f.Add(snapshot(sample()))
	var b Batch
	b.Unban(pfx("198.18.0.1/32"))
	b.UnbanAll()
	b.RemoveAllow(pfx("2001:db8::/32"))
	b.ForgetKnownGood(pfx("198.18.0.0/16"))
	f.Add(append([]byte(journalHeader), b.e.b...))
	f.Add([]byte(journalHeader + recordMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := readJournal(data)
		if err != nil && !errors.Is(err, ErrDropped) {
			return
		}
		if err := st.check(); err != nil {
			t.Fatalf("replay accepted a state check refuses: %v", err)
		}
		// What replays, compacts to a journal that replays the same.
		again, err := readJournal(snapshot(st))
		if err != nil {
			t.Fatalf("compacted journal: %v", err)
		}
		if len(again.Bans) != len(st.Bans) || len(again.Allow) != len(st.Allow) || len(again.Offenders) != len(st.Offenders) ||
			len(again.KnownGood) != len(st.KnownGood) || again.JournalCursor != st.JournalCursor {
			t.Fatalf("compaction changed the state:\n%+v\n%+v", st, again)
		}
		for i := range st.Bans {
			a, b := st.Bans[i], again.Bans[i]
			if a.Prefix != b.Prefix || !a.Expires.Equal(b.Expires) || a.Origin != b.Origin || a.Reason != b.Reason ||
				a.Detector != b.Detector || a.Events != b.Events || a.Offence != b.Offence || a.CIDR != b.CIDR {
				t.Fatalf("ban %d: %+v != %+v", i, a, b)
			}
		}
	})
}

// The replay's shortcuts (runs of ascending records kept as bytes, the map
// of later changes, the lists) agree with a plain map of the same records
// in random orders, families and overlaps.
func TestReplayMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		var b Batch
		model := map[netip.Prefix]string{}
		pick := func() netip.Prefix {
			i := rng.IntN(64)
			if rng.IntN(4) == 0 {
				return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(i)}), 64)
			}
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), 32)
		}
		for op := range 1 + rng.IntN(8) {
			switch rng.IntN(6) {
			case 0:
				ps := []netip.Prefix{pick()}
				b.Unban(ps...)
				delete(model, ps[0])
			case 1:
				if rng.IntN(4) == 0 {
					b.UnbanAll()
					clear(model)
				}
			default:
				det := fmt.Sprintf("r%d", op)
				seen := map[netip.Prefix]bool{}
				var ps []netip.Prefix
				for range 1 + rng.IntN(20) {
					if p := pick(); !seen[p] {
						seen[p] = true
						ps = append(ps, p)
					}
				}
				if rng.IntN(2) == 0 { // sorted, as compaction and many lists write
					slices.SortFunc(ps, func(a, b netip.Prefix) int { ka, kb := keyOf(a), keyOf(b); return bytes.Compare(ka[:], kb[:]) })
				}
				b.BanAll(datapath.Ban{Origin: datapath.OriginManual, Detector: det}, ps)
				for _, p := range ps {
					model[p] = det
				}
			}
		}
		r, err := replayJournal(append([]byte(journalHeader), b.e.b...))
		if err != nil {
			t.Fatal(err)
		}
		got := map[netip.Prefix]string{}
		for _, x := range r.bans.list() {
			if _, dup := got[x.Prefix]; dup {
				t.Fatalf("round %d: %s listed twice", round, x.Prefix)
			}
			got[x.Prefix] = x.Detector
		}
		fromLists := map[netip.Prefix]string{}
		for _, l := range r.bans.lists(time.Now()) {
			for _, p := range l.Prefixes {
				fromLists[p] = l.Like.Detector
			}
		}
		if !maps.Equal(got, model) || !maps.Equal(fromLists, model) {
			t.Fatalf("round %d:\n list  %v\n lists %v\n model %v", round, got, fromLists, model)
		}
	}
}
