package banlist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	out := []netip.Prefix{}
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func equal(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseAccepts(t *testing.T) {
	in := "\xef\xbb\xbf# xdpguard export\n" +
		"\n" +
		"   192.0.2.7   \n" +
		"198.51.100.0/24 # trailing comment\n" +
		"; Spamhaus DROP List 2026/11/28 - (c) 2026 The Spamhaus Project\n" +
		"; Last-Modified: Sat, 28 Nov 2026 10:00:00 GMT\n" +
		"203.0.113.0/24 ; SBL123456\r\n" +
		"\t2001:db8::1\n" +
		"2001:db8:1::/48;SBL9\n" +
		"::ffff:192.0.2.8\n" +
		"::ffff:198.18.0.0/112\n" +
		"192.0.2.7/32\n" + // duplicate of line 3
		"0.0.0.0/0\n" +
		"10.0.0.1" // no final newline
	got, err := Parse(strings.NewReader(in), "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := prefixes(t, "192.0.2.7/32", "198.51.100.0/24", "203.0.113.0/24",
		"2001:db8::1/128", "2001:db8:1::/48", "192.0.2.8/32", "198.18.0.0/16",
		"0.0.0.0/0", "10.0.0.1/32")
	if !equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only comments\n  ; and this\n"} {
		got, err := Parse(strings.NewReader(in), "x")
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("%q: got %v, %v; want empty non-nil slice", in, got, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		line, msg string
	}{
		{"1.2.3.4/33", `x:2: "1.2.3.4/33": invalid prefix length`},
		{"2001:db8::/129", `x:2: "2001:db8::/129": invalid prefix length`},
		{"1.2.3.0/", `x:2: "1.2.3.0/": invalid prefix length`},
		{"1.2.3.0/+8", `x:2: "1.2.3.0/+8": invalid prefix length`},
		{"1.2.3.0/024", `x:2: "1.2.3.0/024": invalid prefix length`},
		{"1.2.3.0/-0", `x:2: "1.2.3.0/-0": invalid prefix length`},
		{"10.0.0.300/8", `x:2: "10.0.0.300/8": invalid address`},
		{"1.2.3", `x:2: "1.2.3": invalid address`},
		{"example.com", `x:2: "example.com": invalid address`},
		{"fe80::1%eth0", `x:2: "fe80::1%eth0": address has a zone (eth0); zones cannot be banned`},
		{"1.2.3.4/24", `x:2: "1.2.3.4/24": host bits set (the network is 1.2.3.0/24)`},
		{"2001:db8::1/64", `x:2: "2001:db8::1/64": host bits set (the network is 2001:db8::/64)`},
		{"::ffff:1.2.3.0/64", `x:2: "::ffff:1.2.3.0/64": IPv4-mapped prefix shorter than /96`},
		{"1.2.3.4 5.6.7.8", `x:2: "1.2.3.4 5.6.7.8": more than one field (expected one address or CIDR per line)`},
		{"1.2.3.4,", `x:2: "1.2.3.4,": invalid address`},
	}
	for _, c := range cases {
		in := "192.0.2.1\n" + c.line + "\n192.0.2.2\n"
		got, err := Parse(strings.NewReader(in), "x")
		if got != nil {
			t.Errorf("%q: returned prefixes %v with an error", c.line, got)
		}
		var be *Error
		if !errors.As(err, &be) {
			t.Errorf("%q: err = %v, want *Error", c.line, err)
			continue
		}
		if be.Total != 1 || err.Error() != c.msg {
			t.Errorf("%q:\n got  %s (total %d)\n want %s", c.line, err, be.Total, c.msg)
		}
	}
}

func TestParseManyErrors(t *testing.T) {
	var b strings.Builder
	for i := 1; i <= 25; i++ {
		if i%2 == 0 {
			fmt.Fprintf(&b, "192.0.2.%d\n", i)
		} else {
			fmt.Fprintf(&b, "bad%d\n", i)
		}
	}
	_, err := Parse(strings.NewReader(b.String()), "l")
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("err = %v", err)
	}
	if be.Total != 13 || len(be.Lines) != 10 {
		t.Fatalf("Total=%d listed=%d, want 13 and 10", be.Total, len(be.Lines))
	}
	if be.Lines[0].Line != 1 || be.Lines[9].Line != 19 {
		t.Errorf("line numbers %d..%d, want 1..19", be.Lines[0].Line, be.Lines[9].Line)
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, "\nl: and 3 more bad lines") || strings.Count(msg, "\n") != 10 {
		t.Errorf("message:\n%s", msg)
	}
}

func TestParseLongLine(t *testing.T) {
	in := "192.0.2.1\n" + strings.Repeat("A", 200000) + "\n192.0.2.2\n" + strings.Repeat("1", MaxLineLen+1)
	_, err := Parse(strings.NewReader(in), "x")
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("err = %v", err)
	}
	if be.Total != 2 || be.Lines[0].Line != 2 || be.Lines[1].Line != 4 {
		t.Fatalf("got %+v", be)
	}
	if !strings.Contains(err.Error(), "line longer than 4096 bytes") || len(err.Error()) > 300 {
		t.Errorf("message: %s", err)
	}
}

func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("192.0.2.1\n"), iotest.ErrReader(boom))
	got, err := Parse(r, "in")
	if !errors.Is(err, boom) || got != nil || !strings.HasPrefix(err.Error(), "in: read:") {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestReadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drop.txt")
	if err := os.WriteFile(path, []byte("192.0.2.0/24 ; SBL1\nnope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path, nil)
	if err == nil || err.Error() != path+`:2: "nope": invalid address` {
		t.Errorf("file: %v", err)
	}
	got, err := ReadFile("-", strings.NewReader("192.0.2.9\n"))
	if err != nil || !equal(got, prefixes(t, "192.0.2.9/32")) {
		t.Errorf("stdin: %v, %v", got, err)
	}
	_, err = ReadFile("-", strings.NewReader("x\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "stdin:1:") {
		t.Errorf("stdin error: %v", err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// genList builds an n-line DROP-style list with comments and a few
// duplicates, the shape of a real import.
func genList(n int) []byte {
	var b bytes.Buffer
	b.WriteString("; generated list\n")
	for i := 0; i < n; i++ {
		switch i % 10 {
		case 0:
			fmt.Fprintf(&b, "%d.%d.%d.0/24 ; SBL%d\n", 1+i>>16&0x7f, i>>8&0xff, i&0xff, i)
		case 1:
			fmt.Fprintf(&b, "2001:db8:%x:%x::/64\n", i>>16, i&0xffff)
		case 2:
			b.WriteString("# comment\n")
		default:
			fmt.Fprintf(&b, "%d.%d.%d.%d\n", 1+i>>16&0x7f, i>>8&0xff, i&0xff, i%7)
		}
	}
	return b.Bytes()
}

// TestParseScalesLinearly catches a regression to quadratic behaviour
// without a fixed time budget, which a busy CI machine cannot keep: ten
// times the lines must cost about ten times as much, not a hundred. The
// best of three runs of each size is compared within one run, so the
// machine's speed cancels out. The absolute figure is BenchmarkParse100k's.
func TestParseScalesLinearly(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing test")
	}
	best := func(n int) time.Duration {
		data := genList(n)
		var min time.Duration
		for range 3 {
			start := time.Now()
			got, err := Parse(bytes.NewReader(data), "gen")
			d := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < n*8/10 {
				t.Fatalf("%d lines: only %d prefixes", n, len(got))
			}
			if min == 0 || d < min {
				min = d
			}
		}
		return min
	}
	small, large := best(10000), best(100000)
	if ratio := float64(large) / float64(small); ratio > 35 {
		t.Errorf("100,000 lines took %v, %.0f times 10,000 lines' %v: worse than linear", large, ratio, small)
	}
}

func BenchmarkParse100k(b *testing.B) {
	data := genList(100000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(data), "gen"); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("192.0.2.0/24 ; SBL1\n# c\n2001:db8::1\n"))
	f.Add([]byte("1.2.3.4/33\n"))
	f.Add([]byte("::ffff:1.2.3.4/120\n1.2.3.4/24"))
	f.Add([]byte("\xef\xbb\xbf10.0.0.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Parse(bytes.NewReader(data), "f")
		if err != nil {
			var be *Error
			if !errors.As(err, &be) || got != nil || be.Total < 1 || len(be.Lines) > maxReported {
				t.Fatalf("bad error result: %v %v", got, err)
			}
			return
		}
		seen := map[netip.Prefix]bool{}
		var b strings.Builder
		for _, p := range got {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" || seen[p] {
				t.Fatalf("bad prefix %v in %v", p, got)
			}
			seen[p] = true
			b.WriteString(p.String() + "\n")
		}
		// Canonical output must parse back to the same list.
		again, err := Parse(strings.NewReader(b.String()), "again")
		if err != nil || !equal(again, got) {
			t.Fatalf("round trip: %v %v != %v", err, again, got)
		}
	})
}

// The fast IPv4 path agrees with ParsePrefix on everything it accepts.
func FuzzParse4(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.0/8", "1.2.3.4/33", "01.2.3.4", "1.2.3.4/024", "1.2.3.4/0", "0.0.0.0/0",
		"255.255.255.255", "256.1.1.1", "1.2.3", "1.2.3.4.5", "1.2.3.4/", "1.2.3.4/24", "1.2.3.0/24x", "1111.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parse4([]byte(s))
		if !ok {
			return
		}
		want, err := ParsePrefix(s)
		if err != nil || want != p {
			t.Fatalf("parse4(%q) = %v, ParsePrefix: %v, %v", s, p, want, err)
		}
	})
}

// Repeats are dropped wherever they are, keeping the order of first
// appearance (IPv4 repeats are found by a sort at the end).
func TestParseDropsRepeatsInOrder(t *testing.T) {
	in := "198.18.0.3\n198.18.0.1\n2001:db8::1\n198.18.0.3\n198.18.0.0/24\n198.18.0.1/32\n2001:db8::1/128\n198.18.0.2\n198.18.0.0/24\n"
	got, err := Parse(strings.NewReader(in), "t")
	if err != nil {
		t.Fatal(err)
	}
	want := prefixes(t, "198.18.0.3/32", "198.18.0.1/32", "2001:db8::1/128", "198.18.0.0/24", "198.18.0.2/32")
	if !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
