package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

var t0 = time.Date(2026, 11, 28, 19, 0, 0, 123456789, time.UTC)

func sample() State {
	return State{
		Bans: []datapath.Ban{
			{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Expires: t0.Add(time.Hour), Origin: datapath.OriginLog,
				Reason: datapath.ReasonNoAuth, Detector: "dovecot-login", Events: 10, First: t0.Add(-time.Minute), Last: t0, Offence: 2},
			{Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Expires: t0.Add(10 * time.Minute), Origin: datapath.OriginKernel,
				Reason: datapath.ReasonSynRate, Detector: datapath.DetectorSYNRate, Events: 21, Last: t0.Add(-time.Second), Offence: 1},
			// A detector (a custom rule's name) with JSON-looking text and
			// a newline must survive.
			{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Origin: datapath.OriginManual, Reason: datapath.ReasonBlocklist,
				CIDR: true, Detector: "drop},{\"x\n\""},
		},
		Allow: []Allow{
			{Prefix: netip.MustParsePrefix("198.18.50.0/24")},
			{Prefix: netip.MustParsePrefix("2001:db8:50::/48"), Expires: t0.Add(time.Hour)},
		},
		Offenders: []offence.Offender{
			{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Bans: []time.Time{t0.Add(-48 * time.Hour), t0},
				Until: t0.Add(time.Hour), Reason: datapath.ReasonNoAuth, Detector: datapath.DetectorSlotHolders},
			{Prefix: netip.MustParsePrefix("2001:db8:9::/64"), Bans: []time.Time{t0}},
		},
		JournalCursor: "s=777017ad7bd54fc993a52bd8750bd93b;i=163;b=151c3502e8b0413f9df451dcaf6cc65d;m=40fc9fb3;t=6619dfcd203cb;x=e5568cdf3a8067e0",
	}
}

// sameState compares with time.Time.Equal, since decoded times carry a
// different *Location than the originals, and bans in prefix order, in
// which compaction writes them.
func sameState(t *testing.T, got, want State) {
	t.Helper()
	got.Bans, want.Bans = byPrefix(got.Bans), byPrefix(want.Bans)
	if got.Version != Version || len(got.Bans) != len(want.Bans) || len(got.Allow) != len(want.Allow) ||
		len(got.Offenders) != len(want.Offenders) || got.JournalCursor != want.JournalCursor {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for i, g := range got.Bans {
		w := want.Bans[i]
		if g.Prefix != w.Prefix || !g.Expires.Equal(w.Expires) || g.Origin != w.Origin || g.Reason != w.Reason ||
			g.CIDR != w.CIDR || g.Detector != w.Detector || g.Events != w.Events || !g.First.Equal(w.First) ||
			!g.Last.Equal(w.Last) || g.Offence != w.Offence {
			t.Errorf("ban %d: got %+v, want %+v", i, g, w)
		}
	}
	for i, g := range got.Allow {
		if w := want.Allow[i]; g.Prefix != w.Prefix || !g.Expires.Equal(w.Expires) {
			t.Errorf("allow %d: got %+v, want %+v", i, g, w)
		}
	}
	for i, g := range got.Offenders {
		w := want.Offenders[i]
		if g.Prefix != w.Prefix || len(g.Bans) != len(w.Bans) || !g.Until.Equal(w.Until) || g.Reason != w.Reason ||
			g.Detector != w.Detector {
			t.Errorf("offender %d: got %+v, want %+v", i, g, w)
			continue
		}
		for j := range g.Bans {
			if !g.Bans[j].Equal(w.Bans[j]) {
				t.Errorf("offender %d ban %d: got %v, want %v", i, j, g.Bans[j], w.Bans[j])
			}
		}
	}
}

func byPrefix(bans []datapath.Ban) []datapath.Ban {
	bans = slices.Clone(bans)
	slices.SortStableFunc(bans, func(a, b datapath.Ban) int {
		ka, kb := keyOf(a.Prefix), keyOf(b.Prefix)
		return bytes.Compare(ka[:], kb[:])
	})
	return bans
}

// loadsAs fails the test unless s loads, at t0, as want; it returns what
// it loaded.
func loadsAs(t *testing.T, s Store, want State) State {
	t.Helper()
	got, err := s.load(t0)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, want)
	return got
}

// saveLoad saves st to s and checks that it loads back the same.
func saveLoad(t *testing.T, s Store, st State) State {
	t.Helper()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	return loadsAs(t, s, st)
}

func TestRoundTrip(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "sub", "dir")} // Save creates it
	want := sample()
	saveLoad(t, s, want)

	fi, err := os.Stat(s.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, %v; want 0600", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(s.Dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only %s", len(entries), FileName)
	}
	data := Export(want)
	if n := strings.Count(string(data), "\n"); n != 2+3+1+2+1+2+1 {
		t.Errorf("want one record per line, got %d lines:\n%s", n, data)
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	st := sample()
	st.Version = Version
	st.Bans[0].Detector = "quote\" back\\ tab\t <html> & ünïcode \xff"
	st.Offenders[0].Detector = "\u2028"
	encodesLikeJSON(t, st)
}

// encodesLikeJSON fails the test unless the hand-written encoder writes st
// as the same JSON value as encoding/json does; it returns what encode wrote.
func encodesLikeJSON(t *testing.T, st State) []byte {
	t.Helper()
	out, err := encode(st)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	std, err := json.Marshal(st)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	var a, b any
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("encode output is not JSON: %v\n%s", err, out)
	}
	json.Unmarshal(std, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("encode differs from encoding/json:\n%s\nencoding/json:\n%s", out, std)
	}
	return out
}

// writeLegacy writes content as the state file of releases before the
// journal, for load to import.
func writeLegacy(t *testing.T, s Store, content string) {
	t.Helper()
	if err := os.WriteFile(s.LegacyPath(), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMissingFileIsEmpty(t *testing.T) {
	got, err := Store{Dir: t.TempDir()}.Load()
	if err != nil || got.Version != Version || got.Bans == nil || len(got.Bans) != 0 || len(got.Offenders) != 0 {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestSaveEmptyState(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Save(State{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil || len(got.Bans) != 0 || got.Version != Version {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// A crash between creating the temp file and the rename leaves a partial
// temp file beside the old state; the old state must still load, and the
// next Save must still work.
func TestCrashMidWriteKeepsOldFile(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	old := sample()
	if err := s.Save(old); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(s.Dir, FileName+".tmp-12345")
	if err := os.WriteFile(stale, []byte(`{"version":1,"bans":[{"prefix":"198.18.`), 0o600); err != nil {
		t.Fatal(err)
	}
	loadsAs(t, s, old)

	next := old
	next.Bans = next.Bans[:1]
	saveLoad(t, s, next)
}

// A Save that fails must leave the previous file untouched and no temp
// file behind.
func TestFailedSaveLeavesOldFile(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := s.Save(sample()); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path())
	bad := sample()
	bad.Bans = append(bad.Bans, datapath.Ban{Prefix: netip.MustParsePrefix("198.18.0.0/15"), Origin: 42})
	err := s.Save(bad)
	if err == nil || !strings.Contains(err.Error(), `bans[3] (198.18.0.0/15): unknown origin origin(42)`) {
		t.Fatalf("err = %v", err)
	}
	for _, b := range []datapath.Ban{
		{Origin: datapath.OriginLog},
		{Prefix: netip.PrefixFrom(netip.MustParseAddr("198.18.0.1"), 24), Origin: datapath.OriginLog},
		{Prefix: netip.MustParsePrefix("::ffff:198.18.0.1/128"), Origin: datapath.OriginLog},
		{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Origin: datapath.OriginLog, Reason: 99},
	} {
		if err := s.Save(State{Bans: []datapath.Ban{b}}); err == nil {
			t.Errorf("saved invalid ban %+v", b)
		}
	}
	after, _ := os.ReadFile(s.Path())
	if string(before) != string(after) {
		t.Error("failed Save changed the file")
	}
	if entries, _ := os.ReadDir(s.Dir); len(entries) != 1 {
		t.Errorf("left %d entries in the directory", len(entries))
	}
}

func corruptCase(t *testing.T, s Store, now time.Time) string {
	t.Helper()
	return corruptFileCase(t, s, s.Path(), now)
}

// corruptFileCase loads s, whose file at path (the journal, or a legacy
// file being imported) is corrupt.
func corruptFileCase(t *testing.T, s Store, path string, now time.Time) string {
	t.Helper()
	got, err := s.load(now)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
	if got.Version != Version || got.Bans == nil || len(got.Bans) != 0 {
		t.Errorf("state after corrupt load: %+v", got)
	}
	aside := path + fmt.Sprintf(".corrupt-%d", now.Unix())
	if !strings.Contains(err.Error(), aside) || !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name both paths: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("corrupt file still in place: %v", err)
	}
	// The next start is clean.
	if _, err := s.load(now); err != nil {
		t.Errorf("second load: %v", err)
	}
	return aside
}

func TestCorruptFileSetAside(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	garbage := []byte("\x00\x01 this is not json")
	if err := os.WriteFile(s.Path(), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	aside := corruptCase(t, s, t0)
	if data, err := os.ReadFile(aside); err != nil || string(data) != string(garbage) {
		t.Errorf("set-aside copy: %q, %v", data, err)
	}
	// A second corrupt file in the same second must not overwrite the first.
	if err := os.WriteFile(s.Path(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.load(t0); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), aside+".1") {
		t.Errorf("second corrupt file: %v", err)
	}
	if data, _ := os.ReadFile(aside); string(data) != string(garbage) {
		t.Error("first set-aside file overwritten")
	}
}

// Every cut of a journal (a crash mid-append) loads: records wholly before
// the cut are kept, the torn one is dropped and reported, none half-applied.
func TestTruncatedFile(t *testing.T) {
	src := Store{Dir: t.TempDir()}
	full := sample()
	if err := src.Save(full); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(src.Path())
	byPrefix := map[netip.Prefix]datapath.Ban{}
	for _, b := range full.Bans {
		byPrefix[b.Prefix] = b
	}
	for n := 0; n < len(data); n++ {
		s := Store{Dir: t.TempDir()}
		if err := os.WriteFile(s.Path(), data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := s.load(t0)
		if err != nil && !errors.Is(err, ErrDropped) {
			t.Fatalf("cut at %d of %d bytes: %v", n, len(data), err)
		}
		for _, b := range got.Bans {
			if w := byPrefix[b.Prefix]; w.Detector != b.Detector || !w.Expires.Equal(b.Expires) {
				t.Fatalf("cut at %d: ban %+v is not one that was written", n, b)
			}
		}
	}
	loadsAs(t, src, full)
}

func TestUnreadableFile(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	// A directory where the file should be: read fails with EISDIR, the
	// kind of damage a permission check cannot stand in for when root.
	if err := os.Mkdir(s.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	aside := corruptCase(t, s, t0)
	if fi, err := os.Stat(aside); err != nil || !fi.IsDir() {
		t.Errorf("set-aside directory: %v", err)
	}
}

func TestInvalidRecordsAreCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"no version":      `{"bans":[]}`,
		"version 0":       `{"version":0}`,
		"bad prefix":      `{"version":1,"bans":[{"prefix":"10.0.0.300/8","origin":"log"}]}`,
		"host bits":       `{"version":1,"bans":[{"prefix":"10.0.0.1/8","origin":"log"}]}`,
		"no prefix":       `{"version":1,"bans":[{"origin":"log"}]}`,
		"bad origin":      `{"version":1,"bans":[{"prefix":"10.0.0.0/8","origin":""}]}`,
		"bad time":        `{"version":1,"bans":[{"prefix":"10.0.0.0/8","origin":"log","expires":"tomorrow"}]}`,
		"bad ban time":    `{"version":1,"offenders":[{"prefix":"10.0.0.1/32","bans":["x"]}]}`,
		"wrong type":      `{"version":1,"bans":{}}`,
		"trailing data":   `{"version":1} {"version":1}`,
		"null":            `null`,
		"mapped offender": `{"version":1,"offenders":[{"prefix":"::ffff:10.0.0.1/128"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := Store{Dir: t.TempDir()}
			writeLegacy(t, s, content)
			corruptFileCase(t, s, s.LegacyPath(), t0)
		})
	}
}

func TestFutureVersion(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	content := []byte(`{"version":3,"bans":[{"prefix":"198.18.0.1/32","origin":"log","new":"field"}]}`)
	if err := os.WriteFile(s.LegacyPath(), content, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load()
	if !errors.Is(err, ErrFutureVersion) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "version 3, this xdpguard reads up to 2") || !strings.Contains(err.Error(), s.LegacyPath()) {
		t.Errorf("message: %v", err)
	}
	if data, _ := os.ReadFile(s.LegacyPath()); string(data) != string(content) {
		t.Error("future-version file was modified or moved")
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Error("a journal was written beside a newer version's file")
	}
	// A journal of a newer format is refused the same way.
	j := Store{Dir: t.TempDir()}
	if err := os.WriteFile(j.Path(), []byte("xdpguard state journal 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Load(); !errors.Is(err, ErrFutureVersion) || !strings.Contains(err.Error(), "journal version 9") {
		t.Errorf("newer journal: %v", err)
	}
}

func TestExpiredBansDropped(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	p1 := netip.MustParsePrefix("198.18.0.1/32")
	p2 := netip.MustParsePrefix("198.18.0.2/32")
	p3 := netip.MustParsePrefix("2001:db8::/64")
	st := State{
		Bans: []datapath.Ban{
			{Prefix: p1, Expires: t0.Add(-time.Second), Origin: datapath.OriginLog},                       // expired
			{Prefix: p2, Expires: t0, Origin: datapath.OriginKernel},                                      // expires exactly now
			{Prefix: p3, Expires: t0.Add(time.Minute), Origin: datapath.OriginLog, Detector: "short"},     // kept, then superseded
			{Prefix: p1, Expires: t0.Add(time.Hour), Origin: datapath.OriginManual},                       // a later re-ban of p1
			{Prefix: p3, Expires: t0.Add(time.Hour), Origin: datapath.OriginLog, Detector: "long"},        // outlasts the first p3
			{Prefix: p2, Origin: datapath.OriginManual, Detector: "forever"},                              // no expiry
			{Prefix: p2, Expires: t0.Add(48 * time.Hour), Origin: datapath.OriginLog, Detector: "2 days"}, // loses to forever
		},
		Offenders: []offence.Offender{{Prefix: p1, Bans: []time.Time{t0.Add(-24 * time.Hour)}, Until: t0.Add(-23 * time.Hour)}},
	}
	// Duplicates come from a hand-edited JSON file: the longest-lasting
	// ban wins. (In the journal the last record wins, as in the kernel.)
	if err := os.WriteFile(s.LegacyPath(), Export(st), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s.load(t0)
	if err != nil {
		t.Fatal(err)
	}
	type brief struct {
		P        netip.Prefix
		Origin   datapath.Origin
		Detector string
	}
	var b []brief
	for _, x := range byPrefix(got.Bans) {
		b = append(b, brief{x.Prefix, x.Origin, x.Detector})
	}
	want := []brief{{p1, datapath.OriginManual, ""}, {p2, datapath.OriginManual, "forever"}, {p3, datapath.OriginLog, "long"}}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("bans after load:\n got  %+v\n want %+v", b, want)
	}
	if len(got.Offenders) != 1 {
		t.Errorf("offender history must not be pruned by ban expiry: %+v", got.Offenders)
	}
	// Later: every dated ban here has expired; only the permanent one
	// survives (read from the imported journal now).
	got, err = s.load(t0.Add(1000 * time.Hour))
	if err != nil || len(got.Bans) != 1 || got.Bans[0].Detector != "forever" {
		t.Errorf("far future load: %+v, %v", got.Bans, err)
	}
}

func genState(n int) State {
	st := State{}
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)})
		st.Bans = append(st.Bans, datapath.Ban{Prefix: netip.PrefixFrom(a, 32), Expires: t0.Add(time.Hour),
			Origin: datapath.OriginLog, Reason: datapath.ReasonNoAuth, Detector: "dovecot-login", Events: 10, First: t0, Last: t0, Offence: 1})
		st.Offenders = append(st.Offenders, offence.Offender{Prefix: netip.PrefixFrom(a, 32), Bans: []time.Time{t0}, Until: t0.Add(time.Hour),
			Reason: datapath.ReasonNoAuth, Detector: "dovecot-login"})
	}
	return st
}

// benchJournal is a journal of n bans that one `ban --from` wrote.
func benchJournal(b *testing.B, n int) Store {
	s := Store{Dir: b.TempDir()}
	var batch Batch
	batch.BanAll(datapath.Ban{Expires: time.Now().Add(time.Hour), Origin: datapath.OriginManual, Detector: "manual"}, benchPrefixes(n))
	if err := s.Commit(&batch); err != nil {
		b.Fatal(err)
	}
	return s
}

func benchPrefixes(n int) []netip.Prefix {
	ps := make([]netip.Prefix, n)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	return ps
}

// A million bans committed as one record: encoding, write, fsync.
func BenchmarkJournalCommit1M(b *testing.B) {
	ps := benchPrefixes(1_000_000)
	like := datapath.Ban{Expires: time.Now().Add(time.Hour), Origin: datapath.OriginManual, Detector: "manual"}
	s := Store{Dir: b.TempDir()}
	for b.Loop() {
		var batch Batch
		batch.BanAll(like, ps)
		if err := s.Commit(&batch); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.Remove(s.Path())
		b.StartTimer()
	}
}

// Load of a journal of a million bans: what a restart reads.
func BenchmarkJournalLoad1M(b *testing.B) {
	s := benchJournal(b, 1_000_000)
	for b.Loop() {
		if st, err := s.Load(); err != nil || len(st.Bans) != 1_000_000 {
			b.Fatal(len(st.Bans), err)
		}
	}
	b.ReportMetric(float64(s.Size())/1e6, "MB-journal")
}

// LoadLists of a journal of a million bans: what a restart reads.
func BenchmarkJournalLoadLists1M(b *testing.B) {
	s := benchJournal(b, 1_000_000)
	for b.Loop() {
		if _, lists, err := s.LoadLists(); err != nil || len(lists) != 1 || len(lists[0].Prefixes) != 1_000_000 {
			b.Fatal(len(lists), err)
		}
	}
}

// Compaction of 100,000 log bans, each with its own evidence and offender
// record: the daemon's worst case a ban.
func BenchmarkJournalCompact100k(b *testing.B) {
	s := Store{Dir: b.TempDir()}
	st := genState(100000)
	for i := range st.Bans {
		st.Bans[i].Expires = time.Now().Add(time.Hour + time.Duration(i)*time.Millisecond)
	}
	if err := s.Save(st); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Compact(nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Size())/1e6, "MB-journal")
}

func FuzzDecode(f *testing.F) {
	data, _ := encode(func() State { st := sample(); st.Version = Version; return st }())
	f.Add(data)
	f.Add([]byte(`{"version":1,"bans":[{"prefix":"10.0.0.0/8","origin":"log","expires":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"offenders":[{"prefix":"::/0","bans":["2026-01-01T00:00:00Z"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := Decode(data)
		if err != nil {
			return
		}
		if err := st.check(); err != nil {
			t.Fatalf("Decode accepted a state check refuses: %v", err)
		}
		// What Decode accepts, encode must write back to an equal state,
		// as encoding/json would.
		out := encodesLikeJSON(t, st)
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode: %v\n%s", err, out)
		}
		if len(again.Bans) != len(st.Bans) || len(again.Offenders) != len(st.Offenders) {
			t.Fatalf("round trip changed lengths")
		}
		for i := range st.Bans {
			a, b := st.Bans[i], again.Bans[i]
			if a.Prefix != b.Prefix || !a.Expires.Equal(b.Expires) || a.Reason != b.Reason || a.Origin != b.Origin ||
				a.Detector != b.Detector || a.Events != b.Events || !a.First.Equal(b.First) || a.Offence != b.Offence {
				t.Fatalf("round trip changed ban %d: %+v != %+v", i, a, b)
			}
		}
	})
}
