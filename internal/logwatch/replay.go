package logwatch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// ErrUnreadable wraps errors opening or reading a file given to Replay.
var ErrUnreadable = errors.New("unreadable file")

// LoadConfig reads a YAML file holding a Config, on top of the defaults.
// Unknown keys are errors, so a typo does not silently keep a default.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	f, err := os.Open(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ReplayOptions controls Replay's output.
type ReplayOptions struct {
	// JSON writes one object per matched line, then a summary object,
	// instead of the text report.
	JSON bool
}

// WouldBan is one ban decision of a replay.
type WouldBan struct {
	IP       string          `json:"ip"` // the masked prefix, e.g. "198.18.0.7/32"
	Events   int             `json:"events"`
	Score    int             `json:"score"`
	Reason   datapath.Reason `json:"reason"`
	Rule     string          `json:"rule"`
	Duration string          `json:"duration"`
	Offence  int             `json:"offence"`
	Time     time.Time       `json:"time"`
}

// ReplaySummary is the result of a replay. Its JSON field names are stable.
type ReplaySummary struct {
	Files       []string    `json:"files"`
	Lines       uint64      `json:"lines"`
	Bytes       int64       `json:"bytes"`
	Matched     uint64      `json:"matched"`
	Missed      uint64      `json:"missed"`
	Capped      uint64      `json:"capped"`
	Seconds     float64     `json:"seconds"`
	LinesPerSec float64     `json:"lines_per_sec"`
	Rules       []RuleCount `json:"rules"`
	// Unparsed counts lines in no header form logwatch knows, in all
	// files; PerFile splits lines and unparsed lines by file, so that a
	// file nobody understands shows up instead of matching nothing.
	Unparsed uint64      `json:"unparsed"`
	PerFile  []FileCount `json:"per_file"`
	// Pressure counts Dovecot's process_limit/client_limit warnings.
	Pressure uint64     `json:"pressure"`
	WouldBan []WouldBan `json:"would_ban"`
	// BelowThreshold counts sources with a score that were never banned.
	BelowThreshold int `json:"below_threshold"`
}

// FileCount is one file's share of a replay.
type FileCount struct {
	File     string `json:"file"`
	Lines    uint64 `json:"lines"`
	Unparsed uint64 `json:"unparsed"`
}

type lineRecord struct {
	File  string `json:"file"`
	Line  int    `json:"line"`
	Rule  string `json:"rule"`
	Event Kind   `json:"event"`
	IP    string `json:"ip"`
}

// Replay runs the rules over whole files, from their start, scoring each
// line at its own timestamp (the way `xdpguard logtest` works), and writes
// the report to w. All files are opened before any is read, so an
// unreadable one stops the run before it reports anything.
func Replay(cfg Config, files []string, w io.Writer, opt ReplayOptions) (ReplaySummary, error) {
	sum := ReplaySummary{Files: files, Rules: []RuleCount{}, WouldBan: []WouldBan{}, PerFile: make([]FileCount, len(files))}
	e, err := New(cfg)
	if err != nil {
		return sum, fmt.Errorf("config: %w", err)
	}
	var fds []*os.File
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	for _, name := range files {
		f, err := os.Open(name)
		if err == nil {
			var st os.FileInfo
			if st, err = f.Stat(); err == nil && st.IsDir() {
				err = errors.New("is a directory")
			}
		}
		if err != nil {
			return sum, fmt.Errorf("%w: %s: %w", ErrUnreadable, name, err)
		}
		fds = append(fds, f)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	start := time.Now()
	last := start
	for i, f := range fds {
		name := files[i]
		fc := &sum.PerFile[i]
		fc.File = name
		r := bufio.NewReaderSize(f, cfg.MaxLineBytes+1)
		n := 0
		for {
			line, err := r.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				// Longer than MaxLineBytes: skip the rest of it.
				n++
				fc.Lines++
				sum.Lines++
				sum.Capped++
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = r.ReadSlice('\n')
				}
				if err != nil && !errors.Is(err, io.EOF) {
					return sum, fmt.Errorf("%w: %s: %w", ErrUnreadable, name, err)
				}
				continue
			}
			if len(line) > 0 {
				n++
				sum.Bytes += int64(len(line))
				line = bytes.TrimSuffix(line, []byte("\n"))
				res := e.ProcessHistory(line, name, last)
				if !res.Time.IsZero() {
					last = res.Time
				}
				fc.Lines++
				if res.Format == FormatNone && len(line) > 0 {
					fc.Unparsed++
				}
				if res.Matched {
					if opt.JSON {
						if err := enc.Encode(lineRecord{File: name, Line: n, Rule: res.Rule, Event: res.Kind, IP: res.Addr.String()}); err != nil {
							return sum, err
						}
					}
					if d := res.Decision; d != nil {
						sum.WouldBan = append(sum.WouldBan, WouldBan{IP: d.Prefix.String(), Events: d.Events, Score: d.Score,
							Reason: d.Reason, Rule: d.Rule, Duration: d.Duration.String(), Offence: d.Offence, Time: d.Time})
					}
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return sum, fmt.Errorf("%w: %s: %w", ErrUnreadable, name, err)
			}
		}
	}
	elapsed := time.Since(start)
	c := e.Counters()
	sum.Lines += c.Lines
	sum.Capped += c.Capped
	sum.Missed = c.Missed
	sum.Pressure = c.Pressure
	for _, fc := range sum.PerFile {
		sum.Unparsed += fc.Unparsed
	}
	for _, rc := range c.Matched {
		sum.Matched += rc.Lines
	}
	sum.Rules = append(sum.Rules, c.Matched...)
	sum.Seconds = elapsed.Seconds()
	if sum.Seconds > 0 {
		sum.LinesPerSec = float64(sum.Lines) / sum.Seconds
	}
	sum.BelowThreshold = e.BelowThreshold()
	if opt.JSON {
		if err := enc.Encode(struct {
			Summary ReplaySummary `json:"summary"`
		}{sum}); err != nil {
			return sum, err
		}
		return sum, bw.Flush()
	}
	writeReport(bw, &sum)
	return sum, bw.Flush()
}

func writeReport(w io.Writer, s *ReplaySummary) {
	fmt.Fprintf(w, "Lines: %d (%d matched, %d missed, %d too long) in %.3fs: %.0f lines/s, %.1f MB/s\n\n",
		s.Lines, s.Matched, s.Missed, s.Capped, s.Seconds, s.LinesPerSec, float64(s.Bytes)/1e6/max(s.Seconds, 1e-9))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tEVENT\tLINES")
	rules := append([]RuleCount(nil), s.Rules...)
	sort.Slice(rules, func(i, j int) bool {
		if rules[i].Rule != rules[j].Rule {
			return rules[i].Rule < rules[j].Rule
		}
		return rules[i].Kind < rules[j].Kind
	})
	for _, r := range rules {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Rule, r.Kind, r.Lines)
	}
	fmt.Fprintf(tw, "(none)\tmissed\t%d\n", s.Missed)
	tw.Flush()
	if s.Pressure > 0 {
		fmt.Fprintf(w, "\nDovecot limit warnings (process_limit/client_limit reached): %d\n", s.Pressure)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tLINES\tUNPARSED")
	for _, fc := range s.PerFile {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", fc.File, fc.Lines, fc.Unparsed)
	}
	tw.Flush()
	for _, fc := range s.PerFile {
		if fc.Unparsed > 0 {
			fmt.Fprintf(w, "warning: %s: %d of %d lines are in no log format logtest knows; they cannot match\n", fc.File, fc.Unparsed, fc.Lines)
		}
	}
	fmt.Fprintf(w, "\nWould ban %d sources (%d more had a score below the threshold):\n", len(s.WouldBan), s.BelowThreshold)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(s.WouldBan) > 0 {
		fmt.Fprintln(tw, "PREFIX\tEVENTS\tSCORE\tREASON\tRULE\tDURATION\tOFFENCE\tAT")
	}
	for _, b := range s.WouldBan {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", b.IP, b.Events, b.Score, b.Reason, b.Rule, b.Duration, b.Offence, b.Time.Format(time.RFC3339))
	}
	tw.Flush()
}

// BelowThreshold counts the sources with a score that have no ban in the
// history: the attackers that stayed under the threshold.
func (e *Engine) BelowThreshold() int {
	n := 0
	for k, s := range e.sources {
		if _, banned := e.hist.Get(e.prefixOf(k, k.hi == 0 && k.lo>>32 == 0xffff)); s.score > 0 && !banned {
			n++
		}
	}
	return n
}
