// Command drop measures what dropping a flood from banned sources costs the
// receiving host, for xdpguard and its peers (nftables, iptables + ipset,
// xdp-filter), against an unconditional XDP_DROP floor. `make bench-drop`
// runs it; BENCHMARKS.md explains the method and shows the last results.
//
// Everything happens in two network namespaces it creates and deletes; it
// must run as root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

type harness struct {
	env      *env
	gen      *generator
	xdpguard string // path of the xdpguard binary under test
	dur      time.Duration
	maxPkts  uint64
	lookup   lookupOpts
}

func main() {
	if len(os.Args) > 1 {
		var err error
		switch os.Args[1] {
		case "serve":
			err = serveMain(os.Args[2:])
		case "client":
			err = clientMain(os.Args[2:])
		default:
			err = benchMain(os.Args[1:])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-drop:", err)
			os.Exit(1)
		}
		return
	}
	if err := benchMain(nil); err != nil {
		fmt.Fprintln(os.Stderr, "bench-drop:", err)
		os.Exit(1)
	}
}

func benchMain(args []string) error {
	fs := flag.NewFlagSet("bench-drop", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "development run: 10,000 bans, one run, one-second floods")
	sizesF := fs.String("sizes", "10000,100000,1000000", "banned-set sizes, comma-separated")
	runs := fs.Int("runs", 3, "runs per mechanism and size; the table shows their median")
	dur := fs.Duration("for", 2*time.Second, "length of one flood")
	maxPkts := fs.Uint64("max-packets", 20_000_000, "packets per flood, at most")
	xg := fs.String("xdpguard", "bin/xdpguard", "xdpguard binary to benchmark")
	md := fs.String("md", "", "write the report here (BENCHMARKS.md)")
	svg := fs.String("svg", "", "write the bar chart here")
	jsonOut := fs.String("json", "", "write the raw results here")
	render := fs.String("render", "", "measure nothing: render -md and -svg from results written by -json")
	only := fs.String("only", "", "measure only mechanisms whose \"name mode\" contains one of these comma-separated strings")
	lookupMax := fs.Int("lookup-max", 0, "max_entries of the bare-lookup reference map; 0: the set's size")
	lookupNoPrealloc := fs.Bool("lookup-noprealloc", false, "create the bare-lookup reference map with BPF_F_NO_PREALLOC")
	synFlood := fs.Bool("synflood", true, "also run the per-source SYN-rate flood scenario")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *render != "" {
		b, err := os.ReadFile(*render)
		if err != nil {
			return err
		}
		var rep report
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("%s: %w", *render, err)
		}
		return rep.write(*md, *svg, "")
	}
	sizes, err := parseSizes(*sizesF)
	if err != nil {
		return err
	}
	if *quick {
		sizes, *runs, *dur = []int{10000}, 1, time.Second
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it creates namespaces and loads BPF programs")
	}
	if _, err := os.Stat(*xg); err != nil {
		return fmt.Errorf("xdpguard binary: %w (run make build)", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raise RLIMIT_MEMLOCK: %w", err)
	}

	// SIGINT and SIGTERM stop the current flood within one generator call
	// and fall through to the cleanup below.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	load := loadAvg()
	e, err := newEnv()
	if err != nil {
		return err
	}
	defer e.close()
	h := &harness{env: e, xdpguard: *xg, dur: *dur, maxPkts: *maxPkts,
		lookup: lookupOpts{maxEntries: *lookupMax, noPrealloc: *lookupNoPrealloc}}
	if h.gen, err = newGenerator(e); err != nil {
		return err
	}
	defer h.gen.Close()
	var sink link.Link
	if err := doIn(e.gen, func() (err error) {
		sink, err = link.AttachXDP(link.XDPOptions{Program: h.gen.objs.XdpSink, Interface: e.genIdx, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		return fmt.Errorf("attach sink to %s: %w", genIf, err)
	}
	defer sink.Close()
	srv, err := startServer(e)
	if err != nil {
		return err
	}
	defer srv.stop()

	all := bannedSources(sizes[len(sizes)-1])
	rep := &report{Sizes: sizes, Runs: *runs, Flood: *dur, LoadBefore: load, Kernel: kernelRelease()}
	for _, n := range sizes {
		if err := h.gen.setSources(n, 1000); err != nil {
			return err
		}
		// Rounds, not runs back to back: a burst of someone else's load
		// then spoils one run of several mechanisms, which the median
		// absorbs, instead of every run of one mechanism.
		var cells []row
		for round := 0; round < *runs; round++ {
			i := 0
			for _, m := range mechanisms() {
				if !selected(*only, m.Name+" "+m.Mode) {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r := h.measureMech(ctx, m, all[:n], 1)
				if round == 0 {
					cells = append(cells, r)
				} else {
					cells[i].merge(r)
				}
				i++
			}
		}
		for _, r := range cells {
			fmt.Fprintln(os.Stderr, r.progress())
		}
		rep.Rows = append(rep.Rows, cells...)
	}
	if *synFlood && ctx.Err() == nil {
		rep.Syn, rep.SynSetup = h.synScenario(ctx, *runs)
	}
	rep.LoadAfter = loadAvg()
	rep.Elapsed = time.Since(start)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Println(rep.table())
	return rep.write(*md, *svg, *jsonOut)
}

func (rp *report) write(md, svg, raw string) error {
	if md != "" {
		if err := os.WriteFile(md, []byte(rp.markdown(svg)), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", md, err)
		}
	}
	if svg != "" {
		if err := os.WriteFile(svg, []byte(rp.svg()), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", svg, err)
		}
	}
	if raw != "" {
		b, err := json.MarshalIndent(rp, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(raw, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", raw, err)
		}
	}
	return nil
}

// measureMech sets m up with srcs banned, floods it runs times and tears it
// down. A failure is recorded in the row, not fatal: one broken peer must
// not cost the whole table.
func (h *harness) measureMech(ctx context.Context, m mech, srcs []uint32, runs int) row {
	r := row{Mech: m.Name, Mode: m.Mode, Filter: m.Filter, Size: len(srcs)}
	note, err := m.setup(h, srcs)
	r.Note = note
	if err != nil {
		r.Err = err.Error()
		if m.teardown != nil {
			m.teardown(h)
		}
		return r
	}
	for i := 0; i < runs && ctx.Err() == nil; i++ {
		s, err := h.flood(ctx)
		if err != nil {
			r.Err = err.Error()
			break
		}
		r.Samples = append(r.Samples, s)
	}
	if err := m.teardown(h); err != nil {
		r.Err = strings.TrimSpace(r.Err + "; teardown: " + err.Error())
	}
	return r
}

// flood runs one bounded flood with the legitimate client alongside and
// returns the DUT's CPU time per frame it handled.
func (h *harness) flood(ctx context.Context) (sample, error) {
	var s sample
	pid, err := napiThread(dutIf, dutCPU)
	if err != nil {
		return s, err
	}
	if _, err := napiThread(genIf, genCPU); err != nil {
		return s, err
	}
	before, err := h.counters(pid)
	if err != nil {
		return s, err
	}
	cl, err := startClient(h.env, h.dur)
	if err != nil {
		return s, err
	}
	t0 := time.Now()
	sent, ferr := h.gen.send(ctx, h.env, h.dur, h.maxPkts)
	el := time.Since(t0)
	if ferr != nil || ctx.Err() != nil {
		cl.kill()
	}
	// Let the DUT drain its ring before reading its counters.
	time.Sleep(100 * time.Millisecond)
	after, err := h.counters(pid)
	if err != nil {
		return s, err
	}
	res, cerr := cl.wait()
	if ferr != nil {
		return s, ferr
	}
	if cerr != nil {
		return s, cerr
	}
	if after.frames <= before.frames {
		return s, fmt.Errorf("the DUT handled no frames (%d sent)", sent)
	}
	s = sample{
		NsPerPkt: float64(after.cpu-before.cpu) / float64(after.frames-before.frames),
		Sent:     sent, Handled: after.frames - before.frames, ToTCP: after.tcp - before.tcp,
		Seconds: el.Seconds(), Client: res,
	}
	return s, nil
}

// dutCounters is what the DUT has done so far: its receive thread's CPU
// time (ns), the frames its NIC took in, and the segments that reached its
// TCP.
type dutCounters struct{ cpu, frames, tcp uint64 }

// counters reads them, in that order, before and after a flood. The TCP
// count is informational: a DUT whose /proc/net/snmp cannot be read
// reports 0 rather than failing the run.
func (h *harness) counters(pid int) (dutCounters, error) {
	var c dutCounters
	var err error
	if c.cpu, err = cpuTime(pid); err != nil {
		return c, err
	}
	if c.frames, err = rxFrames(h.env); err != nil {
		return c, err
	}
	c.tcp, _ = tcpInSegs(h.env)
	return c, nil
}

func selected(only, name string) bool {
	if only == "" {
		return true
	}
	for _, o := range strings.Split(only, ",") {
		if o != "" && strings.Contains(name, o) {
			return true
		}
	}
	return false
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("-sizes: %q is not a positive count", f)
		}
		if len(out) > 0 && n < out[len(out)-1] {
			return nil, fmt.Errorf("-sizes: %q: give sizes in increasing order", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// tcpInSegs reads the DUT namespace's TCP InSegs: segments that reached TCP.
func tcpInSegs(e *env) (uint64, error) {
	out, err := in(e.dut, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	return parseSNMP(out, "Tcp", "InSegs")
}
