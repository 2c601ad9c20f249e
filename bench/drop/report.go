package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sample is one flood's outcome.
type sample struct {
	NsPerPkt float64 // DUT receive-thread CPU ns per frame handled
	Sent     uint64  // frames the generator produced
	Handled  uint64  // frames the DUT's NAPI took off its ring
	ToTCP    uint64  // segments that reached the DUT's TCP
	Seconds  float64
	Client   clientResult
}

// row is one mechanism at one banned-set size.
type row struct {
	Mech    string
	Mode    string
	Filter  bool
	Size    int
	Samples []sample
	Note    string // e.g. how long loading the bans took
	Err     string // why there are no (or fewer) samples
}

// merge adds another round's samples of the same cell. The first round's
// note stays; errors accumulate, since each round sets up afresh.
func (r *row) merge(o row) {
	r.Samples = append(r.Samples, o.Samples...)
	if o.Err != "" && !strings.Contains(r.Err, o.Err) {
		r.Err = strings.TrimPrefix(r.Err+"; "+o.Err, "; ")
	}
}

func (r row) label() string {
	if r.Mode == "" {
		return r.Mech
	}
	return r.Mech + " (" + r.Mode + ")"
}

// spread is the median, minimum and maximum of the per-packet cost.
func (r row) spread() (med, lo, hi float64, ok bool) {
	if len(r.Samples) == 0 {
		return 0, 0, 0, false
	}
	v := make([]float64, len(r.Samples))
	for i, s := range r.Samples {
		v[i] = s.NsPerPkt
	}
	return median(v), slices.Min(v), slices.Max(v), true
}

// median of an odd count is the middle value; of an even count, the mean
// of the two middle ones.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// client sums the legitimate client over all runs of a row.
func (r row) client() (okPct, p50, p99 float64, ok bool) {
	var att, good int
	var p50s, p99s []float64
	for _, s := range r.Samples {
		att += s.Client.Attempts
		good += s.Client.OK
		if s.Client.OK > 0 {
			p50s = append(p50s, s.Client.P50us)
			p99s = append(p99s, s.Client.P99us)
		}
	}
	if att == 0 {
		return 0, 0, 0, false
	}
	// Percentiles of runs are not percentiles of the union; the median of
	// each run's figure is stable and honest enough for a table.
	if len(p50s) > 0 {
		p50, p99 = median(p50s), median(p99s)
	}
	return 100 * float64(good) / float64(att), p50, p99, true
}

func (r row) mpps() float64 {
	var v []float64
	for _, s := range r.Samples {
		if s.Seconds > 0 {
			v = append(v, float64(s.Handled)/s.Seconds/1e6)
		}
	}
	if len(v) == 0 {
		return 0
	}
	return median(v)
}

func (r row) progress() string {
	med, lo, hi, ok := r.spread()
	if !ok {
		return fmt.Sprintf("%-40s %9s banned: no result: %s", r.label(), count(r.Size), r.Err)
	}
	var sent, secs float64
	for _, x := range r.Samples {
		sent += float64(x.Sent)
		secs += x.Seconds
	}
	s := fmt.Sprintf("%-40s %9s banned: %7.0f ns/pkt (%.0f–%.0f), %.2f Mpps handled of %.2f sent", r.label(), count(r.Size), med, lo, hi, r.mpps(), sent/secs/1e6)
	if r.Note != "" {
		s += "; " + r.Note
	}
	if r.Err != "" {
		s += "; error: " + r.Err
	}
	return s
}

// synRow is one mechanism in the SYN-rate flood scenario.
type synRow struct {
	row
	Dropped string // what the mechanism itself says it dropped
}

type report struct {
	Sizes      []int
	Runs       int
	Flood      time.Duration
	LoadBefore string
	LoadAfter  string
	Kernel     string
	Elapsed    time.Duration
	Rows       []row
	Syn        []synRow
	SynSetup   string
}

func (rp *report) find(mech, mode string, size int) (row, bool) {
	for _, r := range rp.Rows {
		if r.Mech == mech && r.Mode == mode && r.Size == size {
			return r, true
		}
	}
	return row{}, false
}

// ratio is r's median over the reference's, or "" when either is missing.
func ratio(r, ref row, ok bool) string {
	a, _, _, ok1 := r.spread()
	b, _, _, ok2 := ref.spread()
	if !ok || !ok1 || !ok2 || b == 0 {
		return "–"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "×"
}

const (
	floorName = "XDP_DROP (floor)"
	nftName   = "nftables ingress set"
)

// tableRows renders the main table as markdown rows.
func (rp *report) tableRows() []string {
	out := []string{
		"| mechanism | banned | ns/packet, median | min–max | × floor | ÷ nft ingress | Mpps handled | client ok | p50 | p99 |",
		"|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
	}
	for _, r := range rp.Rows {
		med, lo, hi, ok := r.spread()
		if !ok {
			out = append(out, fmt.Sprintf("| %s | %s | n/a: %s | | | | | | | |", r.label(), count(r.Size), firstLine(r.Err)))
			continue
		}
		floorMode := r.Mode
		if floorMode == "" {
			floorMode = "native"
		}
		floor, fok := rp.find(floorName, floorMode, r.Size)
		nft, nok := rp.find(nftName, "", r.Size)
		toFloor, toNft := ratio(r, floor, fok), "–"
		if nm, _, _, ok := nft.spread(); nok && ok && r.Mech != nftName {
			toNft = strconv.FormatFloat(nm/med, 'f', 2, 64) + "×"
		}
		cl, p50, p99 := r.clientCells()
		out = append(out, fmt.Sprintf("| %s | %s | %.0f ns | %.0f–%.0f | %s | %s | %.2f | %s | %s | %s |",
			r.label(), count(r.Size), med, lo, hi, toFloor, toNft, r.mpps(), cl, p50, p99))
	}
	return out
}

// clientCells are the table's client ok, p50 and p99 cells, "–" where
// there is no figure.
func (r row) clientCells() (okPct, p50, p99 string) {
	okPct, p50, p99 = "–", "–", "–"
	if pct, a, b, ok := r.client(); ok {
		okPct = fmt.Sprintf("%.1f%%", pct)
		if a > 0 {
			p50, p99 = latency(a), latency(b)
		}
	}
	return okPct, p50, p99
}

func latency(us float64) string {
	if us >= 1000 {
		return fmt.Sprintf("%.1f ms", us/1000)
	}
	return fmt.Sprintf("%.0f µs", us)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return strings.ReplaceAll(s, "|", "/")
}

func (rp *report) synRows() []string {
	out := []string{
		"| mechanism | ns/packet, median | min–max | reached TCP | dropped (own counters) | client ok | p50 | p99 |",
		"|---|--:|--:|--:|--:|--:|--:|--:|",
	}
	for _, r := range rp.Syn {
		med, lo, hi, ok := r.spread()
		if !ok {
			out = append(out, fmt.Sprintf("| %s | n/a: %s | | | | | | |", r.label(), firstLine(r.Err)))
			continue
		}
		var handled, tcp uint64
		for _, s := range r.Samples {
			handled += s.Handled
			tcp += s.ToTCP
		}
		cl, p50, p99 := r.clientCells()
		out = append(out, fmt.Sprintf("| %s | %.0f ns | %.0f–%.0f | %.1f%% | %s | %s | %s | %s |",
			r.label(), med, lo, hi, 100*float64(tcp)/float64(max(handled, 1)), r.Dropped, cl, p50, p99))
	}
	return out
}

func (rp *report) notes() []string {
	var out []string
	for _, r := range append(slices.Clone(rp.Rows), rowsOf(rp.Syn)...) {
		if r.Note != "" {
			out = append(out, fmt.Sprintf("- %s, %s banned: %s", r.label(), count(r.Size), r.Note))
		}
		if r.Err != "" && len(r.Samples) > 0 {
			out = append(out, fmt.Sprintf("- %s, %s banned: error: %s", r.label(), count(r.Size), firstLine(r.Err)))
		}
	}
	return out
}

func rowsOf(s []synRow) []row {
	out := make([]row, len(s))
	for i := range s {
		out[i] = s[i].row
	}
	return out
}

func (rp *report) header() string {
	return fmt.Sprintf("kernel %s, %d run(s) of %v per cell, load average before %s, after %s, %v in all",
		rp.Kernel, rp.Runs, rp.Flood, rp.LoadBefore, rp.LoadAfter, rp.Elapsed.Round(time.Second))
}

// table is what `make bench-drop` prints.
func (rp *report) table() string {
	var b strings.Builder
	b.WriteString(rp.header() + "\n\n")
	for _, l := range rp.tableRows() {
		b.WriteString(l + "\n")
	}
	if len(rp.Syn) > 0 {
		b.WriteString("\nSYN-rate flood: " + rp.SynSetup + "\n\n")
		for _, l := range rp.synRows() {
			b.WriteString(l + "\n")
		}
	}
	if n := rp.notes(); len(n) > 0 {
		b.WriteString("\n" + strings.Join(n, "\n") + "\n")
	}
	return b.String()
}

// svg draws the median per-packet cost of each mechanism as horizontal
// bars, one per banned-set size, on a log scale: the costs span from about
// 100 ns to several µs, and a linear axis would flatten every XDP bar.
func (rp *report) svg() string {
	type bar struct {
		label string
		size  int
		ns    float64
	}
	var labels []string
	bars := map[string][]bar{}
	for _, r := range rp.Rows {
		med, _, _, ok := r.spread()
		if !ok {
			continue
		}
		if _, seen := bars[r.label()]; !seen {
			labels = append(labels, r.label())
		}
		bars[r.label()] = append(bars[r.label()], bar{r.label(), r.Size, med})
	}
	colors := []string{"#4c78a8", "#f58518", "#54a24b", "#b279a2"}
	const (
		left, right, top = 300.0, 40.0, 50.0
		barH, gap        = 12.0, 10.0
		width            = 950.0
	)
	lo, hi := 50.0, 10000.0
	for _, bs := range bars {
		for _, b := range bs {
			for b.ns > hi {
				hi *= 10
			}
			for b.ns < lo {
				lo /= 10
			}
		}
	}
	x := func(ns float64) float64 {
		return left + (width-left-right)*(math.Log10(ns)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	y := top
	var body strings.Builder
	for _, l := range labels {
		bs := bars[l]
		groupH := float64(len(bs)) * barH
		fmt.Fprintf(&body, `<text x="%.0f" y="%.1f" text-anchor="end" font-size="12">%s</text>`+"\n", left-8, y+groupH/2+4, html.EscapeString(l))
		for _, b := range bs {
			c := colors[slices.Index(rp.Sizes, b.size)%len(colors)]
			fmt.Fprintf(&body, `<rect class="bar" x="%.0f" y="%.1f" width="%.1f" height="%.0f" fill="%s"><title>%s, %s banned: %.0f ns</title></rect>`+"\n",
				left, y, x(b.ns)-left, barH-1, c, html.EscapeString(l), count(b.size), b.ns)
			fmt.Fprintf(&body, `<text x="%.1f" y="%.1f" font-size="10">%.0f</text>`+"\n", x(b.ns)+3, y+barH-3, b.ns)
			y += barH
		}
		y += gap
	}
	height := y + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="bold">CPU time per packet on the receiving core, ns (log scale, median of %d runs)</text>`+"\n", left-200, rp.Runs)
	for i, s := range rp.Sizes {
		fmt.Fprintf(&b, `<rect x="%.0f" y="30" width="10" height="10" fill="%s"/><text x="%.0f" y="39" font-size="11">%s banned</text>`+"\n",
			left+float64(i)*130, colors[i%len(colors)], left+float64(i)*130+14, count(s))
	}
	for d := math.Pow(10, math.Floor(math.Log10(lo))); d <= hi; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v < lo*0.999 || v > hi*1.001 {
				continue
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#ddd"/>`+"\n", x(v), top-5, x(v), y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="10" text-anchor="middle">%s</text>`+"\n", x(v), y+14, strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}

// parseSNMP reads one counter from /proc/net/snmp's header/value line pairs.
func parseSNMP(out, proto, name string) (uint64, error) {
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i++ {
		h, v := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(h) == 0 || h[0] != proto+":" || len(v) != len(h) || v[0] != proto+":" {
			continue
		}
		for j := range h {
			if h[j] == name {
				return strconv.ParseUint(v[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/net/snmp: no %s %s", proto, name)
}

// markdown is BENCHMARKS.md: the method, then this run's results.
func (rp *report) markdown(svgPath string) string {
	var b strings.Builder
	b.WriteString(mdIntro)
	fmt.Fprintf(&b, "\n## Results\n\nMeasured by `make bench-drop`: %s.\n\n", rp.header())
	if svgPath != "" {
		fmt.Fprintf(&b, "![CPU time per dropped packet](%s)\n\n", svgPath)
	}
	b.WriteString("Per-packet cost is the DUT receive thread's CPU time divided by the frames it took off its ring, median of the runs with min–max. " +
		"\"× floor\" divides by the XDP_DROP program in the same mode; \"÷ nft ingress\" is how many times cheaper than the nftables ingress set the mechanism is. " +
		"\"Mpps handled\" is the rate the DUT got through, not a capacity: the generator's offered rate and the DUT's wake-ups bound it. " +
		"The client columns are the legitimate client's connection success and connect latency (the floor drops it too, by design).\n\n")
	for _, l := range rp.tableRows() {
		b.WriteString(l + "\n")
	}
	if t := rp.targets(); len(t) > 0 {
		b.WriteString("\n### Targets (issue 17), xdpguard in native mode\n\n" + strings.Join(t, "\n") + "\n")
	}
	if r := rp.references(); len(r) > 0 {
		b.WriteString("\nFor comparison, the references in the same run:\n\n" + strings.Join(r, "\n") + "\n")
	}
	if len(rp.Syn) > 0 {
		fmt.Fprintf(&b, "\n### Per-source SYN-rate flood\n\n%s. Each run starts with empty state. \"Reached TCP\" counts segments that got to the DUT's TCP (TcpInSegs) per frame handled; the random-source share (10%%) reaching it is correct behaviour, and its TCP processing is part of the per-packet cost. \"Dropped\" is the mechanism's own count.\n\n", rp.SynSetup)
		for _, l := range rp.synRows() {
			b.WriteString(l + "\n")
		}
	}
	if n := rp.notes(); len(n) > 0 {
		b.WriteString("\n### Loading the bans\n\n" + strings.Join(n, "\n") + "\n")
	}
	if mdOutro != "" {
		b.WriteString("\n" + mdOutro)
	}
	return b.String()
}
