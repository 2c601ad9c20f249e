package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// StatusFileName is the daemon's status file in Store.Dir. The daemon
// rewrites it every StatusInterval; `xdpguard status` reads it for what
// only the daemon knows (liveness, log inputs, pressure, scores), and in
// place of the maps when it may not open them (a monitoring user without
// CAP_BPF). It is mode 0644; the user needs search permission on the
// directory (mode 0711 is enough).
const StatusFileName = "status.json"

// StatusInterval is how often the daemon writes the status file; status
// calls the daemon dead when the file is much older than that.
const StatusInterval = 2 * time.Second

// staleAfter is how old a status file may be before the daemon that
// wrote it is taken for hung or gone.
const staleAfter = 5*StatusInterval + 5*time.Second

// Status is what the running daemon publishes about itself.
type Status struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Written time.Time `json:"written"`
	// Stopped is set by a daemon that stopped cleanly.
	Stopped    time.Time  `json:"stopped,omitzero"`
	ConfigFile string     `json:"config_file,omitempty"`
	Interfaces []string   `json:"interfaces"`
	PinRoot    string     `json:"pin_root"`
	Monitor    bool       `json:"monitor"`
	Logs       []LogInput `json:"logs"`
	Pressure   Pressure   `json:"pressure"`
	// Kernel is the XDP program's counters and bans, for readers that
	// cannot open the maps.
	Kernel KernelSummary `json:"kernel"`
	// Recent are the daemon's latest bans with their evidence, newest
	// first (at most MaxRecent).
	Recent []datapath.Ban `json:"recent_bans"`
	// Scores are the sources the log layer is scoring, highest first (at
	// most MaxScores): a source not listed has a lower score or none.
	Scores []Score `json:"scores"`
}

// Caps on the lists in the status file, which is rewritten every few
// seconds.
const (
	MaxRecent = 100
	MaxScores = 1000
)

// LogInput is one followed log: a file or the journal.
type LogInput struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"` // file or journal
	Exists bool   `json:"exists"`
	Lines  uint64 `json:"lines"`
	// Last is when its last line arrived; zero: none yet.
	Last time.Time `json:"last,omitzero"`
}

// Pressure is the slot-holder detector's view of the login slots.
type Pressure struct {
	On      bool      `json:"on"`
	Since   time.Time `json:"since,omitzero"`
	Waiting int       `json:"waiting"` // connections in the accept queues
	Silent  int       `json:"silent"`  // accepted connections quiet for the pressure idle
}

// KernelSummary is the kernel's side, as of Written.
type KernelSummary struct {
	Stats datapath.Stats `json:"counters"`
	// Bans is how many were in force at the daemon's last compaction of
	// the state journal (or its restore at start).
	Bans int `json:"bans"`
}

// Score is a source's current log score.
type Score struct {
	Prefix netip.Prefix `json:"prefix"`
	Score  int          `json:"score"`
	Events int          `json:"events"`
}

// StatusPath is the status file's path.
func (s Store) StatusPath() string { return filepath.Join(s.Dir, StatusFileName) }

// WriteStatus replaces the status file atomically (temp file and rename),
// without fsync: it describes the moment, and a crash makes it stale,
// which readers detect.
func (s Store) WriteStatus(st Status) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, StatusFileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Chmod(0o644)
	if err := errors.Join(werr, cerr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("status: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.StatusPath()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("status: %w", err)
	}
	return nil
}

// ReadStatus reads the status file.
func (s Store) ReadStatus() (Status, error) {
	var st Status
	data, err := os.ReadFile(s.StatusPath())
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", s.StatusPath(), err)
	}
	return st, nil
}

// Running says whether the daemon that wrote st still runs at now, and if
// not, why it is taken for gone.
func (st Status) Running(now time.Time) (bool, string) {
	switch {
	case !st.Stopped.IsZero():
		return false, fmt.Sprintf("stopped at %s", st.Stopped.Format(time.RFC3339))
	case st.PID <= 0:
		return false, "the status file names no process"
	case !pidAlive(st.PID):
		return false, fmt.Sprintf("process %d is gone (status last written %s ago)", st.PID, now.Sub(st.Written).Round(time.Second))
	case now.Sub(st.Written) > staleAfter:
		return false, fmt.Sprintf("process %d has not written its status for %s (hung, or another process took its pid)",
			st.PID, now.Sub(st.Written).Round(time.Second))
	}
	return true, ""
}

// pidAlive: signal 0 checks existence; EPERM means it exists under
// another user.
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
