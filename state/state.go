// Package state persists xdpguard's active bans and offender history in one
// JSON file, so that bans survive daemon restarts and reboots.
//
// Expiry is stored as wall-clock time: the kernel's ban map keys expiry to
// the monotonic clock, which restarts at boot, so a monotonic deadline read
// back after a reboot would be meaningless.
//
// Writes are atomic (temp file in the same directory, fsync, rename, fsync
// of the directory): after a crash at any point the file holds either the
// old or the new state, never a mix. A file that cannot be decoded is moved
// aside and reported; the daemon then starts with an empty state instead of
// refusing to run.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Version is the format written by this package. Bump it when a change
// would make an older xdpguard misread the file.
const Version = 1

// FileName is the state file's name inside Store.Dir.
const FileName = "state.json"

// Origins of a ban.
const (
	OriginKernel = "kernel" // the XDP program's SYN-rate auto-ban
	OriginLog    = "log"    // a logwatch decision
	OriginManual = "manual" // `xdpguard ban`
	// OriginCrowdsec is a CrowdSec LAPI decision; its Reason names the
	// decision's scenario.
	OriginCrowdsec = "crowdsec"
)

// ErrCorrupt marks a state file that could not be read or decoded. It has
// been moved aside and Load returned an empty state.
var ErrCorrupt = errors.New("state file corrupt")

// ErrFutureVersion marks a file written by a newer xdpguard. It is left in
// place (it is valid, and a downgrade should not destroy it); the caller
// should refuse to run rather than overwrite it.
var ErrFutureVersion = errors.New("state file from a newer xdpguard")

// Ban is one active ban.
type Ban struct {
	Prefix netip.Prefix `json:"prefix"`
	// Expires is wall-clock time. The zero time means the ban never
	// expires (a manual ban without a duration).
	Expires time.Time `json:"expires,omitzero"`
	Origin  string    `json:"origin"` // OriginKernel, OriginLog, OriginManual or OriginCrowdsec
	Reason  string    `json:"reason,omitempty"`
	Created time.Time `json:"created,omitzero"`
}

// Expired reports whether the ban has run out at now.
func (b Ban) Expired(now time.Time) bool {
	return !b.Expires.IsZero() && !now.Before(b.Expires)
}

// Offender is the repeat-offence history of one (masked) source, which
// drives escalating ban durations across restarts. Its fields are those of
// logwatch.Offender (without importing it), so one converts to the other
// with a plain type conversion.
type Offender struct {
	Prefix netip.Prefix `json:"prefix"`
	Bans   []time.Time  `json:"bans,omitempty"` // when each ban within the history began
	Until  time.Time    `json:"until,omitzero"` // end of the latest ban
	Reason string       `json:"reason,omitempty"`
}

// State is the whole persisted state.
type State struct {
	Version   int        `json:"version"`
	Bans      []Ban      `json:"bans"`
	Offenders []Offender `json:"offenders"`
}

// Store reads and writes the state file in Dir.
type Store struct {
	Dir string
}

// Path is the state file's path.
func (s Store) Path() string { return filepath.Join(s.Dir, FileName) }

// Load reads the state file. A missing file is an empty state and no
// error (first start). Bans that have already expired are dropped.
//
// A file that cannot be read or decoded is renamed to
// state.json.corrupt-<unix seconds>; Load returns an empty state and an
// error that matches ErrCorrupt and names both paths, for the caller to log.
// A permission error is returned as is (nothing is moved: the caller may
// simply lack the rights, as `xdpguard status` run by a user does). A file
// from a newer version returns an error matching ErrFutureVersion.
func (s Store) Load() (State, error) {
	return s.load(time.Now())
}

func (s Store) load(now time.Time) (State, error) {
	path := s.Path()
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		return empty(), nil
	case errors.Is(err, fs.ErrPermission):
		return empty(), fmt.Errorf("state: %w", err)
	default:
		return empty(), s.setAside(now, err)
	}
	st, err := Decode(data)
	if errors.Is(err, ErrFutureVersion) {
		return empty(), fmt.Errorf("state: %s: %w", path, err)
	}
	if err != nil {
		return empty(), s.setAside(now, err)
	}
	st.prune(now)
	return st, nil
}

func empty() State {
	return State{Version: Version, Bans: []Ban{}, Offenders: []Offender{}}
}

// setAside renames the bad file out of the way so that the next Save does
// not destroy the evidence and the next start does not trip over it again.
func (s Store) setAside(now time.Time, cause error) error {
	path := s.Path()
	base := path + ".corrupt-" + strconv.FormatInt(now.Unix(), 10)
	dst := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = base + "." + strconv.Itoa(i)
	}
	if err := os.Rename(path, dst); err != nil {
		return fmt.Errorf("state: %s: %w: %w; moving it aside failed: %w", path, ErrCorrupt, cause, err)
	}
	return fmt.Errorf("state: %s: %w: %w; moved to %s, starting with an empty state", path, ErrCorrupt, cause, dst)
}

// Decode parses and checks a state file's contents. It is what Load uses,
// exported for tools and tests; it does not drop expired bans.
func Decode(data []byte) (State, error) {
	var f struct {
		Version   *int       `json:"version"`
		Bans      []Ban      `json:"bans"`
		Offenders []Offender `json:"offenders"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		// A newer format may not fit these types at all; it must still
		// be reported as newer, not as corrupt.
		var head struct {
			Version int `json:"version"`
		}
		if json.Unmarshal(data, &head) == nil && head.Version > Version {
			return State{}, futureErr(head.Version)
		}
		return State{}, fmt.Errorf("decode: %w", err)
	}
	switch {
	case f.Version == nil:
		return State{}, errors.New("no version field")
	case *f.Version > Version:
		return State{}, futureErr(*f.Version)
	case *f.Version < 1:
		return State{}, fmt.Errorf("invalid version %d", *f.Version)
	}
	st := State{Version: *f.Version, Bans: f.Bans, Offenders: f.Offenders}
	if err := st.check(); err != nil {
		return State{}, err
	}
	if st.Bans == nil {
		st.Bans = []Ban{}
	}
	if st.Offenders == nil {
		st.Offenders = []Offender{}
	}
	return st, nil
}

func futureErr(v int) error {
	return fmt.Errorf("%w: version %d, this xdpguard reads up to %d", ErrFutureVersion, v, Version)
}

// check rejects records xdpguard never writes. One bad record makes the
// file suspect as a whole, so it is refused rather than partly trusted.
func (st *State) check() error {
	for i, b := range st.Bans {
		if err := checkPrefix(b.Prefix); err != nil {
			return fmt.Errorf("bans[%d]: %w", i, err)
		}
		switch b.Origin {
		case OriginKernel, OriginLog, OriginManual, OriginCrowdsec:
		default:
			return fmt.Errorf("bans[%d] (%s): unknown origin %q", i, b.Prefix, b.Origin)
		}
	}
	for i, o := range st.Offenders {
		if err := checkPrefix(o.Prefix); err != nil {
			return fmt.Errorf("offenders[%d]: %w", i, err)
		}
	}
	return nil
}

func checkPrefix(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return errors.New("missing or invalid prefix")
	case p.Addr().Zone() != "" || p.Addr().Is4In6():
		return fmt.Errorf("prefix %s: zoned or IPv4-mapped", p)
	case p.Masked() != p:
		return fmt.Errorf("prefix %s: host bits set", p)
	}
	return nil
}

// prune drops expired bans and merges duplicate prefixes, keeping the
// longest-lasting ban, so a state file edited by hand or written across a
// crash cannot make the loader install one prefix twice.
func (st *State) prune(now time.Time) {
	idx := make(map[netip.Prefix]int, len(st.Bans))
	out := st.Bans[:0]
	for _, b := range st.Bans {
		if b.Expired(now) {
			continue
		}
		if j, ok := idx[b.Prefix]; ok {
			if outlasts(b, out[j]) {
				out[j] = b
			}
			continue
		}
		idx[b.Prefix] = len(out)
		out = append(out, b)
	}
	clear(st.Bans[len(out):])
	st.Bans = out
}

func outlasts(a, b Ban) bool {
	if a.Expires.IsZero() || b.Expires.IsZero() {
		return a.Expires.IsZero() && !b.Expires.IsZero()
	}
	return a.Expires.After(b.Expires)
}

// Save writes st atomically, creating Dir (mode 0700) if needed. The
// Version field is set by Save. Records that Load would refuse are refused
// here, so a bug elsewhere cannot write a file that the next start sets
// aside.
func (s Store) Save(st State) error {
	st.Version = Version
	if st.Bans == nil {
		st.Bans = []Ban{}
	}
	if st.Offenders == nil {
		st.Offenders = []Offender{}
	}
	if err := st.check(); err != nil {
		return fmt.Errorf("state: refusing to save: %w", err)
	}
	data, err := encode(st)
	if err != nil {
		return fmt.Errorf("state: encode: %w", err)
	}
	return s.writeAtomic(data)
}

// encode writes one record per line, which keeps the file greppable and
// diffable; it is still plain JSON, in the same shape encoding/json gives
// these types. It is written by hand because reflection-based encoding
// took 4 µs a record, and the daemon saves after every batch of bans.
func encode(st State) ([]byte, error) {
	b := make([]byte, 0, 64+len(st.Bans)*200+len(st.Offenders)*120)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(st.Version), 10)
	b = append(b, ",\n\"bans\":["...)
	for i, x := range st.Bans {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n{\"prefix\":"...)
		b = appendPrefix(b, x.Prefix)
		if !x.Expires.IsZero() {
			b = append(b, `,"expires":`...)
			b = appendTime(b, x.Expires)
		}
		b = append(b, `,"origin":`...)
		b = appendString(b, x.Origin)
		if x.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendString(b, x.Reason)
		}
		if !x.Created.IsZero() {
			b = append(b, `,"created":`...)
			b = appendTime(b, x.Created)
		}
		b = append(b, '}')
	}
	b = append(b, "],\n\"offenders\":["...)
	for i, x := range st.Offenders {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n{\"prefix\":"...)
		b = appendPrefix(b, x.Prefix)
		if len(x.Bans) > 0 {
			b = append(b, `,"bans":[`...)
			for j, t := range x.Bans {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendTime(b, t)
			}
			b = append(b, ']')
		}
		if !x.Until.IsZero() {
			b = append(b, `,"until":`...)
			b = appendTime(b, x.Until)
		}
		if x.Reason != "" {
			b = append(b, `,"reason":`...)
			b = appendString(b, x.Reason)
		}
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	return b, nil
}

func appendPrefix(b []byte, p netip.Prefix) []byte {
	b = append(b, '"')
	b = p.AppendTo(b)
	return append(b, '"')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString quotes s as JSON. Reasons are short ASCII in practice; the
// rest (quotes, control bytes, non-ASCII, invalid UTF-8) goes through
// encoding/json so escaping matches it exactly.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // cannot fail for a string
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func (s Store) writeAtomic(data []byte) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, FileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("state: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("state: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.Path()); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	done = true
	// The rename is durable only once the directory entry is on disk.
	d, err := os.Open(s.Dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("state: fsync %s: %w", s.Dir, err)
	}
	return nil
}
