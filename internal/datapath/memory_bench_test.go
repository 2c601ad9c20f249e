package datapath

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xdpguard/xdpguard/internal/testutil"
)

// BenchmarkRandomBucketRead is what this host charges an XDP program for
// one 64-byte bucket read at a random index of an array map, by the map's
// size: the cost that grows with the IPv4 ban table, apart from any code.
// At a million bans the table was 16 MiB (eight-byte slots at half load)
// against bench/drop's bucket-array reference's 8 MiB (four-byte keys);
// the 8 and 16 MiB rows were what the slot size cost a banned packet
// there (BENCHMARKS.md, "Where a SYN's time goes"), and why the table's
// buckets now hold four-byte keys too.
//
// Both programs draw the index with bpf_get_prandom_u32(), since
// BPF_PROG_TEST_RUN repeats one packet; ns/read is the program with the
// read less the one without it, in the same run.
func BenchmarkRandomBucketRead(b *testing.B) {
	testutil.RequireRoot(b)
	const bucket = 64
	without, err := randomRead(nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer without.Close()
	pkt := make([]byte, 64)
	for _, mib := range []int{1, 4, 8, 16, 32} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			n := uint32(mib << 20 / bucket)
			m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: bucket, MaxEntries: n})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			with, err := randomRead(m, n-1)
			if err != nil {
				b.Fatal(err)
			}
			defer with.Close()
			const batch = 100000
			var base, cost float64
			for b.Loop() {
				base += float64(timePerRun(b, without, pkt, batch, xdpPass))
				cost += float64(timePerRun(b, with, pkt, batch, xdpPass))
			}
			b.ReportMetric((cost-base)/float64(b.N), "ns/read")
		})
	}
}

// randomRead is an XDP program that reads the first word of the bucket at
// a random index (masked by mask, a power of two less one) of m, and
// passes; with m nil it draws the index and reads nothing.
func randomRead(m *ebpf.Map, mask uint32) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.FnGetPrandomU32.Call(),
	}
	if m != nil {
		insns = append(insns,
			asm.And.Imm32(asm.R0, int32(mask)),
			asm.StoreMem(asm.RFP, -4, asm.R0, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "pass"),
			// The word is 0, so this never drops; the compare keeps the
			// load from being dead.
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.JEq.Imm(asm.R1, 0, "pass"),
			asm.Mov.Imm(asm.R0, xdpDrop),
			asm.Return(),
		)
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "random_read",
		Type:         ebpf.XDP,
		Instructions: insns,
		License:      "Dual BSD/GPL",
	})
}
