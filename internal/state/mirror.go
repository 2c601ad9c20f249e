package state

import (
	"errors"
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/internal/datapath"
)

// Mirror writes the kernel's bans into the state file, each with the
// evidence records or the file already has for it. update, when not nil,
// sets what else the caller owns (the daemon: offender history, journal
// cursor); the rest is kept from the file. The daemon and the ban/unban commands
// both save this way, under the state lock, so neither loses the other's
// records. It returns the prefixes now banned.
//
// The kernel is the truth for what is banned; a record only adds evidence
// to a ban of the same origin, so a record left from an older ban of the
// prefix never describes a newer one made by someone else.
func Mirror(g *datapath.Guard, store Store, records map[netip.Prefix]datapath.Ban, update func(*State)) (map[netip.Prefix]bool, error) {
	live := map[netip.Prefix]bool{}
	err := WithLock(store.Dir, func() error {
		old, err := store.Load()
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		known := make(map[netip.Prefix]datapath.Ban, len(old.Bans)+len(records))
		for _, b := range old.Bans {
			known[b.Prefix] = b
		}
		for p, b := range records {
			known[p] = b
		}
		bans, err := g.Bans()
		if err != nil {
			return err
		}
		st := old
		st.Bans = make([]datapath.Ban, 0, len(bans))
		if update != nil {
			update(&st)
		}
		for _, b := range bans {
			live[b.Prefix] = true
			if rec, ok := known[b.Prefix]; ok && rec.Origin == b.Origin {
				b = b.WithEvidence(rec)
			}
			st.Bans = append(st.Bans, b)
		}
		return store.Save(st)
	})
	return live, err
}

// MirrorAllow writes the kernel's allow rules into the state file, leaving
// out those of the configuration file (fileAllow): the file is their one
// source, and a prefix taken out of it must not come back from the state.
// `xdpguard allow` saves this way, under the state lock like Mirror.
func MirrorAllow(g *datapath.Guard, store Store, fileAllow []netip.Prefix) error {
	skip := map[netip.Prefix]bool{}
	for _, p := range fileAllow {
		skip[p.Masked()] = true
	}
	rules, err := g.Rules()
	if err != nil {
		return err
	}
	now := time.Now()
	allow := []Allow{}
	for _, r := range rules {
		if r.Action != datapath.ActionAllow || skip[r.Prefix] || (!r.Expires.IsZero() && !now.Before(r.Expires)) {
			continue
		}
		allow = append(allow, Allow{Prefix: r.Prefix, Expires: r.Expires})
	}
	return WithLock(store.Dir, func() error {
		st, err := store.Load()
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		st.Allow = allow
		return store.Save(st)
	})
}
