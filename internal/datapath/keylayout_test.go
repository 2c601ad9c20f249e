package datapath

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/xdpguard/xdpguard/internal/packet"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// BenchmarkKeyLayout is the measurement behind the per-family ban maps: one
// hash lookup with a 4-byte key (IPv4 in its own map) against one with a
// 16-byte key (IPv4 mapped into IPv6, one map for both), in maps of
// 100,000 entries, hit and miss, each against an empty program in the same
// run.
func BenchmarkKeyLayout(b *testing.B) {
	testutil.RequireRoot(b)
	pkt := packet.Build(syn(dst4, 110))
	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	for _, size := range []uint32{4, 16} {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: size, ValueSize: 24, MaxEntries: 1 << 20, Flags: 1 /* BPF_F_NO_PREALLOC */})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		key := func(i uint32) []byte {
			k := make([]byte, size)
			k[size-4], k[size-3], k[size-2], k[size-1] = 198, byte(i>>16), byte(i>>8), byte(i)
			if size == 16 {
				k[10], k[11] = 0xff, 0xff // ::ffff:a.b.c.d
			}
			return k
		}
		for i := range uint32(100000) {
			if err := m.Put(key(i), make([]byte, 24)); err != nil {
				b.Fatal(err)
			}
		}
		for _, hit := range []bool{true, false} {
			want := key(4242)
			if !hit {
				want = key(200000)
			}
			// Store the key on the stack word by word, look it up, pass.
			insns := asm.Instructions{}
			for off := 0; off < int(size); off += 4 {
				w := int32(want[off]) | int32(want[off+1])<<8 | int32(want[off+2])<<16 | int32(want[off+3])<<24
				insns = append(insns, asm.StoreImm(asm.R10, int16(off-int(size)), int64(w), asm.Word))
			}
			insns = append(insns,
				asm.LoadMapPtr(asm.R1, m.FD()),
				asm.Mov.Reg(asm.R2, asm.R10),
				asm.Add.Imm(asm.R2, -int32(size)),
				asm.FnMapLookupElem.Call(),
				asm.Mov.Imm(asm.R0, xdpPass),
				asm.Return(),
			)
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: insns})
			if err != nil {
				b.Fatal(err)
			}
			defer prog.Close()
			name := map[uint32]string{4: "4-byte", 16: "16-byte"}[size] + map[bool]string{true: "-hit", false: "-miss"}[hit]
			b.Run(name, func(b *testing.B) {
				var floor, cost float64
				n := 0
				for b.Loop() {
					_, f, err := empty.Benchmark(pkt, 200000, nil)
					if err != nil {
						b.Fatal(err)
					}
					_, c, err := prog.Benchmark(pkt, 200000, nil)
					if err != nil {
						b.Fatal(err)
					}
					floor += float64(f)
					cost += float64(c)
					n++
				}
				b.ReportMetric(cost/float64(n), "ns/pkt")
				b.ReportMetric((cost-floor)/float64(n), "lookup-ns")
			})
		}
	}
}
