package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xdpguard/xdpguard/internal/packet"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// BenchmarkPerPacket measures the program with BPF_PROG_TEST_RUN against an
// empty XDP program in the same run, and reports the ratio to that floor:
// absolute numbers move with the machine, the ratio much less.
func BenchmarkPerPacket(b *testing.B) {
	testutil.RequireRoot(b)
	s := DefaultSettings()
	s.RateThreshold = 1 << 30 // the SYN case measures counting, not banning
	s.RateWindow = 24 * time.Hour
	// Every repeat of the one SYN is a new connection: the full cost of
	// counting one, resend check included. syn-resent turns it back on.
	s.RetransmitWindow = 0
	g := newTestGuard(b, s)

	// 10,000 banned sources, so lookups do not all hit one warm bucket.
	var bans []netip.Prefix
	for i := range 10000 {
		bans = append(bans, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32))
	}
	if err := g.BanMany(bans, time.Hour, OriginManual, ReasonBlocklist); err != nil {
		b.Fatal(err)
	}
	empty, err := emptyXDP()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()

	clean := netip.MustParseAddr("198.18.50.1")
	banned := netip.MustParseAddr("198.19.20.30")
	good := netip.MustParseAddr("198.18.50.2")
	if err := g.PutKnownGood([]netip.Prefix{netip.PrefixFrom(good, 32)}); err != nil {
		b.Fatal(err)
	}
	ack := syn(clean, 143)
	ack.Flags = packet.ACK
	resent, admission := s, s
	resent.RetransmitWindow = time.Minute
	admission.AdmissionInterval = time.Hour
	for _, tc := range []struct {
		name      string
		spec      packet.Spec
		want      uint32
		s         Settings
		admission bool
	}{
		{"unbanned-ack", ack, xdpPass, s, false},
		{"banned", syn(banned, 143), xdpDrop, s, false},
		{"syn-unbanned", syn(clean, 143), xdpPass, s, false},
		// 5 of 6 repeats are resends; the 6th counts again.
		{"syn-resent", syn(clean, 143), xdpPass, resent, false},
		// Admission on: a known-good source's SYN pays one hash lookup;
		// an unknown source over its admission limit is dropped.
		{"syn-admission-known-good", syn(good, 143), xdpPass, admission, true},
		{"syn-admission-limited", syn(clean, 143), xdpDrop, admission, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if err := g.SetSettings(tc.s); err != nil {
				b.Fatal(err)
			}
			if err := g.SetAdmission(tc.admission); err != nil {
				b.Fatal(err)
			}
			if tc.admission && tc.want == xdpDrop {
				run(b, g, packet.Build(tc.spec)) // its one admitted connection
			}
			pkt := packet.Build(tc.spec)
			const batch = 100000
			var floor, cost time.Duration
			rounds := 0
			for b.Loop() {
				f := timePerRun(b, empty, pkt, batch, xdpPass)
				c := timePerRun(b, g.prog, pkt, batch, tc.want)
				floor += f
				cost += c
				rounds++
			}
			b.ReportMetric(float64(cost)/float64(rounds), "ns/pkt")
			b.ReportMetric(float64(floor)/float64(rounds), "floor-ns/pkt")
			b.ReportMetric(float64(cost)/float64(floor), "x-floor")
		})
	}
}

// emptyXDP is the floor of the per-packet benchmarks: what
// BPF_PROG_TEST_RUN costs for a program that does nothing. These are the
// two instructions clang emits for `return XDP_PASS;`, with no object file
// to generate for them.
func emptyXDP() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xdp_pass",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, xdpPass),
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	})
}

func timePerRun(b *testing.B, p *ebpf.Program, pkt []byte, repeat int, want uint32) time.Duration {
	ret, d, err := p.Benchmark(pkt, repeat, nil)
	if err != nil {
		b.Fatal(err)
	}
	if ret != want {
		b.Fatalf("verdict %s, want %s", verdictName(ret), verdictName(want))
	}
	return d
}
