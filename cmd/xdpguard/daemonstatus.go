package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/state"
)

// daemonJSON is the daemon's status file, and whether it still runs.
type daemonJSON struct {
	Running bool `json:"running"`
	// Why says why it is taken for not running.
	Why        string `json:"why,omitempty"`
	StatusFile string `json:"status_file"`
	*state.Status
}

// readDaemon reads the status file; a missing or unreadable file means the
// daemon does not run (with this state directory), and says so.
func readDaemon(store state.Store, now time.Time) *daemonJSON {
	d := &daemonJSON{StatusFile: store.StatusPath()}
	st, err := store.ReadStatus()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.Why = "no status file: it has not run with this state directory (--state-dir)"
		return d
	case err != nil:
		d.Why = fmt.Sprintf("status file unreadable: %v", err)
		return d
	}
	d.Status = &st
	d.Running, d.Why = st.Running(now)
	return d
}

// openStatusMaps opens the pinned maps, or returns nil when status should
// read the status file instead: --from-file, or maps this user may not
// open while a status file exists.
func openStatusMaps(c *cli.Context, dj *daemonJSON) (*datapath.Guard, error) {
	if c.Bool("from-file") {
		if dj.Status == nil {
			return nil, fail("--from-file: %s", dj.Why)
		}
		return nil, nil
	}
	_, g, err := openPinned(c, "status")
	if err != nil && dj.Status != nil {
		fmt.Fprintf(c.App.ErrWriter, "%v; reading the daemon's status file instead\n", err)
		return nil, nil
	}
	return g, err
}

// fileReport is `status --json` read from the status file alone.
type fileReport struct {
	Source string      `json:"source"` // "status file"
	Daemon *daemonJSON `json:"daemon"`
}

func printFromFile(c *cli.Context, dj *daemonJSON) error {
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(fileReport{Source: "status file", Daemon: dj})
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	printDaemon(tw, dj)
	st := dj.Status
	k := st.Kernel.Stats
	fmt.Fprintf(tw, "\nKernel (as of %s): %d bans at the daemon's last save; %d passed, %d dropped (ban), %d dropped (CIDR), %d kernel auto-bans\n",
		st.Written.Local().Format(time.TimeOnly), st.Kernel.Bans, k.Passed, k.DroppedBan, k.DroppedCIDR, k.AutoBans)
	fmt.Fprintf(tw, "\nThe daemon's latest bans: %d\n", len(st.Recent))
	if len(st.Recent) > 0 {
		fmt.Fprintf(tw, "  PREFIX\tORIGIN\tREASON\tDETECTOR\tEVENTS\tOFFENCE\tLAST EVIDENCE\n")
	}
	for _, b := range st.Recent {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Prefix, b.Origin, b.Reason, dash(b.Detector), num(b.Events), num(b.Offence), when(b.Last))
	}
	fmt.Fprintf(tw, "\nLog scores (highest first): %d\n", len(st.Scores))
	for i, s := range st.Scores {
		if i == 10 {
			fmt.Fprintf(tw, "  ... and %d more (--json for all)\n", len(st.Scores)-10)
			break
		}
		fmt.Fprintf(tw, "  %s\tscore %d\t%d events\n", s.Prefix, s.Score, s.Events)
	}
	return nil
}

func printDaemon(w io.Writer, d *daemonJSON) {
	if d == nil {
		return
	}
	if !d.Running {
		fmt.Fprintf(w, "Daemon: NOT running: %s\n", d.Why)
		if d.Status == nil {
			return
		}
	} else {
		cfg := d.ConfigFile
		if cfg == "" {
			cfg = "none (defaults and flags)"
		}
		fmt.Fprintf(w, "Daemon: running, pid %d, up %s, config %s\n", d.PID, time.Since(d.Started).Round(time.Second), cfg)
	}
	if d.Monitor {
		fmt.Fprintf(w, "  MONITOR mode: nothing is dropped\n")
	}
	for _, in := range d.Logs {
		last := "no line yet"
		if !in.Last.IsZero() {
			last = "last line " + ago(in.Last) + " ago"
		}
		missing := ""
		if !in.Exists {
			missing = " (does not exist)"
		}
		fmt.Fprintf(w, "  log %s%s\t%s\t%d lines, %s\n", in.Name, missing, in.Kind, in.Lines, last)
	}
	if len(d.Logs) == 0 {
		fmt.Fprintf(w, "  no log followed\n")
	}
	p := d.Pressure
	if p.On {
		fmt.Fprintf(w, "  login slots: UNDER PRESSURE since %s (%d connections waiting, %d silent)\n", p.Since.Local().Format(time.TimeOnly), p.Waiting, p.Silent)
	} else {
		fmt.Fprintf(w, "  login slots: no pressure (%d waiting, %d silent)\n", p.Waiting, p.Silent)
	}
}

// addEvidence completes the kernel's bans with what the state file says
// led to them. It reads the file without Load, which would move a corrupt
// file aside: status changes nothing. A file this user cannot read leaves
// the evidence out.
func addEvidence(bans []banJSON, store state.Store) {
	recs := records(store)
	for i, b := range bans {
		if rec, ok := recs[b.Prefix.String()]; ok && rec.Origin == b.Origin {
			bans[i].Ban = b.Ban.WithEvidence(rec)
		}
	}
}

func records(store state.Store) map[string]datapath.Ban {
	st, err := readState(store)
	out := map[string]datapath.Ban{}
	if err != nil {
		return out
	}
	for _, b := range st.Bans {
		out[b.Prefix.String()] = b
	}
	return out
}

func readState(store state.Store) (state.State, error) {
	st, err := store.Read()
	if errors.Is(err, state.ErrDropped) {
		err = nil // the intact records are the state
	}
	return st, err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func num(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func ago(t time.Time) string { return time.Since(t).Round(time.Second).String() }
