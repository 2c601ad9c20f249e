package daemon

import (
	"fmt"
	"time"

	"github.com/xdpguard/xdpguard/internal/state"
)

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
