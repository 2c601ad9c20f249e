package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
	"github.com/xdpguard/xdpguard/internal/testutil"
)

// The state store's targets (issue 17), measured as an operator meets
// them: the built binary, its maps pinned and its program attached to a
// veth in a test namespace. `make bench-state` runs both.

// benchBans is the list size of the targets.
const benchBans = 1_000_000

// benchAddr is ban i of the list: 10.0.0.0/8, as bench/drop uses; the
// program runs only on the namespace's veth, so these bans drop nothing
// outside it.
func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// benchWorld is a namespace with a veth, a pin root and a config file.
type benchWorld struct {
	ns              *testutil.NS
	root, dir, conf string
}

func newBenchWorld(b *testing.B) *benchWorld {
	pins := testutil.PinRoot(b, "store-bench")
	w := &benchWorld{ns: testutil.New(b, "stbn"), root: filepath.Join(pins, "pins"), dir: b.TempDir()}
	testutil.Veth(b, w.ns, "xg-stb0", []netip.Prefix{netip.MustParsePrefix("198.18.70.1/24")}, w.ns, "xg-stb1", nil)
	logFile := filepath.Join(w.dir, "maillog")
	os.WriteFile(logFile, nil, 0o644)
	w.conf = filepath.Join(w.dir, "xdpguard.yaml")
	cfg := fmt.Sprintf("interfaces: [xg-stb0]\nkernel: {max_bans: %d}\nlogs: {files: [%s]}\npin_root: %s\nstate_dir: %s\n",
		2*benchBans, logFile, w.root, w.state())
	if err := os.WriteFile(w.conf, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.cli(b, "detach") })
	return w
}

func (w *benchWorld) state() string { return filepath.Join(w.dir, "state") }

// cli runs the binary in the namespace with the world's config.
func (w *benchWorld) cli(b *testing.B, args ...string) string {
	b.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + w.ns.Path(), binary}, append(args, "--config", w.conf)...)...)
	cmd.Env = append(os.Environ(), "XDPGUARD_STATE_DIR="+w.state())
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("xdpguard %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func benchList(b *testing.B, n int) string {
	path := filepath.Join(b.TempDir(), "bans.txt")
	var sb strings.Builder
	for i := range n {
		sb.WriteString(benchAddr(i).String())
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkBanFromFile: `xdpguard ban --from FILE` with a million
// addresses, process start to exit, the bans in the kernel and synced to
// the state journal. Target: under 1 s, the state under 40 MB.
func BenchmarkBanFromFile(b *testing.B) {
	w := newBenchWorld(b)
	w.cli(b, "attach", "--iface", "xg-stb0")
	list := benchList(b, benchBans)
	for b.Loop() {
		b.StopTimer()
		w.cli(b, "unban", "--all")
		os.RemoveAll(w.state())
		b.StartTimer()
		w.cli(b, "ban", "--from", list, "--for", "1h")
	}
	b.StopTimer()
	st, err := state.Store{Dir: w.state()}.Read()
	if err != nil || len(st.Bans) != benchBans {
		b.Fatalf("the journal holds %d bans, %v", len(st.Bans), err)
	}
	b.ReportMetric(float64(state.Store{Dir: w.state()}.Size())/1e6, "MB-state")
}

// BenchmarkRestart: `xdpguard run` after `detach --keep-state` with a
// million bans in the journal, from the exec to the daemon's "running"
// (bans restored to the kernel, program attached). Target: under 1 s.
func BenchmarkRestart(b *testing.B) {
	w := newBenchWorld(b)
	// What `ban --from` leaves in the journal (BenchmarkBanFromFile).
	ps := make([]netip.Prefix, benchBans)
	for i := range ps {
		ps[i] = netip.PrefixFrom(benchAddr(i), 32)
	}
	now := time.Now()
	var batch state.Batch
	batch.BanAll(datapath.Ban{Expires: now.Add(24 * time.Hour), Origin: datapath.OriginManual, Reason: datapath.ReasonManual,
		Detector: datapath.DetectorManual, Events: 1, First: now, Last: now}, ps)
	if err := (state.Store{Dir: w.state()}).Commit(&batch); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		w.cli(b, "detach", "--keep-state")
		b.StartTimer()
		cmd := exec.Command("nsenter", "--net="+w.ns.Path(), binary, "run", "--config", w.conf)
		cmd.Env = append(os.Environ(), "XDPGUARD_STATE_DIR="+w.state())
		out, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdout = cmd.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		restored := ""
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "restored bans") {
				restored = sc.Text()
			}
			if strings.Contains(sc.Text(), "msg=running") {
				break
			}
		}
		b.StopTimer()
		cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			for sc.Scan() {
			}
		}()
		cmd.Wait()
		if !strings.Contains(restored, fmt.Sprintf("count=%d", benchBans)) {
			b.Fatalf("the daemon did not restore %d bans: %q", benchBans, restored)
		}
		b.StartTimer()
	}
}
