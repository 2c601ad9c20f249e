package main

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

func TestParseSchedstat(t *testing.T) {
	v, err := parseSchedstat("123456789 4242 17\n")
	if err != nil || v != 123456789 {
		t.Fatalf("got %d, %v; want the first field, 123456789", v, err)
	}
	for _, bad := range []string{"", "12 34", "x 1 2", "-5 1 2"} {
		if _, err := parseSchedstat(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestParseEthtoolStat(t *testing.T) {
	out := "NIC statistics:\n     peer_ifindex: 12\n     rx_queue_0_xdp_packets: 987654\n     rx_queue_0_xdp_packets_extra: 1\n"
	v, err := parseEthtoolStat(out, "rx_queue_0_xdp_packets")
	if err != nil || v != 987654 {
		t.Fatalf("got %d, %v", v, err)
	}
	if _, err := parseEthtoolStat(out, "rx_queue_1_xdp_packets"); err == nil {
		t.Error("a missing counter must be an error, not 0")
	}
}

func TestParseSNMP(t *testing.T) {
	out := "Ip: Forwarding InReceives\nIp: 1 500\nTcp: RtoAlgorithm InSegs OutSegs\nTcp: 1 4242 17\n"
	v, err := parseSNMP(out, "Tcp", "InSegs")
	if err != nil || v != 4242 {
		t.Fatalf("got %d, %v", v, err)
	}
	if _, err := parseSNMP(out, "Udp", "InDatagrams"); err == nil {
		t.Error("want an error for a missing protocol")
	}
}

func TestParseNftCounter(t *testing.T) {
	out := "table netdev x {\n chain filter {\n  ... update @flood { ip saddr limit rate over 100/second burst 100 packets } counter packets 31337 bytes 2000 drop\n }\n}\n"
	v, err := parseNftCounter(out)
	if err != nil || v != 31337 {
		t.Fatalf("got %d, %v", v, err)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{5}, 5}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), c.in...)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Errorf("median reordered its input: %v", c.in)
			}
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing must be NaN, not 0")
	}
}

func TestPercentile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 200; i++ {
		v = append(v, time.Duration(i))
	}
	if p := percentile(v, 50); p != 100 {
		t.Errorf("p50 of 1..200 = %d, want 100", p)
	}
	if p := percentile(v, 99); p != 198 {
		t.Errorf("p99 of 1..200 = %d, want 198", p)
	}
	if p := percentile(v[:1], 99); p != 1 {
		t.Errorf("p99 of one value = %d, want it", p)
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1000000: "1,000,000", 100000: "100,000"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}

func samples(ns ...float64) []sample {
	var out []sample
	for _, v := range ns {
		out = append(out, sample{NsPerPkt: v, Handled: 1000, Seconds: 1, Client: clientResult{Attempts: 100, OK: 100, P50us: 200, P99us: 400}})
	}
	return out
}

func TestTableRatios(t *testing.T) {
	rp := &report{Sizes: []int{10000}, Runs: 3, Rows: []row{
		{Mech: floorName, Mode: "native", Size: 10000, Samples: samples(100, 90, 120)},
		{Mech: bucketName, Mode: "native", Size: 10000, Samples: samples(140, 145, 150)},
		{Mech: "xdpguard", Mode: "native", Filter: true, Size: 10000, Samples: samples(150, 160, 140)},
		{Mech: "xdp-filter", Mode: "native", Filter: true, Size: 10000, Samples: samples(140, 141, 139)},
		{Mech: nftName, Filter: true, Size: 10000, Samples: samples(600, 700, 500)},
		{Mech: "xdp-filter", Mode: "native", Filter: true, Size: 1000000, Err: "setup: map full"},
	}}
	rows := rp.tableRows()
	want := "| xdpguard (native) | 10,000 | 150 ns | 140–160 | 1.50× | 4.00× |"
	if !strings.HasPrefix(rows[4], want) {
		t.Errorf("xdpguard row:\n got %s\nwant %s…", rows[4], want)
	}
	if !strings.Contains(rows[7], "n/a: setup: map full") {
		t.Errorf("a failed cell must say why: %s", rows[7])
	}
	tg := strings.Join(rp.targets(), "\n")
	for _, w := range []string{
		"met: 10,000 banned: xdpguard costs 1.03× the bucket-array reference (target ≤ 1.05×; per round: 1.07, 1.10, 0.93)",
		"met: 10,000 banned: xdpguard is 4.00× cheaper than the nftables ingress set (target ≥ 4×; the bucket-array reference: 4.14×)",
		"MISSED: 10,000 banned: xdpguard is 0.93× cheaper than xdp-filter (target ≥ 1.3×; the bucket-array reference: 0.97×)",
	} {
		if !strings.Contains(tg, w) {
			t.Errorf("targets lack %q:\n%s", w, tg)
		}
	}
}

// The client's success is xdpguard's target: another product that fails
// the client does not make it missed, and xdpguard failing it does.
func TestClientTargetIsXdpguards(t *testing.T) {
	withClient := func(ok int, ns ...float64) []sample {
		s := samples(ns...)
		for i := range s {
			s[i].Client.OK = ok
		}
		return s
	}
	rp := &report{Sizes: []int{10000}, Runs: 1, Rows: []row{
		{Mech: "xdpguard", Mode: "native", Filter: true, Size: 10000, Samples: withClient(100, 150)},
		{Mech: "xdpguard", Mode: "generic", Filter: true, Size: 10000, Samples: withClient(99, 400)},
		{Mech: "xdp-filter", Mode: "generic", Filter: true, Size: 10000, Samples: withClient(90, 600)},
	}}
	want := "met: the legitimate client's worst success rate through xdpguard during a flood is 99.0% (xdpguard (generic), 10,000 banned"
	if tg := strings.Join(rp.targets(), "\n"); !strings.Contains(tg, want) {
		t.Errorf("targets lack %q:\n%s", want, tg)
	}
	rp.Rows[0].Samples = withClient(97, 150)
	want = "MISSED: the legitimate client's worst success rate through xdpguard during a flood is 97.0% (xdpguard (native)"
	if tg := strings.Join(rp.targets(), "\n"); !strings.Contains(tg, want) {
		t.Errorf("targets lack %q:\n%s", want, tg)
	}
}

func TestSVGHasEveryMeasuredBar(t *testing.T) {
	rp := &report{Sizes: []int{10000, 100000}, Runs: 1, Rows: []row{
		{Mech: floorName, Mode: "native", Size: 10000, Samples: samples(104)},
		{Mech: floorName, Mode: "native", Size: 100000, Samples: samples(109)},
		{Mech: "no filter (TCP stack)", Size: 10000, Samples: samples(4400)},
		{Mech: "xdp-filter", Mode: "native", Size: 100000, Err: "failed"},
	}}
	svg := rp.svg()
	if n := strings.Count(svg, `class="bar"`); n != 3 {
		t.Errorf("%d bars, want 3 (one per measured cell, none for the failed one)", n)
	}
	if !strings.Contains(svg, ">4400<") || strings.Contains(svg, "xdp-filter") {
		t.Error("bars must be labelled with their values, and unmeasured mechanisms left out")
	}
}

func TestParseSizes(t *testing.T) {
	if s, err := parseSizes("10000, 100000"); err != nil || len(s) != 2 || s[1] != 100000 {
		t.Errorf("got %v, %v", s, err)
	}
	for _, bad := range []string{"", "0", "100,10", "ten"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestBannedSourcesAreDistinctAndStable(t *testing.T) {
	const n = 1 << 20
	all := bannedSources(n)
	seen := make(map[uint32]bool, n)
	for i, a := range all {
		if a>>24 != 10 {
			t.Fatalf("source %d is %s, outside 10.0.0.0/8", i, addrOf(a))
		}
		if seen[a] {
			t.Fatalf("source %d (%s) repeats: the set would be smaller than asked", i, addrOf(a))
		}
		seen[a] = true
	}
	if small := bannedSources(10); small[9] != all[9] {
		t.Error("a smaller set must be a prefix of the larger ones")
	}
}

func TestMergeKeepsSamplesAndDistinctErrors(t *testing.T) {
	r := row{Samples: samples(100), Note: "first"}
	r.merge(row{Samples: samples(200), Note: "second", Err: "teardown: busy"})
	r.merge(row{Samples: samples(300), Err: "teardown: busy"})
	if len(r.Samples) != 3 || r.Note != "first" || r.Err != "teardown: busy" {
		t.Errorf("got %d samples, note %q, err %q", len(r.Samples), r.Note, r.Err)
	}
	if med, lo, hi, _ := r.spread(); med != 200 || lo != 100 || hi != 300 {
		t.Errorf("spread %v %v %v, want 200 100 300", med, lo, hi)
	}
}

func TestBucketArrayFindsEveryKeyAndNoOther(t *testing.T) {
	srcs := bannedSources(100000)
	table, over := oaBuild(srcs)
	if over != 0 {
		t.Fatalf("%d keys did not fit at half load", over)
	}
	for _, s := range srcs {
		if !oaLookup(table, beU32(s)) {
			t.Fatalf("%s is in the set but not found", addrOf(s))
		}
	}
	others := bannedSources(110000)[100000:]
	for _, s := range others {
		if oaLookup(table, beU32(s)) {
			t.Fatalf("%s is not in the set but found", addrOf(s))
		}
	}
}

// The xdp-filter resize rewrites BTF array lengths in place; check it on
// this package's own object, whose struct oa_bucket has the only array of
// 16 elements.
func TestPatchBTFArrays(t *testing.T) {
	obj, err := os.ReadFile("gen_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patchBTFArrays(obj, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(patched))
	if err != nil {
		t.Fatalf("patched object no longer parses: %v", err)
	}
	var b *btf.Struct
	if err := spec.Types.TypeByName("oa_bucket", &b); err != nil {
		t.Fatal(err)
	}
	if n := b.Members[0].Type.(*btf.Array).Nelems; n != 32 {
		t.Errorf("oa_bucket.key has %d elements after the patch, want 32", n)
	}
	if spec.Maps["gen_cfg"].MaxEntries != 1 {
		t.Error("arrays of another length must be left alone")
	}
	if _, err := patchBTFArrays(obj, 12345, 1); err == nil {
		t.Error("patching nothing must be an error: the resize would silently not happen")
	}
}
