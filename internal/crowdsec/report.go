package crowdsec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"
)

// ReportFile is where the daemon leaves the link's health in its state
// directory, for `xdpguard status` (which reads the kernel's pins, and has
// no other way to reach the daemon).
const ReportFile = "crowdsec.json"

// Report is the link's health at Updated.
type Report struct {
	LAPI      string     `json:"lapi"`
	Updated   time.Time  `json:"updated"`
	Pull      *Health    `json:"pull,omitempty"` // nil without a bouncer key
	Decisions int        `json:"decisions"`      // applied in the kernel
	Push      *PushStats `json:"push,omitempty"` // nil without a machine
}

// WriteReport replaces dir's report atomically.
func WriteReport(dir string, r Report) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ReportFile+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, ReportFile))
}

// ReadReport reads dir's report; ok is false when there is none.
func ReadReport(dir string) (r Report, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if errors.Is(err, os.ErrNotExist) {
		return Report{}, false, nil
	}
	if err != nil {
		return Report{}, false, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return Report{}, false, err
	}
	return r, true, nil
}
