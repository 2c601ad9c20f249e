package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
)

// bannedSources returns n distinct addresses from 10.0.0.0/8, in host
// order, the same on every run. Each smaller set is a prefix of the larger
// ones. 1,000,000 distinct sources do not fit in the harness's own
// 198.18.0.0/15; they are spoofed inside the namespaces and never routed
// anywhere else (the DUT's only route leads to the generator's sink).
func bannedSources(n int) []uint32 {
	r := rand.New(rand.NewPCG(7, 7))
	seen := make(map[uint32]struct{}, n)
	out := make([]uint32, 0, n)
	for len(out) < n {
		a := 10<<24 | r.Uint32()&0x00ffffff
		if _, dup := seen[a]; dup {
			continue
		}
		seen[a] = struct{}{}
		out = append(out, a)
	}
	return out
}

func addrOf(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// writeLines writes one line per source, formatted by f, through a buffer.
func writeLines(path string, head, tail string, srcs []uint32, f func(netip.Addr) string) error {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	w := bufio.NewWriterSize(fh, 1<<20)
	w.WriteString(head)
	for _, s := range srcs {
		w.WriteString(f(addrOf(s)))
	}
	w.WriteString(tail)
	if err := w.Flush(); err != nil {
		fh.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return fh.Close()
}
