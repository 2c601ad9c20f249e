package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
)

// bannedSources returns the first n addresses of the generator's source
// set, in host order: distinct, from 10.0.0.0/8, the same on every run, each
// smaller set a prefix of the larger ones. 1,000,000 distinct sources do not
// fit in the harness's own 198.18.0.0/15; they are spoofed inside the
// namespaces and never routed anywhere else (the DUT's only route leads to
// the generator's sink).
func bannedSources(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = setAddr(uint32(i))
	}
	return out
}

// setAddr is gen.c's set_addr in host order.
func setAddr(i uint32) uint32 { return 10<<24 | (i*0x9e3779b1)&0xffffff }
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
