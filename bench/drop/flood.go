package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpguard/xdpguard/internal/packet"
)

// progRunAttr is the BPF_PROG_TEST_RUN part of union bpf_attr. The raw
// syscall, not ebpf.Program.Run: cilium/ebpf restarts an interrupted run
// with its full repeat count, which would break the bound on packets.
type progRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

const (
	bpfProgTestRun      = 10
	bpfFTestXDPLiveFrms = 1 << 1
)

// xdpMD is struct xdp_md as BPF_PROG_RUN takes it: the ingress ifindex
// names the device the frames are transmitted from on XDP_TX.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// generator sends live frames from the generator namespace's veth.
type generator struct {
	objs  GenObjects
	frame []byte
	ctx   []byte
}

func newGenerator(e *env) (*generator, error) {
	g := &generator{}
	if err := LoadGenObjects(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("load generator programs: %w", err)
	}
	g.frame = synFrame(e)
	md := xdpMD{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(e.genIdx)}
	g.ctx, _ = binary.Append(nil, binary.NativeEndian, md)
	return g, nil
}

func (g *generator) Close() { g.objs.Close() }

// synFrame is the template SYN to the DUT's POP3 port, with both checksums
// valid, so that with no filter the TCP stack accepts it and answers.
func synFrame(e *env) []byte {
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr(dutAddr)
	f := packet.Build(packet.Spec{Src: src, Dst: dst, SrcPort: 40000, DstPort: 110, Flags: packet.SYN})
	copy(f[0:6], e.dutMAC)
	copy(f[6:12], e.genMAC)
	tcp := f[14+20:]
	var sum uint32
	s4, d4 := src.As4(), dst.As4()
	for _, w := range [][]byte{s4[:], d4[:]} {
		sum += uint32(binary.BigEndian.Uint16(w)) + uint32(binary.BigEndian.Uint16(w[2:]))
	}
	sum += 6 + uint32(len(tcp))
	for i := 0; i+1 < len(tcp); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(tcp[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(tcp[16:], ^uint16(sum))
	return f
}

// setSources makes the generator draw from the first n addresses of its
// set for setPermille of the frames, and from random addresses in
// 10.0.0.0/8 for the rest.
func (g *generator) setSources(n int, setPermille uint32) error {
	if n < 1 || n > 1<<24 {
		return fmt.Errorf("source set of %d: want 1..2^24", n)
	}
	cfg := GenGenConfig{Nsources: uint32(n), SetPermille: setPermille,
		RandBase: beU32(10 << 24), RandMask: beU32(0x00ffffff)}
	if err := g.objs.GenCfg.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write generator config: %w", err)
	}
	return nil
}

// beU32 turns a host-order address into the network-order value the
// program compares against packet bytes.
func beU32(v uint32) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return binary.NativeEndian.Uint32(b[:])
}

// send floods for at most d and at most maxPkts frames, from a thread in the
// generator namespace pinned to genCPU. Each BPF_PROG_RUN call lasts about
// a quarter of a second: every call ends with an RCU grace period, so short
// calls waste the generator's time, and long ones overshoot d.
func (g *generator) send(ctx context.Context, e *env, d time.Duration, maxPkts uint64) (uint64, error) {
	var sent uint64
	err := doIn(e.gen, func() error {
		var set unix.CPUSet
		set.Set(genCPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin generator to CPU %d: %w", genCPU, err)
		}
		per := uint64(500_000)
		start := time.Now()
		for sent < maxPkts && time.Since(start) < d && ctx.Err() == nil {
			n := min(per, maxPkts-sent)
			t0 := time.Now()
			attr := progRunAttr{
				progFD:     uint32(g.objs.XdpGen.FD()),
				dataSizeIn: uint32(len(g.frame)),
				dataIn:     uint64(uintptr(unsafe.Pointer(&g.frame[0]))),
				repeat:     uint32(n),
				ctxSizeIn:  uint32(len(g.ctx)),
				ctxIn:      uint64(uintptr(unsafe.Pointer(&g.ctx[0]))),
				flags:      bpfFTestXDPLiveFrms,
				batchSize:  64,
			}
			_, _, errno := unix.Syscall(unix.SYS_BPF, bpfProgTestRun, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
			runtime.KeepAlive(g.frame)
			runtime.KeepAlive(g.ctx)
			if errno == unix.EINTR {
				sent += n // an upper bound: the bound must hold
				continue
			}
			if errno != 0 {
				return fmt.Errorf("BPF_PROG_RUN with live frames on %s: %w", genIf, errno)
			}
			sent += n
			if el := time.Since(t0); el > 0 {
				rate := float64(n) / el.Seconds()
				per = uint64(min(max(rate/4, 10_000), 4_000_000))
			}
		}
		return nil
	})
	return sent, err
}

// cpuTime is a task's time on CPU in ns: the first field of
// /proc/PID/schedstat.
func cpuTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, fmt.Errorf("read schedstat of %d: %w", pid, err)
	}
	return parseSchedstat(string(b))
}

func parseSchedstat(s string) (uint64, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, fmt.Errorf("schedstat %q: want 3 fields", s)
	}
	v, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat %q: %w", s, err)
	}
	return v, nil
}

// rxFrames is how many frames the DUT veth's NAPI took off its ring: veth
// counts every frame there as an "xdp_packet", attached program or not.
// Frames dropped because the ring was full never reach it and cost the DUT
// nothing, so they are rightly not counted.
func rxFrames(e *env) (uint64, error) {
	out, err := in(e.dut, "ethtool", "-S", dutIf)
	if err != nil {
		return 0, err
	}
	return parseEthtoolStat(out, "rx_queue_0_xdp_packets")
}

func parseEthtoolStat(out, name string) (uint64, error) {
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == name {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("ethtool -S: no counter " + name)
}
