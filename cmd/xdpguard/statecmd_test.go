package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
)

// state export prints the journal as the JSON state file of version 2,
// which Decode (an older xdpguard's reader) reads back; compact keeps it.
func TestStateExportAndCompact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := state.Store{Dir: dir}
	exp := time.Now().Add(time.Hour).Round(time.Second)
	var b state.Batch
	b.BanAll(datapath.Ban{Expires: exp, Origin: datapath.OriginManual, Reason: datapath.ReasonManual, Detector: datapath.DetectorManual},
		[]netip.Prefix{netip.MustParsePrefix("198.18.5.1/32"), netip.MustParsePrefix("198.18.5.2/32")})
	b.Unban(netip.MustParsePrefix("198.18.5.1/32"))
	b.Allow(time.Time{}, netip.MustParsePrefix("198.18.6.0/24"))
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"state", "export"}, {"state", "compact"}, {"state", "export"}} {
		stdout, stderr, code := xdpguard(t, nil, append(args, "--state-dir", dir)...)
		if code != 0 || stderr != "" {
			t.Fatalf("%v: exit %d, %q", args, code, stderr)
		}
		if args[1] == "compact" {
			if !strings.HasPrefix(stdout, "compacted "+s.Path()) {
				t.Errorf("compact said %q", stdout)
			}
			continue
		}
		st, err := state.Decode([]byte(stdout))
		if err != nil {
			t.Fatalf("export is not a state file: %v\n%s", err, stdout)
		}
		if len(st.Bans) != 1 || st.Bans[0].Prefix.String() != "198.18.5.2/32" || !st.Bans[0].Expires.Equal(exp) ||
			len(st.Allow) != 1 || st.Allow[0].Prefix.String() != "198.18.6.0/24" {
			t.Errorf("export: %+v", st)
		}
	}
	if _, stderr, code := xdpguard(t, nil, "state", "export", "extra", "--state-dir", dir); code != 2 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("export with an argument: exit %d, %q", code, stderr)
	}
	// A state directory without a journal exports the empty state.
	stdout, _, code := xdpguard(t, nil, "state", "export", "--state-dir", t.TempDir())
	if st, err := state.Decode([]byte(stdout)); code != 0 || err != nil || len(st.Bans) != 0 {
		t.Errorf("empty: exit %d, %v", code, err)
	}
	if _, err := os.Stat(s.LegacyPath()); err == nil {
		t.Error("export wrote a state.json")
	}
}
