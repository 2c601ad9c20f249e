package datapath

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xdpguard/xdpguard/internal/bpf"
)

// Origin says who issued a ban. Its values are the C program's enum origin
// (bpf2go -type origin), so the kernel and userspace cannot drift apart.
type Origin uint8

const (
	OriginKernel = Origin(bpf.XdpguardOriginORIGIN_KERNEL)
	OriginLog    = Origin(bpf.XdpguardOriginORIGIN_LOG)
	OriginManual = Origin(bpf.XdpguardOriginORIGIN_MANUAL)
	// OriginCrowdsec bans come from a CrowdSec LAPI. They are the only ones
	// the bouncer removes, and are never posted back to CrowdSec; their
	// Detector is the decision's scenario.
	OriginCrowdsec = Origin(bpf.XdpguardOriginORIGIN_CROWDSEC)
)

var originNames = map[Origin]string{0: "none", OriginKernel: "kernel", OriginLog: "log", OriginManual: "manual",
	OriginCrowdsec: "crowdsec"}

func (o Origin) String() string { return enumName(originNames, "origin", o) }

// Known reports whether o is one of the named origins other than none.
func (o Origin) Known() bool { _, ok := originNames[o]; return ok && o != 0 }

// MarshalText makes Origin readable in JSON.
func (o Origin) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText accepts the names String returns.
func (o *Origin) UnmarshalText(b []byte) error {
	x, ok := enumCode(originNames, string(b))
	if !ok {
		return fmt.Errorf("unknown ban origin %q", b)
	}
	*o = x
	return nil
}

// Reason is the kernel's short code for why a source is banned; its values
// are the C program's enum reason. The rest of the story (detector, events,
// offence) is in Ban.
type Reason uint8

const (
	ReasonSynRate    = Reason(bpf.XdpguardReasonREASON_SYN_RATE)
	ReasonNoAuth     = Reason(bpf.XdpguardReasonREASON_NO_AUTH)
	ReasonAuthFailed = Reason(bpf.XdpguardReasonREASON_AUTH_FAILED)
	ReasonProbe      = Reason(bpf.XdpguardReasonREASON_PROBE)
	ReasonConnLimit  = Reason(bpf.XdpguardReasonREASON_CONN_LIMIT)
	ReasonManual     = Reason(bpf.XdpguardReasonREASON_MANUAL)
	ReasonBlocklist  = Reason(bpf.XdpguardReasonREASON_BLOCKLIST)
	ReasonOther      = Reason(bpf.XdpguardReasonREASON_OTHER)
)

var reasonNames = map[Reason]string{
	0:             "none",
	ReasonSynRate: "syn-rate", ReasonNoAuth: "no-auth", ReasonAuthFailed: "auth-failed",
	ReasonProbe: "probe", ReasonConnLimit: "conn-limit", ReasonManual: "manual",
	ReasonBlocklist: "blocklist", ReasonOther: "other",
}

func (r Reason) String() string { return enumName(reasonNames, "reason", r) }

// Known reports whether r is one of the named reasons other than none.
func (r Reason) Known() bool { _, ok := reasonNames[r]; return ok && r != 0 }

// MarshalText makes Reason readable in JSON.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText accepts the names String returns.
func (r *Reason) UnmarshalText(b []byte) error {
	if string(b) == reasonNames[0] { // allow rules carry no reason
		*r = 0
		return nil
	}
	x, err := ParseReason(string(b))
	if err != nil {
		return err
	}
	*r = x
	return nil
}

// ParseReason maps a reason name to its code. An unknown name is an error:
// quietly turning it into "other" let the kernel and the state file tell
// two different stories about one ban.
func ParseReason(s string) (Reason, error) {
	if r, ok := enumCode(reasonNames, s); ok && r != 0 {
		return r, nil
	}
	return 0, fmt.Errorf("unknown ban reason %q (known: %s)", s, ReasonNames())
}

// ReasonNames lists the names ParseReason accepts, in code order, for
// help texts and errors.
func ReasonNames() string {
	out := ""
	for r := Reason(1); int(r) < len(reasonNames); r++ {
		if out != "" {
			out += ", "
		}
		out += r.String()
	}
	return out
}

// enumName is v's name in names, the name table of an enum shared with the
// C program, or kind(v) for a code the table does not name.
func enumName[T ~uint8](names map[T]string, kind string, v T) string {
	if s, ok := names[v]; ok {
		return s
	}
	return fmt.Sprintf("%s(%d)", kind, uint8(v))
}

// enumCode is the code names calls s.
func enumCode[T ~uint8](names map[T]string, s string) (T, bool) {
	for k, v := range names {
		if v == s {
			return k, true
		}
	}
	return 0, false
}

// listName is enumName for an enum whose names are listed by code, as
// Mode's and Scope's are.
func listName[T ~uint8](names []string, kind string, v T) string {
	if int(v) < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", kind, uint8(v))
}

// parseListed is the code names lists s under; its error lists the names
// in code order.
func parseListed[T ~uint8](names []string, s string) (T, error) {
	if i := slices.Index(names, s); i >= 0 {
		return T(i), nil
	}
	return 0, fmt.Errorf("must be one of %s, got %q", strings.Join(names, ", "), s)
}

// Detectors that are not log rules: a log ban's Detector is its rule's name.
const (
	DetectorSYNRate     = "syn-rate"     // the XDP program's SYN-rate limiter
	DetectorSlotHolders = "slot-holders" // the daemon's silent-connection scan
	DetectorManual      = "manual"       // `xdpguard ban`
	DetectorRestored    = "restored"     // restored from a state file that did not say
	// The daemon's defences of the login slots (issue 11).
	DetectorEvictions      = "evictions"       // evicted again and again before authenticating
	DetectorIPv6Escalation = "ipv6-escalation" // several /64s of one /48 banned
)

// Ban is one ban: what the kernel holds (prefix, expiry, origin, reason)
// and, when the daemon or the CLI recorded it, the evidence behind it. The
// loader fills the kernel's fields; the evidence fields travel through the
// state file.
type Ban struct {
	Prefix  netip.Prefix `json:"prefix"`
	Expires time.Time    `json:"expires,omitzero"` // zero: until unbanned
	Origin  Origin       `json:"origin"`
	Reason  Reason       `json:"reason"`
	// CIDR is set for bans wider than the ban granularity, which live in
	// the CIDR trie instead of the exact-match map.
	CIDR bool `json:"cidr,omitempty"`

	// Detector is what decided the ban: a log rule's name for log bans,
	// else one of the Detector constants.
	Detector string `json:"detector,omitempty"`
	// Events is how many pieces of evidence led to it (log events, silent
	// connections, SYNs over the limit), seen from First to Last.
	Events int       `json:"events,omitempty"`
	First  time.Time `json:"first,omitzero"`
	Last   time.Time `json:"last,omitzero"`
	// Offence counts the source's bans within the history retention, this
	// one included (offence package).
	Offence int `json:"offence,omitempty"`
}

// Expired reports whether the ban has run out at now.
func (b Ban) Expired(now time.Time) bool {
	return !b.Expires.IsZero() && !now.Before(b.Expires)
}

// WithEvidence copies the record's evidence fields (detector, events, times,
// offence) into b, keeping b's kernel fields.
func (b Ban) WithEvidence(rec Ban) Ban {
	b.Detector, b.Events, b.First, b.Last, b.Offence = rec.Detector, rec.Events, rec.First, rec.Last, rec.Offence
	return b
}
