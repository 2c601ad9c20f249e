package banlist

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkReadFile1M is the parse of `xdpguard ban --from FILE` in the
// state benchmark (cmd/xdpguard BenchmarkBanFromFile): a million IPv4
// addresses, one a line, read from a file.
func BenchmarkReadFile1M(b *testing.B) {
	var sb strings.Builder
	for i := range 1_000_000 {
		fmt.Fprintf(&sb, "10.%d.%d.%d\n", i>>16&0xff, i>>8&0xff, i&0xff)
	}
	path := filepath.Join(b.TempDir(), "list")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ReportAllocs()
	for b.Loop() {
		ps, err := ReadFile(path, nil)
		if err != nil || len(ps) != 1_000_000 {
			b.Fatalf("%d prefixes, %v", len(ps), err)
		}
	}
}
