// Reloading the configuration without detaching, and mapping it to the
// kernel's settings.

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/xdpguard/xdpguard/internal/logwatch"
)

// reload applies a new configuration without detaching. It returns a
// function to start following logs again when the log files changed.
func (d *Daemon) reload() (func(context.Context) (<-chan logwatch.Line, error), bool, error) {
	if d.opts.Reload == nil {
		return nil, false, errors.New("no configuration to reload")
	}
	next, err := d.opts.Reload()
	if err != nil {
		return nil, false, err
	}
	if next.PinRoot != d.cfg.PinRoot || next.StateDir != d.cfg.StateDir || next.Kernel.MaxBans != d.cfg.Kernel.MaxBans ||
		next.Kernel.MaxTracked != d.cfg.Kernel.MaxTracked || next.Kernel.MaxCIDRRules != d.cfg.Kernel.MaxCIDRRules ||
		next.Metrics.Listen != d.cfg.Metrics.Listen || !reflect.DeepEqual(next.CrowdSec, d.cfg.CrowdSec) {
		return nil, false, errors.New("pin_root, state_dir, map sizes, metrics.listen and crowdsec only change with a restart")
	}
	// Everything that can fail is checked before anything is applied.
	if err := next.Kernel.Settings().Validate(); err != nil {
		return nil, false, err
	}
	if err := next.Detect.Validate(); err != nil {
		return nil, false, fmt.Errorf("detect: %w", err)
	}
	if err := d.guard.SetSettings(next.Kernel.Settings()); err != nil {
		return nil, false, err
	}
	if err := d.engine.Reload(next.Detect); err != nil {
		return nil, false, err
	}
	mode := next.XDPMode
	for _, ifname := range next.Interfaces {
		if !slices.Contains(d.cfg.Interfaces, ifname) {
			if _, err := d.guard.Attach(ifname, mode); err != nil {
				d.log.Error("attach after reload", "iface", ifname, "error", err)
			}
		}
	}
	for _, ifname := range d.cfg.Interfaces {
		if !slices.Contains(next.Interfaces, ifname) {
			if err := d.guard.Detach(ifname); err != nil {
				d.log.Error("detach after reload", "iface", ifname, "error", err)
			}
		}
	}
	restart := !slices.Equal(next.Logs.Files, d.cfg.Logs.Files) || !reflect.DeepEqual(next.Logs.Journal, d.cfg.Logs.Journal)
	d.reloadKnownGood(next)
	d.cfg = next
	if err := d.syncAllow(); err != nil {
		d.log.Error("allowlist after reload", "error", err)
	}
	if p := d.priority.p; p != nil {
		if err := p.SetFreshRate(next.SlotHolders.Pressure.Evict.FreshRate); err != nil {
			d.log.Error("fresh queue rate after reload", "error", err)
		}
	}
	d.log.Info("configuration reloaded", "syn_threshold", next.Kernel.SYNRate.Threshold,
		"detect_threshold", next.Detect.Threshold, "monitor", next.Kernel.Monitor)
	return d.follow, restart, nil
}

// syncAllow makes the kernel's allow rules from the configuration match the
// file: rules an operator added with `xdpguard allow` are not touched.
func (d *Daemon) syncAllow() error {
	want := map[netip.Prefix]bool{}
	for _, p := range d.cfg.Allow {
		want[p.Masked()] = true
	}
	for p := range d.configAllow {
		if !want[p] {
			if err := d.guard.RemoveAllow(p); err != nil {
				d.log.Warn("remove allow rule", "prefix", p, "error", err)
			}
			delete(d.configAllow, p)
		}
	}
	for p := range want {
		if err := d.guard.Allow(p, 0); err != nil {
			return err
		}
		d.configAllow[p] = true
	}
	return nil
}
