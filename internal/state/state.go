// Package state persists xdpguard's active bans, the allow rules added with
// `xdpguard allow`, the offender history and the known-good sources, so
// that they survive daemon restarts, crashes and reboots.
//
// They live in an append-only journal (state.journal, record.go): every
// change is a record, and a command or a daemon batch reaches the disk with
// one write and one fsync (Commit) before it is reported as applied. The
// daemon compacts the journal, rewriting it from the kernel's bans and its
// own memory, when it has grown to twice its last compacted size, and when
// something changed at most 1% of the time (internal/daemon/persist.go).
// Compaction writes a new file
// and renames it over the old, so after a crash the journal is the old
// file or the new one, plus whatever was appended after; a record a crash
// cut short fails its CRC and is dropped with a warning (ErrDropped),
// never a failed start.
//
// Why a journal and not an embedded database: the state is a set of records
// that is only ever read whole (at start, by status and export) and changed
// a few records at a time, except for a ban list applied in one go. A ban
// record carries the evidence its bans share, so a million addresses
// banned together are one record of five bytes an address (5 MB), written
// in milliseconds, and read back without a map when it is sorted (as
// compaction writes it). go.etcd.io/bbolt, measured on the same host (a
// 2-core VM shared with other builds), took 4.3 s and 75 MB for a million
// sorted 5-byte keys with 40-byte values in one transaction, and 13 min and
// 135 MB in random order; SQLite would need cgo. The journal's format is
// small enough to fuzz whole (FuzzReadJournal).
//
// The JSON state file of earlier versions (format 1 and 2, state.json) is
// imported on first start and renamed state.json.imported; Export prints the
// state in that format, for people and older tools.
//
// Expiry is stored as wall-clock time: the kernel's ban map keys expiry to
// the monotonic clock, which restarts at boot, so a monotonic deadline read
// back after a reboot would be meaningless.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// Version is the format written by this package. Bump it when a change
// would make an older xdpguard misread the file. Version 2 made reasons
// codes (version 1 kept a sentence) and added each ban's evidence; version
// 1 files are still read (legacy.go).
const Version = 2

// Names inside Store.Dir: the journal, and the JSON file of earlier
// versions, imported once.
const (
	FileName       = "state.journal"
	LegacyFileName = "state.json"
)

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

// Decode parses and checks a JSON state file's contents (formats 1 and 2):
// what the import of a legacy file uses, exported for tools and tests; it
// does not drop expired bans.
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
// crash cannot make the loader install one prefix twice. (A journal has
// no duplicates: its later record replaces.)
func (st *State) prune(now time.Time) {
	idx := make(map[netip.Prefix]int, len(st.Bans))
	out := st.Bans[:0]
	for _, b := range st.Bans {
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
	st.dropExpired(now)
}

// dropExpired drops the bans and allow rules that have run out at now.
func (st *State) dropExpired(now time.Time) {
	st.Bans = slices.DeleteFunc(st.Bans, func(b datapath.Ban) bool { return b.Expired(now) })
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
	return syncDir(s.Dir)
}
