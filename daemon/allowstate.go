package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/xdpguard/xdpguard/loader"
	"github.com/xdpguard/xdpguard/state"
)

// MirrorAllow writes the kernel's allow rules into the state file, leaving
// out those of the configuration file (fileAllow): the file is their one
// source, and a prefix taken out of it must not come back from the state.
// `xdpguard allow` saves this way, under the state lock like Mirror.
func MirrorAllow(g *loader.Guard, store state.Store, fileAllow []netip.Prefix) error {
	skip := map[netip.Prefix]bool{}
	for _, p := range fileAllow {
		skip[p.Masked()] = true
	}
	rules, err := g.Rules()
	if err != nil {
		return err
	}
	now := time.Now()
	allow := []state.Allow{}
	for _, r := range rules {
		if r.Action != loader.ActionAllow || skip[r.Prefix] || (!r.Expires.IsZero() && !now.Before(r.Expires)) {
			continue
		}
		allow = append(allow, state.Allow{Prefix: r.Prefix, Expires: r.Expires})
	}
	return state.WithLock(store.Dir, func() error {
		st, err := store.Load()
		if err != nil && !errors.Is(err, state.ErrCorrupt) {
			return err
		}
		st.Allow = allow
		return store.Save(st)
	})
}

// restoreAllow puts back the allow rules added with `xdpguard allow`, before
// any ban is restored: a ban inside an allowed prefix must not drop a
// source the operator vouched for, even for the moment between the two.
func (d *Daemon) restoreAllow(rules []state.Allow) error {
	now := time.Now()
	restored := 0
	for _, a := range rules {
		if !a.Expires.IsZero() && !now.Before(a.Expires) {
			continue
		}
		ttl := time.Duration(0)
		if !a.Expires.IsZero() {
			ttl = a.Expires.Sub(now)
		}
		if err := d.guard.Allow(a.Prefix, ttl); err != nil {
			return fmt.Errorf("restore allow rule %s: %w", a.Prefix, err)
		}
		restored++
	}
	if restored > 0 {
		d.log.Info("restored allow rules from the state file", "count", restored)
	}
	return nil
}
