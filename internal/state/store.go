package state

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
	"github.com/xdpguard/xdpguard/internal/offence"
)

// Store reads and writes the state in Dir.
type Store struct {
	Dir string
}

// Path is the journal's path.
func (s Store) Path() string { return filepath.Join(s.Dir, FileName) }

// LegacyPath is the JSON state file of earlier versions.
func (s Store) LegacyPath() string { return filepath.Join(s.Dir, LegacyFileName) }

// Load reads the state. A missing journal and legacy file is an empty
// state and no error (first start). Bans and allow rules that have expired
// are dropped.
//
// A legacy JSON file (and no journal) is imported: written as the journal,
// then renamed state.json.imported.
//
// Torn or corrupt records are dropped: Load returns the rest with an error
// matching ErrDropped, for the caller to log. A journal that is not one at
// all is renamed state.journal.corrupt-<unix seconds>; Load returns an
// empty state and an error that matches ErrCorrupt and names both paths. A
// permission error is returned as is (nothing is moved: the caller may
// simply lack the rights, as `xdpguard status` run by a user does). A file
// from a newer version returns an error matching ErrFutureVersion.
func (s Store) Load() (State, error) {
	if s.needsImport() {
		var st State
		var err error
		lerr := WithLock(s.Dir, func() error {
			st, err = s.load(time.Now())
			return nil
		})
		if lerr != nil {
			return empty(), lerr
		}
		return st, err
	}
	return s.load(time.Now())
}

func (s Store) needsImport() bool {
	_, jerr := os.Lstat(s.Path())
	_, lerr := os.Lstat(s.LegacyPath())
	return errors.Is(jerr, fs.ErrNotExist) && lerr == nil
}

// LoadLists is Load for a restart: the bans come as lists sharing their
// expiry, origin, reason and evidence (State.Bans is left empty), which
// costs a fraction of a Ban for each of a million.
func (s Store) LoadLists() (State, []BanList, error) {
	var st State
	var lists []BanList
	var err error
	load := func() error { st, lists, err = s.loadAs(time.Now(), true); return nil }
	if s.needsImport() {
		if lerr := WithLock(s.Dir, load); lerr != nil {
			return empty(), nil, lerr
		}
	} else {
		load()
	}
	return st, lists, err
}

// load is Load for a caller that holds the lock (or needs no import).
func (s Store) load(now time.Time) (State, error) {
	st, _, err := s.loadAs(now, false)
	return st, err
}

func (s Store) loadAs(now time.Time, asLists bool) (State, []BanList, error) {
	data, err := os.ReadFile(s.Path())
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		st, err := s.importLegacy(now)
		if !asLists {
			return st, nil, err
		}
		lists := make([]BanList, len(st.Bans))
		for i, b := range st.Bans {
			lists[i] = BanList{Like: b, Prefixes: []netip.Prefix{b.Prefix}}
			lists[i].Like.Prefix = netip.Prefix{}
		}
		st.Bans = []datapath.Ban{}
		return st, lists, err
	case errors.Is(err, fs.ErrPermission):
		return empty(), nil, fmt.Errorf("state: %w", err)
	default:
		return empty(), nil, s.setAside(s.Path(), now, err)
	}
	r, err := replayJournal(data)
	switch {
	case errors.Is(err, ErrFutureVersion):
		return empty(), nil, fmt.Errorf("state: %s: %w", s.Path(), err)
	case errors.Is(err, ErrDropped):
		err = fmt.Errorf("state: %s: %w", s.Path(), err)
	case err != nil:
		return empty(), nil, s.setAside(s.Path(), now, err)
	}
	var lists []BanList
	if asLists {
		lists = r.bans.lists(now)
		r.bans = banTable{}
	}
	st := r.state()
	st.fill()
	st.dropExpired(now)
	return st, lists, err
}

// importLegacy reads the JSON file of earlier versions, writes it as the
// journal and renames it, so it is imported once and kept for a downgrade.
func (s Store) importLegacy(now time.Time) (State, error) {
	data, err := os.ReadFile(s.LegacyPath())
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		return empty(), nil
	case errors.Is(err, fs.ErrPermission):
		return empty(), fmt.Errorf("state: %w", err)
	default:
		return empty(), s.setAside(s.LegacyPath(), now, err)
	}
	st, err := Decode(data)
	if errors.Is(err, ErrFutureVersion) {
		return empty(), fmt.Errorf("state: %s: %w", s.LegacyPath(), err)
	}
	if err != nil {
		return empty(), s.setAside(s.LegacyPath(), now, err)
	}
	st.prune(now)
	if err := s.Save(st); err != nil {
		return st, fmt.Errorf("state: import %s: %w", s.LegacyPath(), err)
	}
	if err := os.Rename(s.LegacyPath(), s.LegacyPath()+".imported"); err != nil {
		return st, fmt.Errorf("state: imported %s, but renaming it failed: %w", s.LegacyPath(), err)
	}
	return st, nil
}

// Read reads the state without changing anything on disk: no import, no
// corrupt file moved aside. It is for status and export, which a user
// without write access may run. Expired bans are kept.
func (s Store) Read() (State, error) {
	data, err := os.ReadFile(s.Path())
	if errors.Is(err, fs.ErrNotExist) {
		if data, err = os.ReadFile(s.LegacyPath()); errors.Is(err, fs.ErrNotExist) {
			return empty(), nil
		} else if err != nil {
			return empty(), err
		}
		return Decode(data)
	}
	if err != nil {
		return empty(), err
	}
	st, err := readJournal(data)
	if err != nil && !errors.Is(err, ErrDropped) {
		return empty(), fmt.Errorf("%s: %w", s.Path(), err)
	}
	st.fill()
	return st, err
}

func empty() State {
	return State{Version: Version, Bans: []datapath.Ban{}, Allow: []Allow{}, Offenders: []offence.Offender{}}
}

// setAside renames a bad file out of the way so that the next write does
// not destroy the evidence and the next start does not trip over it again.
func (s Store) setAside(path string, now time.Time, cause error) error {
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

// Commit appends the batch to the journal and syncs it, under the state
// lock: when it returns nil, the changes survive a crash.
func (s Store) Commit(b *Batch) error {
	if b.Len() == 0 {
		return nil
	}
	return WithLock(s.Dir, func() error {
		if s.needsImport() {
			if _, err := s.importLegacy(time.Now()); err != nil {
				return err
			}
		}
		return s.appendLocked(b.e.b)
	})
}

func (s Store) appendLocked(data []byte) error {
	f, err := os.OpenFile(s.Path(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	// A new journal gets its header with the first records. One whose
	// header a crash cut short holds nothing else: start it again.
	created := fi.Size() < int64(len(journalHeader))
	if created {
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("state: %w", err)
		}
		data = append([]byte(journalHeader), data...)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("state: append to %s: %w", s.Path(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state: fsync %s: %w", s.Path(), err)
	}
	if created {
		return syncDir(s.Dir)
	}
	return nil
}

// Compact rewrites the journal from the state it holds, after update (when
// not nil) has set what the caller owns, under the state lock. It returns
// the new journal's size.
func (s Store) Compact(update func(*State)) (int64, error) {
	var size int64
	err := WithLock(s.Dir, func() error {
		st, err := s.load(time.Now())
		if err != nil && !errors.Is(err, ErrDropped) && !errors.Is(err, ErrCorrupt) {
			return err
		}
		if update != nil {
			update(&st)
		}
		data, err := s.encodeChecked(st)
		if err != nil {
			return err
		}
		size = int64(len(data))
		// Temp files of a compaction a crash interrupted.
		if old, _ := filepath.Glob(filepath.Join(s.Dir, FileName+".tmp-*")); len(old) > 0 {
			for _, p := range old {
				os.Remove(p)
			}
		}
		return s.writeAtomic(data)
	})
	return size, err
}

// Save replaces the whole state with st, atomically, creating Dir (mode
// 0700) if needed. The caller holds the lock if others may write.
func (s Store) Save(st State) error {
	data, err := s.encodeChecked(st)
	if err != nil {
		return err
	}
	return s.writeAtomic(data)
}

// encodeChecked refuses records Load would refuse, so a bug elsewhere
// cannot write a journal the next start drops records from.
func (s Store) encodeChecked(st State) ([]byte, error) {
	st.Version = Version
	st.fill()
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("state: refusing to save: %w", err)
	}
	return snapshot(st), nil
}

// Size is the journal's size on disk (0 when there is none).
func (s Store) Size() int64 {
	fi, err := os.Stat(s.Path())
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Clear removes the state (the journal and a legacy file not yet
// imported), under the lock, and returns what it held.
func (s Store) Clear() (State, error) {
	var st State
	err := WithLock(s.Dir, func() error {
		var err error
		st, err = s.Read()
		if err != nil && !errors.Is(err, ErrDropped) {
			st = empty()
		}
		for _, p := range []string{s.Path(), s.LegacyPath()} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("state: %w", err)
			}
		}
		return nil
	})
	return st, err
}

// syncDir makes a created or renamed directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("state: fsync %s: %w", dir, err)
	}
	return nil
}
