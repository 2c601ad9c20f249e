// Package state persists xdpguard's active bans, the allow rules added with
// `xdpguard allow`, and the offender history in one JSON file, so that they
// survive daemon restarts and reboots.
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
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// Version is the format written by this package. Bump it when a change
// would make an older xdpguard misread the file. Version 2 made reasons
// codes (version 1 kept a sentence) and added each ban's evidence; version
// 1 files are still read (legacy.go).
const Version = 2

// FileName is the state file's name inside Store.Dir.
const FileName = "state.json"

// ErrCorrupt marks a state file that could not be read or decoded. It has
// been moved aside and Load returned an empty state.
var ErrCorrupt = errors.New("state file corrupt")

// ErrFutureVersion marks a file written by a newer xdpguard. It is left in
// place (it is valid, and a downgrade should not destroy it); the caller
// should refuse to run rather than overwrite it.
var ErrFutureVersion = errors.New("state file from a newer xdpguard")

// Allow is one allow rule an operator added with `xdpguard allow`. The
// configuration file's allow list is not copied here: the file stays its
// only source, so a prefix taken out of the file does not come back from
// the state.
type Allow struct {
	Prefix netip.Prefix `json:"prefix"`
	// Expires is wall-clock time; zero means permanent.
	Expires time.Time `json:"expires,omitzero"`
}

// KnownGood is a source (masked like a ban) that has logged in
// successfully, and when it last did. Its fields are those of
// knowngood.Entry, so one converts to the other with a type conversion.
type KnownGood struct {
	Prefix   netip.Prefix `json:"prefix"`
	LastSeen time.Time    `json:"last_seen"`
}

// State is the whole persisted state.
type State struct {
	Version   int                `json:"version"`
	Bans      []datapath.Ban     `json:"bans"`
	Allow     []Allow            `json:"allow"`
	Offenders []offence.Offender `json:"offenders"`
	// JournalCursor is the journal entry the daemon read last; it reads on
	// after it (logs.journal).
	JournalCursor string `json:"journal_cursor,omitempty"`
	// KnownGood is left out of the file when empty. An older xdpguard
	// ignores the key, which only forgets who logged in: no version bump.
	KnownGood []KnownGood `json:"known_good,omitempty"`
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
	return State{Version: Version, Bans: []datapath.Ban{}, Allow: []Allow{}, Offenders: []offence.Offender{}}
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
		Version   *int               `json:"version"`
		Bans      []datapath.Ban     `json:"bans"`
		Allow     []Allow            `json:"allow"`
		Offenders []offence.Offender `json:"offenders"`
		Cursor    string             `json:"journal_cursor"`
		KnownGood []KnownGood        `json:"known_good"`
	}
	if v, ok := peekVersion(data); ok && v == 1 {
		return decodeV1(data)
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
	// Files written before allow rules were kept have no "allow": that is
	// no allow rules, not a different format.
	st := State{Version: *f.Version, Bans: f.Bans, Allow: f.Allow, Offenders: f.Offenders, JournalCursor: f.Cursor,
		KnownGood: f.KnownGood}
	if err := st.check(); err != nil {
		return State{}, err
	}
	st.fill()
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
		if !b.Origin.Known() {
			return fmt.Errorf("bans[%d] (%s): unknown origin %v", i, b.Prefix, b.Origin)
		}
		if b.Reason != 0 && !b.Reason.Known() {
			return fmt.Errorf("bans[%d] (%s): unknown reason %v", i, b.Prefix, b.Reason)
		}
	}
	for i, a := range st.Allow {
		if err := checkPrefix(a.Prefix); err != nil {
			return fmt.Errorf("allow[%d]: %w", i, err)
		}
	}
	for i, o := range st.Offenders {
		if err := checkPrefix(o.Prefix); err != nil {
			return fmt.Errorf("offenders[%d]: %w", i, err)
		}
	}
	for i, k := range st.KnownGood {
		if err := checkPrefix(k.Prefix); err != nil {
			return fmt.Errorf("known_good[%d]: %w", i, err)
		}
	}
	for i, k := range st.KnownGood {
		if err := checkPrefix(k.Prefix); err != nil {
			return fmt.Errorf("known_good[%d]: %w", i, err)
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
	st.Allow = slices.DeleteFunc(st.Allow, func(a Allow) bool { return !a.Expires.IsZero() && !now.Before(a.Expires) })
}

// fill makes nil lists empty, so the file always shows every list.
func (st *State) fill() {
	if st.Bans == nil {
		st.Bans = []datapath.Ban{}
	}
	if st.Allow == nil {
		st.Allow = []Allow{}
	}
	if st.Offenders == nil {
		st.Offenders = []offence.Offender{}
	}
}

func outlasts(a, b datapath.Ban) bool {
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
	st.fill()
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
	b := make([]byte, 0, 64+len(st.Bans)*200+len(st.Allow)*80+len(st.Offenders)*120+len(st.KnownGood)*80)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(st.Version), 10)
	b = appendRecords(b, "bans", st.Bans, func(b []byte, x datapath.Ban) []byte {
		b = appendPrefixField(b, x.Prefix)
		b = appendOptTime(b, "expires", x.Expires)
		b = append(b, `,"origin":`...)
		b = appendString(b, x.Origin.String())
		b = append(b, `,"reason":`...)
		b = appendString(b, x.Reason.String())
		if x.CIDR {
			b = append(b, `,"cidr":true`...)
		}
		b = appendOptString(b, "detector", x.Detector)
		b = appendOptInt(b, "events", x.Events)
		b = appendOptTime(b, "first", x.First)
		b = appendOptTime(b, "last", x.Last)
		return appendOptInt(b, "offence", x.Offence)
	})
	b = appendRecords(b, "allow", st.Allow, func(b []byte, x Allow) []byte {
		b = appendPrefixField(b, x.Prefix)
		return appendOptTime(b, "expires", x.Expires)
	})
	b = appendRecords(b, "offenders", st.Offenders, func(b []byte, x offence.Offender) []byte {
		b = appendPrefixField(b, x.Prefix)
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
		b = appendOptTime(b, "until", x.Until)
		if x.Reason != 0 {
			b = append(b, `,"reason":`...)
			b = appendString(b, x.Reason.String())
		}
		return appendOptString(b, "detector", x.Detector)
	})
	if st.JournalCursor != "" {
		b = append(b, ",\n\"journal_cursor\":"...)
		b = appendString(b, st.JournalCursor)
	}
	// Left out when empty (omitempty): an older xdpguard ignores the key.
	if len(st.KnownGood) > 0 {
		b = appendRecords(b, "known_good", st.KnownGood, func(b []byte, x KnownGood) []byte {
			b = appendPrefixField(b, x.Prefix)
			b = append(b, `,"last_seen":`...)
			return appendTime(b, x.LastSeen)
		})
	}
	b = append(b, "}\n"...)
	return b, nil
}

// appendRecords writes `,"name":[`, then one object a line, whose fields
// record writes (each record type here starts with "prefix"), then `]`.
func appendRecords[T any](b []byte, name string, xs []T, record func([]byte, T) []byte) []byte {
	b = append(b, ",\n\""...)
	b = append(b, name...)
	b = append(b, "\":["...)
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n{"...)
		b = record(b, x)
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendOptTime(b []byte, key string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendTime(b, t)
}

func appendOptString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return appendString(b, v)
}

func appendOptInt(b []byte, key string, v int) []byte {
	if v == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, int64(v), 10)
}

// appendPrefixField starts a record: `"prefix":"…"`.
func appendPrefixField(b []byte, p netip.Prefix) []byte {
	b = append(b, `"prefix":`...)
	return appendPrefix(b, p)
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

// appendString quotes s as JSON. Names are short ASCII in practice; the
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
