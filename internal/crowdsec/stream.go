// Package crowdsec connects xdpguard to a CrowdSec Local API (LAPI), both
// ways: as a bouncer it pulls decisions from /v1/decisions/stream, and as a
// watcher it posts the bans xdpguard decides itself to /v1/alerts.
//
// The client is a small one on net/http rather than go-cs-bouncer or
// crowdsec's pkg/apiclient. Measured for this decision: a program that only
// runs go-cs-bouncer v0.0.19's StreamBouncer (with crowdsec v1.7.3, the
// release it builds with) pulls in 137 non-standard packages from a
// 269-module graph and is an 18.6 MB binary; the same program on this
// package is 9.4 MB with the standard library only, and this branch adds
// 0.8 MB to xdpguard (21.75 MB against 20.96 MB at 9da3db2).
// go-cs-bouncer also builds only against some CrowdSec releases, while the
// API xdpguard needs is four calls whose wire formats from 1.4 to 1.7 are
// handled here explicitly and tested against the real 1.4.6: null or []
// lists, nanosecond or rounded durations, a single body or a chunked,
// streamed one, and the name/version User-Agent 1.4 insists on.
package crowdsec

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
)

// decision is one LAPI decision as /v1/decisions/stream sends it.
type decision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
}

// Remediation is one ban decision, ready for the kernel (CrowdSec calls
// what a bouncer applies a remediation; xdpguard's own ban is datapath.Ban).
type Remediation struct {
	ID     int64
	Prefix netip.Prefix // an Ip decision is a full-length prefix
	// TTL is what is left of the decision. Zero in Delta.Deleted.
	TTL      time.Duration
	Scenario string
	Origin   string // CrowdSec's origin: crowdsec, cscli, CAPI, lists...
}

// Delta is one pull's worth of changes.
type Delta struct {
	// Startup is the LAPI's whole current set: a ban of ours that is not
	// in New is gone.
	Startup bool
	Deleted []Remediation
	New     []Remediation
	// Skipped counts decisions this bouncer does not act on (other
	// scopes, types, origins or scenarios), Bad the ones it could not
	// read; BadExample is the first of those, for the log.
	Skipped, Bad int
	BadExample   string
	// Pulled is how long the request and decoding took.
	Pulled time.Duration
}

// Filter selects the decisions to act on. Empty lists place no limit.
// Scopes and types compare case-insensitively, as CrowdSec's own do.
type Filter struct {
	Scopes                 []string // ip, range
	Types                  []string // ban
	Origins                []string
	ScenariosContaining    []string
	ScenariosNotContaining []string
}

func (f Filter) wants(d *decision) bool {
	if len(f.Scopes) > 0 && !containsFold(f.Scopes, d.Scope) {
		return false
	}
	if len(f.Types) > 0 && !containsFold(f.Types, d.Type) {
		return false
	}
	if len(f.Origins) > 0 && !containsFold(f.Origins, d.Origin) {
		return false
	}
	if len(f.ScenariosContaining) > 0 && !anySubstring(d.Scenario, f.ScenariosContaining) {
		return false
	}
	return !anySubstring(d.Scenario, f.ScenariosNotContaining)
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func anySubstring(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// DecodeStream reads one /v1/decisions/stream answer. Decisions it cannot
// read are counted in Bad rather than failing the pull: one odd value in
// a community blocklist must not stop the other hundred thousand.
func DecodeStream(r io.Reader, f Filter, startup bool) (Delta, error) {
	var body struct {
		New     []decision `json:"new"`
		Deleted []decision `json:"deleted"`
	}
	if err := json.NewDecoder(r).Decode(&body); err != nil {
		return Delta{}, fmt.Errorf("decode decisions: %w", err)
	}
	out := Delta{Startup: startup, New: make([]Remediation, 0, len(body.New))}
	take := func(d *decision, deleted bool) (Remediation, bool) {
		if !f.wants(d) {
			out.Skipped++
			return Remediation{}, false
		}
		b, err := toRemediation(d, deleted)
		if err != nil {
			if out.Bad == 0 {
				out.BadExample = err.Error()
			}
			out.Bad++
			return Remediation{}, false
		}
		return b, true
	}
	for i := range body.Deleted {
		if b, ok := take(&body.Deleted[i], true); ok {
			out.Deleted = append(out.Deleted, b)
		}
	}
	for i := range body.New {
		if b, ok := take(&body.New[i], false); ok {
			out.New = append(out.New, b)
		}
	}
	return out, nil
}

func toRemediation(d *decision, deleted bool) (Remediation, error) {
	p, err := parseValue(d.Scope, d.Value)
	if err != nil {
		return Remediation{}, fmt.Errorf("decision %d: %w", d.ID, err)
	}
	b := Remediation{ID: d.ID, Prefix: p, Scenario: d.Scenario, Origin: d.Origin}
	if deleted {
		// A deleted decision's duration is negative or stale: unused.
		return b, nil
	}
	ttl, err := time.ParseDuration(d.Duration)
	if err != nil {
		return Remediation{}, fmt.Errorf("decision %d: duration %q: %w", d.ID, d.Duration, err)
	}
	if ttl <= 0 {
		return Remediation{}, fmt.Errorf("decision %d: duration %q: already expired", d.ID, d.Duration)
	}
	b.TTL = ttl
	return b, nil
}

// parseValue reads an Ip value (an address, or an address with /32 or
// /128, as some sources write it) or a Range value (a CIDR).
// IPv4-mapped IPv6 values become IPv4, as the kernel sees the packets.
func parseValue(scope, v string) (netip.Prefix, error) {
	v = strings.TrimSpace(v)
	isRange := strings.EqualFold(scope, "range")
	if !isRange && !strings.EqualFold(scope, "ip") {
		return netip.Prefix{}, fmt.Errorf("scope %q is neither Ip nor Range", scope)
	}
	var p netip.Prefix
	if strings.Contains(v, "/") {
		var err error
		if p, err = netip.ParsePrefix(v); err != nil {
			return netip.Prefix{}, fmt.Errorf("%s value %q: %w", scope, v, err)
		}
	} else {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s value %q: %w", scope, v, err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%s value %q: zoned address", scope, v)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%s value %q: IPv4-mapped prefix shorter than /96", scope, v)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	if !isRange && p.Bits() != p.Addr().BitLen() {
		return netip.Prefix{}, fmt.Errorf("Ip value %q is a range", v)
	}
	if p.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%s value %q would ban everything", scope, v)
	}
	return p.Masked(), nil
}
